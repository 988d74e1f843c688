"""The CLI's configuration in one place: environment variable names and defaults."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "API_KEY_ENV",
    "API_URL_ENV",
    "DEFAULT_API_PORT",
    "DEFAULT_MOTO_PORT",
    "DEFAULT_UPSTREAM_PORT",
    "STATE_FILE_ENV",
    "STATE_FILE_NAME",
    "default_state_file",
]

API_URL_ENV = "PICFLOW_API_URL"
API_KEY_ENV = "PICFLOW_API_KEY"
STATE_FILE_ENV = "PICFLOW_LOCAL_STATE"  # where `picflow local up` writes its endpoints
STATE_FILE_NAME = ".picflow-local.json"

# `sam local start-api`'s port, moto server's, mock_upstream's; 0 picks a free one.
DEFAULT_API_PORT = 3000
DEFAULT_MOTO_PORT = 5000
DEFAULT_UPSTREAM_PORT = 8765


def default_state_file() -> Path:
    """``$PICFLOW_LOCAL_STATE``, else ``.picflow-local.json`` in the repository root (read lazily:
    tests change the environment)."""
    override = os.environ.get(STATE_FILE_ENV)
    if override:
        return Path(override)
    from picflow_cli.local.stack import repo_root

    return repo_root() / STATE_FILE_NAME
