"""mock_upstream: a stateful, fault-injecting emulation of picflow's three image providers.

One ASGI app serves the "task/pic" API, the "HD redraw" vendor and Tencent AI Art
ReplaceBackground, plus result files and a control API under `/__mock/`. Run it with
`python -m mock_upstream`, or in tests through the fixtures in `mock_upstream.testing`.
"""

from mock_upstream.app import MockApp, create_app
from mock_upstream.state import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    DEFAULT_TOKEN,
    DEFAULT_USER_KEY,
)

__all__ = [
    "DEFAULT_SECRET_ID",
    "DEFAULT_SECRET_KEY",
    "DEFAULT_TOKEN",
    "DEFAULT_USER_KEY",
    "MockApp",
    "create_app",
]
