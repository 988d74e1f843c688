"""The moto server routes a request to its service once per host name, not at every request.

moto 5.2.5's ``DomainDispatcherApplication.get_backend_for_host`` lists moto's package directory
(``os.listdir`` and an ``isdir`` per entry) and then matches the host against every service's URL
patterns, at every request and under the dispatcher's one lock: ~18 % of the moto process's busy
time in a concurrent load (issue 19's profile), and every request of every Lambda waits its turn.
The answer depends only on the host name (the module list and the URL patterns are fixed once
moto is installed), so :func:`install` keeps it per host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["install"]


def install() -> Callable[[], None]:
    """Patch the dispatcher to remember each host's backend; returns the undo function."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return backends[host]
        except KeyError:
            backend = backends[host] = original(self, host)
            return backend

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]

    def undo() -> None:
        DomainDispatcherApplication.get_backend_for_host = original  # type: ignore[method-assign]

    return undo
