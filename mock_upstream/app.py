"""The ASGI app: all three providers, the result files and the control API on one port.

Routes: task/pic under `/task/...`, HD redraw under `/api/...`, Tencent at `POST /` (dispatched
on X-TC-Action), result files under `/files/...`, control under `/__mock/...`. The outermost
layer remembers the server's own `send` so connection faults can reach the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from mock_upstream import control, hdredraw, taskpic, tencent
from mock_upstream.core import Mock
from mock_upstream.faults import raw_send
from mock_upstream.state import MockState

Endpoint = Callable[[Mock, Request], Awaitable[Response]]


class MockApp:
    """ASGI entry point; `mock` is the world the control API changes."""

    def __init__(
        self,
        state: MockState | None = None,
        *,
        background_worker: bool = True,
        render_workers: int | None = None,
        journal_out: str | None = None,
    ) -> None:
        self.mock = Mock(state or MockState(), render_workers=render_workers)
        self.journal_out = journal_out
        self.mock.sweepers.append(control.sweeper(self.mock))
        self.background_worker = background_worker
        self.starlette = Starlette(routes=self._routes(), lifespan=self._lifespan)

    def _routes(self) -> list[Route]:
        mock = self.mock

        def bind(handler: Endpoint) -> Callable[[Request], Awaitable[Response]]:
            async def endpoint(request: Request) -> Response:
                return await handler(mock, request)

            return endpoint

        return [
            Route("/task/pic/{kind:str}", bind(taskpic.submit), methods=["POST"]),
            Route("/task/pic/{task_id:str}", bind(taskpic.poll), methods=["GET"]),
            Route("/task/{task_id:str}", bind(taskpic.poll), methods=["GET"]),
            Route("/api/check_task_status", bind(hdredraw.check_status), methods=["POST"]),
            Route("/api/{route:str}", bind(hdredraw.submit), methods=["POST"]),
            Route("/", bind(tencent.handle), methods=["POST"]),
            *control.routes(mock),
        ]

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        worker = None
        if self.background_worker:
            worker = asyncio.create_task(
                self.mock.callbacks.worker(self.mock.state.clock.now, self.mock.sweep)
            )
        # The worker processes start now, not on the first render.
        await self.mock.renders.warm_up()
        try:
            yield
        finally:
            self.mock.renders.stop()
            if self.journal_out:
                # Here, not after server.run(): uvicorn re-raises SIGTERM once it has shut down.
                with open(self.journal_out, "w", encoding="utf-8") as out:
                    for entry in self.mock.state.journal:
                        out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_send.set(send)
        await self.starlette(scope, receive, send)


def create_app(
    config: dict[str, Any] | None = None, *, clock_running: bool = False, render_workers: int | None = None
) -> MockApp:
    return MockApp(MockState(config, clock_running=clock_running), render_workers=render_workers)
