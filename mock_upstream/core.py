"""The shared plumbing of every emulated call: journal entries, redaction, faults, result files.

A provider handler builds a journal entry from the parsed request (`form_entry` / `json_entry`),
fills in a fault `Context` once it knows the account and task, and hands its work to
`Mock.exchange`, which applies the faults around it and records the answer. Secrets never reach
the journal: Authorization headers, `user_key` and Tencent signatures are replaced by
`<redacted>`, uploaded files are kept as name, filename, size and sha256.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from mock_upstream import faults
from mock_upstream.callbacks import CallbackHub
from mock_upstream.render import RenderPool
from mock_upstream.state import MockState, Scenario, StoredFile, Task

REDACTED: Final = "<redacted>"
SECRET_FIELDS: Final = frozenset({"user_key"})
KEPT_HEADERS: Final = (
    "content-type",
    "user-agent",
    "host",
    "x-tc-action",
    "x-tc-version",
    "x-tc-region",
    "x-tc-timestamp",
    "x-tc-language",
)
MARKER_HEADERS: Final = (
    "x-mock-marker",
    "x-correlation-id",
    "idempotency-key",
    "x-idempotency-key",
    "x-request-id",
    "x-tc-traceid",
)

Upload = tuple[str, bytes]  # (filename, content)


class JobSlots:
    """Tencent's running jobs per account, plus a "hold" switch that parks new jobs mid-flight.

    Holding lets a test keep one job running (deterministically, no timing) while it sends a
    second request and sees RequestLimitExceeded.JobNumExceed.
    """

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self.hold = False
        self._release: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    def set_hold(self, hold: bool) -> None:
        self.hold = hold
        if not hold and self._release is not None:
            self._release.set()
            self._release = None

    async def parked(self) -> None:
        """Wait here while held."""
        if self.hold:
            if self._release is None:
                self._release = asyncio.Event()
            await self._release.wait()

    async def change(self, account: str, delta: int) -> None:
        self.active[account] = self.active.get(account, 0) + delta
        async with self._cond():
            self._cond().notify_all()

    async def wait_total(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` jobs run in total; False on timeout."""
        async with self._cond():
            try:
                await asyncio.wait_for(
                    self._cond().wait_for(lambda: sum(self.active.values()) >= count), timeout
                )
            except TimeoutError:
                return False
        return True


class Mock:
    """The app's world: state, fault rules, callbacks, Tencent job slots, the render pool."""

    def __init__(self, state: MockState, *, render_workers: int | None = None) -> None:
        self.state = state
        self.faults = faults.FaultBook()
        self.callbacks = CallbackHub()
        self.jobs = JobSlots()
        self.renders = RenderPool(render_workers)
        self._sink_changed: asyncio.Condition | None = None
        self.sweepers: list[Callable[[], None]] = []
        # Tasks whose sync=1 submit is waiting for their end (tests synchronise on it).
        self.sync_waiting: dict[str, Task] = {}
        self._sync_changed: asyncio.Event | None = None
        self._apply_config()

    def _apply_config(self) -> None:
        """The scenario document's faults and callback settings (accounts etc. are the state's)."""
        for rule in self.state.config.get("faults", []):
            self.faults.add(dict(rule))
        if self.state.config.get("callbacks"):
            self.callbacks.configure(dict(self.state.config["callbacks"]))

    def reset(self) -> None:
        self.state.reset()
        self.faults = faults.FaultBook()
        self.callbacks.reset()
        self.jobs.set_hold(False)
        self.renders.restart()
        self._apply_config()

    # ---- rendering -----------------------------------------------------------------------
    def prepare(self, task: Task, work: Awaitable[None], on_error: Callable[[Exception], None]) -> None:
        """Run `work` (download, render) in the background; the task ends when it is done."""

        async def run() -> None:
            try:
                await work
            except Exception as exc:  # a render that crashed (or was killed by a reset)
                on_error(exc)
            finally:
                task.rendered = True
                task.ready.set()
                if self.state.tasks.get(task.task_id) is task:
                    if task.is_due(self.state.clock.now()):
                        self.finish(task)
                    self.sweep()

        task.job = asyncio.get_running_loop().create_task(run())

    async def wait_rendered(self, task: Task, timeout: float) -> bool:
        """Wait (without blocking other requests) until the task's results exist."""
        return await _wait(task.ready, timeout)

    async def wait_ended(self, task: Task, timeout: float) -> bool:
        return await _wait(task.ended, timeout)

    async def wait_sync(self, task: Task, timeout: float) -> bool:
        """A sync submit's wait for its task's end, visible to `sync_waiting` meanwhile."""
        self.sync_waiting[task.task_id] = task
        self._sync_notify()
        try:
            return await self.wait_ended(task, timeout)
        finally:
            self.sync_waiting.pop(task.task_id, None)
            self._sync_notify()

    def _sync_notify(self) -> None:
        if self._sync_changed is not None:
            self._sync_changed.set()
            self._sync_changed = None

    async def wait_sync_waiting(self, count: int, timeout: float) -> bool:
        """Wait until at least `count` sync submits are waiting; False on timeout."""

        async def until() -> None:
            while len(self.sync_waiting) < count:
                if self._sync_changed is None:
                    self._sync_changed = asyncio.Event()
                await self._sync_changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            return False
        return True

    def sink_changed(self) -> asyncio.Condition:
        """Signalled whenever the callback sink receives something."""
        if self._sink_changed is None:
            self._sink_changed = asyncio.Condition()
        return self._sink_changed

    def sweep(self) -> None:
        """Let time-scheduled tasks end (and queue their callbacks) at the current mock time."""
        for sweeper in self.sweepers:
            sweeper()

    # ---- result files --------------------------------------------------------------------
    def publish(self, request_base: str, name: str, content: bytes, media_type: str) -> str:
        """Store a result file and return its URL, valid for `file_ttl_seconds` of mock time."""
        token = f"{self.state.file_rng.getrandbits(64):016x}"
        ttl = self.state.settings.file_ttl_seconds
        self.state.files[token] = StoredFile(
            token=token,
            name=name,
            content=content,
            media_type=media_type,
            expires_at=self.state.clock.now() + ttl if ttl > 0 else math.inf,
            sha256=hashlib.sha256(content).hexdigest(),
        )
        return f"{request_base}/files/{token}/{name}"

    def finish(self, task: Task) -> None:
        """End a task now: publish its result files (on success) and mark its callback due."""
        if task.finished_at is not None:
            return
        task.ended_at = self.state.clock.now()
        # The scheduled end, not when a sweep happened to notice it, so times are deterministic.
        if task.scenario.seconds is not None:
            task.finished_at = min(self.state.clock.now(), task.created_at + task.scenario.seconds)
        elif task.scenario.polls is None:
            task.finished_at = task.created_at
        else:
            task.finished_at = self.state.clock.now()
        if task.failure() is None:
            for name, content, media in task.outputs:
                task.urls[name] = self.publish(task.base_url, f"{task.task_id}-{name}", content, media)
        task.outputs = []
        task.callback_due = task.callback_url is not None
        task.ended.set()

    def new_task(self, task: Task, request_scenario: Scenario | None) -> Task:
        task.scenario = self.state.task_scenarios.get(task.task_id) or self.state.scenario_for(
            task.account, request_scenario
        )
        self.state.tasks[task.task_id] = task
        return task

    # ---- the request cycle ---------------------------------------------------------------
    async def exchange(
        self, ctx: faults.Context, entry: dict[str, Any], work: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run `work` between the fault phases and journal the outcome."""
        entry.update(account=ctx.account, task_id=entry.get("task_id") or ctx.task_id, action=ctx.action)
        response = await faults.before(self.state, self.faults, ctx)
        if response is None:
            response = await work()
            response = faults.after(self.state, self.faults, ctx, response)
        entry["status"] = response.status_code
        entry["faults"] = list(ctx.fired)
        entry["task_id"] = entry.get("task_id") or ctx.task_id
        self.state.record(entry)
        return response


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def request_scenario(request: Request) -> Scenario | None:
    """A per-request scenario from the `X-Mock-Scenario` header (JSON), if any."""
    raw = request.headers.get("x-mock-scenario")
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"X-Mock-Scenario is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("X-Mock-Scenario must be a JSON object")
    return Scenario.from_dict(data)


def new_entry(request: Request, provider: str, route: str) -> dict[str, Any]:
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    if "authorization" in request.headers:
        scheme = request.headers["authorization"].split(" ", 1)[0]
        headers["authorization"] = f"{scheme} {REDACTED}"
    marker = next((request.headers[h] for h in MARKER_HEADERS if h in request.headers), None)
    return {
        "provider": provider,
        "method": request.method,
        "path": request.url.path,
        "route": route,
        "headers": headers,
        "marker": marker,
        "fields": {},
        "files": [],
        "paid": False,
    }


SMALL_FORM: Final = 16 * 1024
_NAME = re.compile(rb'\bname="([^"]*)"')


def _small_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The fields of a small form without files (a status check's), parsed directly: the
    general parser costs more than the rest of such a request. None: use the general parser."""
    kind, _, options = content_type.partition(";")
    kind = kind.strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(reversed(parse_qsl(body.decode(), keep_blank_values=True)))
        except (UnicodeDecodeError, ValueError):
            return None
    boundary = next(
        (
            o.split("=", 1)[1].strip().strip('"')
            for o in options.split(";")
            if o.strip().startswith("boundary=")
        ),
        "",
    )
    if kind != "multipart/form-data" or not boundary:
        return None
    fields: dict[str, str] = {}
    parts = body.split(b"--" + boundary.encode())
    if len(parts) < 2 or not parts[-1].startswith(b"--"):
        return None
    for part in parts[1:-1]:
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep or not value.endswith(b"\r\n") or b"filename=" in head.lower():
            return None
        name = _NAME.search(head)
        if name is None:
            return None
        try:
            fields.setdefault(name[1].decode(), value[:-2].decode())
        except UnicodeDecodeError:
            return None
    return fields


async def read_form(request: Request, entry: dict[str, Any]) -> tuple[dict[str, str], dict[str, Upload]]:
    """Parse multipart/urlencoded form into text fields and uploads; journal both (redacted)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) <= SMALL_FORM:
        small = _small_fields(request.headers.get("content-type", ""), await request.body())
        if small is not None:
            for key, text in small.items():
                entry["fields"][key] = REDACTED if key in SECRET_FIELDS else text
            return small, {}
    form: FormData = await request.form(max_files=16, max_fields=200, max_part_size=4 * 1024 * 1024)
    fields: dict[str, str] = {}
    uploads: dict[str, Upload] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            content = await value.read()
            uploads.setdefault(name, (value.filename or "", content))
            entry["files"].append(
                {
                    "name": name,
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": len(content),
                    "sha256": hashlib.sha256(content).hexdigest(),
                }
            )
        else:
            fields.setdefault(name, value)
            entry["fields"][name] = REDACTED if name in SECRET_FIELDS else value
    await form.close()
    return fields, uploads
