"""Injected faults: rules scoped by route, method, account, task or Tencent action.

A rule fires once (default), N times (`times`), forever (`times: null`), and optionally only with
a seeded probability. Two phases:

- before the provider runs (nothing is processed or charged): `http_status` (any status,
  optional Retry-After), `rate_limit` (429 + Retry-After), `provider_error` (a provider code in
  its own shape), `latency` (fixed `seconds` or uniform `min_seconds`..`max_seconds`; on the mock
  clock with `clock: true`, else a real asyncio sleep, then the request goes on), and the
  connection faults that need a real socket (server mode): `reset` (TCP RST) and `empty`
  (close without answering);
- after the provider ran (the work happened, only the answer is damaged): `malformed_json`,
  `wrong_content_type`, `truncated_body` (a consistent but cut body), `corrupt_body` (bytes
  flipped) and, in server mode, `truncated` (Content-Length promises more than is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import socket
import struct
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from starlette.responses import Response

from mock_upstream import errors
from mock_upstream.state import MockState

BEFORE_KINDS: Final = frozenset({"http_status", "rate_limit", "provider_error", "latency", "reset", "empty"})
AFTER_KINDS: Final = frozenset(
    {"malformed_json", "wrong_content_type", "truncated_body", "corrupt_body", "truncated"}
)
KINDS: Final = BEFORE_KINDS | AFTER_KINDS

# The ASGI server's own `send`, captured by the outermost app layer: its owner holds the socket.
raw_send: contextvars.ContextVar[Any] = contextvars.ContextVar("raw_send", default=None)


@dataclass
class Fault:
    id: str
    kind: str
    route: str | None = None
    method: str | None = None
    account: str | None = None
    task_id: str | None = None
    action: str | None = None
    times: int | None = 1
    probability: float | None = None
    status: int | None = None
    retry_after: int | None = None
    code: int | str | None = None
    message: str | None = None
    seconds: float | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    clock: bool = False
    hits: int = 0

    def public(self) -> dict[str, Any]:
        return asdict(self)


FAULT_FIELDS: Final = frozenset(Fault.__dataclass_fields__) - {"id", "hits"}


def fault_from_dict(fault_id: str, data: dict[str, Any]) -> Fault:
    unknown = set(data) - FAULT_FIELDS
    if unknown:
        raise ValueError(f"unknown fault fields: {sorted(unknown)}")
    if data.get("kind") not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    fault = Fault(id=fault_id, **data)
    if fault.times is not None and (not isinstance(fault.times, int) or fault.times < 1):
        raise ValueError("times must be a positive integer or null")
    if fault.probability is not None and not 0 <= fault.probability <= 1:
        raise ValueError("probability must be within 0..1")
    if fault.status is not None and not 100 <= fault.status <= 599:
        raise ValueError("status must be an HTTP status")
    return fault


@dataclass
class Context:
    """What a rule can be scoped by, filled in by the provider handler once it has parsed."""

    provider: errors.Provider
    path: str
    method: str
    account: str | None = None
    task_id: str | None = None
    action: str | None = None
    request_id: str = ""
    fired: list[str] = field(default_factory=list)


class FaultBook:
    """The active rules."""

    def __init__(self) -> None:
        self.rules: list[Fault] = []
        self._next = 0

    def add(self, data: dict[str, Any]) -> Fault:
        self._next += 1
        fault = fault_from_dict(f"f{self._next}", data)
        self.rules.append(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        before = len(self.rules)
        self.rules = [f for f in self.rules if f.id != fault_id]
        return len(self.rules) != before

    def pick(
        self, state: MockState, ctx: Context, kinds: frozenset[str], skip: frozenset[str] = frozenset()
    ) -> Fault | None:
        for fault in self.rules:
            if fault.kind not in kinds or (fault.times is not None and fault.hits >= fault.times):
                continue
            if fault.id in skip:
                continue
            if not _matches(fault, ctx):
                continue
            if fault.probability is not None and state.fault_rng.random() >= fault.probability:
                continue
            fault.hits += 1
            ctx.fired.append(f"{fault.id}:{fault.kind}")
            return fault
        return None


def _matches(fault: Fault, ctx: Context) -> bool:
    return (
        (fault.route is None or fnmatch.fnmatchcase(ctx.path, fault.route))
        and (fault.method is None or fault.method.upper() == ctx.method)
        and (fault.account is None or fault.account == ctx.account)
        and (fault.task_id is None or fault.task_id == ctx.task_id)
        and (fault.action is None or fault.action == ctx.action)
    )


async def before(state: MockState, book: FaultBook, ctx: Context) -> Response | None:
    """Apply the before-phase faults; a response replaces the provider's answer.

    Each latency rule delays a request once: one without a hit limit (``times: null``) slows every
    request and still lets each answer (it used to match again after its own sleep, forever)."""
    slept: frozenset[str] = frozenset()
    while (fault := book.pick(state, ctx, BEFORE_KINDS, slept)) is not None:
        if fault.kind != "latency":
            return await _replace(fault, ctx)
        slept |= {fault.id}
        if fault.seconds is not None:
            delay = fault.seconds
        else:
            delay = state.fault_rng.uniform(fault.min_seconds or 0.0, fault.max_seconds or 0.0)
        if fault.clock:
            state.clock.advance(delay)
        else:
            await asyncio.sleep(delay)
    return None


async def _replace(fault: Fault, ctx: Context) -> Response:
    if fault.kind in ("reset", "empty"):
        return await _drop_connection(reset=fault.kind == "reset")
    status = fault.status or {"rate_limit": 429, "provider_error": 200, "http_status": 503}[fault.kind]
    if fault.kind == "provider_error" and ctx.provider == "taskpic" and fault.status is None:
        status = fault.code if isinstance(fault.code, int) and 400 <= fault.code <= 599 else 400
    response = errors.provider_error(
        ctx.provider, http=status, code=fault.code, message=fault.message, request_id=ctx.request_id
    )
    retry_after = fault.retry_after if fault.retry_after is not None else (1 if status == 429 else None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def after(state: MockState, book: FaultBook, ctx: Context, response: Response) -> Response:
    """Damage an already produced answer (the provider's side effects stand)."""
    fault = book.pick(state, ctx, AFTER_KINDS)
    if fault is None:
        return response
    body = bytes(response.body)
    keep = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    media = response.media_type or response.headers.get("content-type")
    match fault.kind:
        case "malformed_json":
            return Response(
                body[: max(1, len(body) // 2)] or b"{", response.status_code, keep, "application/json"
            )
        case "wrong_content_type":
            html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return Response(html, response.status_code, keep, "text/html")
        case "truncated_body":
            return Response(body[: len(body) // 2], response.status_code, keep, media)
        case "corrupt_body":
            # Flip every byte of the middle third: sizes stay right, content does not.
            lo, hi = len(body) // 3, 2 * len(body) // 3
            damaged = body[:lo] + bytes(b ^ 0xFF for b in body[lo:hi]) + body[hi:]
            return Response(damaged, response.status_code, keep, media)
        case _:
            return _TruncatedResponse(response)


def _cycle() -> Any:
    send = raw_send.get()
    cycle = getattr(send, "__self__", None)
    return cycle if getattr(cycle, "transport", None) is not None else None


async def _drop_connection(*, reset: bool) -> Response:
    cycle = _cycle()
    if cycle is None:
        return errors.control_error(500, "connection faults need the real server (server mode)")
    transport = cycle.transport
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        # SO_LINGER 0 turns close() into a TCP RST (unless the client has hung up already).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()
    cycle.disconnected = True  # uvicorn then drops whatever the app still sends
    return Response(b"")


class _TruncatedResponse(Response):
    """Writes the head and half the body straight to the socket, then closes it."""

    def __init__(self, original: Response) -> None:
        super().__init__(original.body, original.status_code)
        self.original = original

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        cycle = _cycle()
        body = bytes(self.original.body)
        if cycle is None:
            await errors.control_error(500, "connection faults need the real server (server mode)")(
                scope, receive, send
            )
            return
        head = [f"HTTP/1.1 {self.original.status_code} OK"]
        head += [f"{k}: {v}" for k, v in self.original.headers.items() if k != "content-length"]
        head += [f"content-length: {len(body)}", "connection: close", "", ""]
        cycle.transport.write("\r\n".join(head).encode("latin-1") + body[: len(body) // 2])
        cycle.transport.close()
        cycle.disconnected = True
