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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests first, each tier's order otherwise kept: handed out one at a time
    (`make unit-e2e`: --maxschedchunk=1), the long ones start early on every worker and the run
    does not end with one worker on a long test while the others are idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def local_stack(mock_server: ThreadedServer) -> Iterator[LocalStack]:
    """template.yaml deployed into moto for the whole session (the e2e and chaos suites)."""
    stack = LocalStack(mock_server.base_url)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
