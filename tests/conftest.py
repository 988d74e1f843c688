"""Shared pytest configuration: the mock upstream's fixtures are a plugin of its own package."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from picflow_cli.local.stack import LocalStack

from mock_upstream.server import ThreadedServer

pytest_plugins = ["mock_upstream.testing"]

# Property tests assert behaviour, not speed (speed lives in bench/): hypothesis' default 200 ms
# per-example deadline failed a first example that built a params model on a loaded CI box.
settings.register_profile("picflow", deadline=None)
settings.load_profile("picflow")


@pytest.fixture(scope="session")
def local_stack(mock_server: ThreadedServer) -> Iterator[LocalStack]:
    """template.yaml deployed into moto for the whole session (the e2e and chaos suites)."""
    stack = LocalStack(mock_server.base_url)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
