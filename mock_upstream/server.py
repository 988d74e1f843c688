"""Running the app under uvicorn: in the foreground (`python -m mock_upstream`) or in a thread.

`ThreadedServer` is how the pytest fixtures serve the mock, the way httpx's own test suite serves
its ASGI app: uvicorn.Server on a background thread, bound to port 0 (so no free-port race), with
readiness signalled by an event set after the sockets are bound, so no one sleeps.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from mock_upstream.app import MockApp


class ReadyServer(uvicorn.Server):
    """uvicorn.Server that sets `ready` once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.on_ready: Callable[[ReadyServer], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()
            if self.on_ready is not None:
                self.on_ready(self)

    @property
    def port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("server is not listening")


def make_server(app: MockApp, host: str, port: int, log_level: str = "warning") -> ReadyServer:
    # h11 keeps the raw-socket faults predictable; keep-alive is on, as with a real upstream.
    # uvicorn's 5 s idle timeout races clients that reuse a pooled connection just as the
    # server closes it ("Server disconnected without sending a response"): on a loaded test
    # machine that turned a status read or a control call into a spurious failure.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http="h11", lifespan="on", timeout_keep_alive=300
    )
    return ReadyServer(config)


class ThreadedServer:
    """The mock on a background thread; `base_url` once started."""

    def __init__(self, app: MockApp | None = None, host: str = "127.0.0.1") -> None:
        self.app = app or MockApp()
        self.host = host
        self.server = make_server(self.app, host, 0)
        self.thread = threading.Thread(target=self.server.run, name="mock-upstream", daemon=True)
        self.base_url = ""

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self.thread.start()
        if not self.server.ready.wait(timeout):
            raise RuntimeError("mock upstream did not start in time")
        self.base_url = f"http://{self.host}:{self.server.port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
