"""The control API under `/__mock/`, and the result-file route `/files/{token}/{name}`.

Tests drive the mock through these endpoints (or the `MockUpstream` helper in testing.py):
reset, load (a scenario document), seed, clock, accounts, settings, scenarios, faults, journal
(and its JSON Lines export), callbacks, a callback sink, Tencent job holding, renders (state,
waiting, holding), task inspection. Bodies are JSON; errors are `{"error": "..."}` with 400/404.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mock_upstream import errors, taskpic
from mock_upstream.core import Mock, new_entry
from mock_upstream.faults import Context
from mock_upstream.state import SETTINGS_FIELDS, Scenario, account_from_dict, check_config

MAX_WAIT: Final = 60.0
JOURNAL_FILTERS: Final = ("provider", "route", "method", "account", "task_id", "marker", "status", "path")


class ControlError(ValueError):
    """A 400 for the control API."""


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError("body must be a JSON object")
    return data


Handler = Callable[[Mock, Request], Awaitable[Response]]


def control(mock: Mock, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(mock, request)
        except (ControlError, ValueError, TypeError) as exc:
            return errors.control_error(400, str(exc))

    return endpoint


# ---- handlers -------------------------------------------------------------------------------
async def reset(mock: Mock, request: Request) -> Response:
    body = await _json(request)
    if body.get("account"):
        mock.state.reset_account(str(body["account"]))
    else:
        mock.reset()
    return JSONResponse({"ok": True, "now": mock.state.clock.now()})


async def load(mock: Mock, request: Request) -> Response:
    """Replace the scenario document (accounts, settings, scenarios, faults, callbacks, seed)
    and reset to it: what `--scenario FILE` does at start."""
    mock.state.config = check_config(await _json(request), "the posted scenario")
    mock.reset()
    return JSONResponse({"ok": True, "now": mock.state.clock.now()})


async def seed(mock: Mock, request: Request) -> Response:
    value = (await _json(request)).get("seed")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlError("seed must be an integer")
    mock.state.set_seed(value)
    return JSONResponse({"seed": value})


async def clock(mock: Mock, request: Request) -> Response:
    if request.method == "POST":
        body = await _json(request)
        if "running" in body:
            mock.state.clock.running = bool(body["running"])
        if "set" in body:
            mock.state.clock.set(float(body["set"]))
        if "advance" in body:
            seconds = float(body["advance"])
            if seconds < 0:
                raise ControlError("advance must be >= 0")
            mock.state.clock.advance(seconds)
        if ("advance" in body or "set" in body) and not mock.renders.held:
            # Time moved past a task's end means it ended: its render (if still running on a
            # slow machine) is waited for first, unless renders are held on purpose.
            await mock.renders.wait_for(lambda: not mock.renders.running, MAX_WAIT)
        mock.sweep()
    return JSONResponse({"now": mock.state.clock.now(), "running": mock.state.clock.running})


async def accounts(mock: Mock, request: Request) -> Response:
    if request.method == "POST":
        body = await _json(request)
        current = mock.state.accounts.get(str(body.get("name", "")))
        merged = {**asdict(current), **body} if current else body
        account = account_from_dict(merged)
        mock.state.accounts[account.name] = account
        return JSONResponse(account.public())
    return JSONResponse({"accounts": [a.public() for a in mock.state.accounts.values()]})


async def account(mock: Mock, request: Request) -> Response:
    found = mock.state.accounts.get(request.path_params["name"])
    if found is None:
        return errors.control_error(404, "no such account")
    return JSONResponse(found.public())


async def settings(mock: Mock, request: Request) -> Response:
    if request.method == "POST":
        body = await _json(request)
        unknown = set(body) - SETTINGS_FIELDS
        if unknown:
            raise ControlError(f"unknown settings: {sorted(unknown)}")
        for name, value in body.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ControlError(f"{name} must be a non-negative number")
            setattr(mock.state.settings, name, type(getattr(mock.state.settings, name))(value))
    return JSONResponse(asdict(mock.state.settings))


async def scenario(mock: Mock, request: Request) -> Response:
    state = mock.state
    if request.method == "DELETE":
        state.task_scenarios.clear()
        state.account_scenarios.clear()
        state.next_scenarios.clear()
        state.default_scenario = Scenario()
        return JSONResponse({"ok": True})
    body = await _json(request)
    scope = {k: body.pop(k) for k in ("account", "task_id", "next") if k in body}
    if len(scope) > 1:
        raise ControlError("give at most one of account, task_id, next")
    chosen = Scenario.from_dict(body)
    if "task_id" in scope:
        task_id = str(scope["task_id"])
        state.task_scenarios[task_id] = chosen
        if task_id in state.tasks:
            # Re-schedule a live task from now on.
            task = state.tasks[task_id]
            task.scenario, task.polls, task.created_at = chosen, 0, state.clock.now()
    elif "account" in scope:
        state.account_scenarios[str(scope["account"])] = chosen
    elif "next" in scope:
        count = scope["next"]
        if not isinstance(count, int) or count < 1:
            raise ControlError("next must be a positive integer")
        state.next_scenarios.extend([chosen] * count)
    else:
        state.default_scenario = chosen
    return JSONResponse({"scope": scope or "default", "scenario": asdict(chosen)})


async def faults(mock: Mock, request: Request) -> Response:
    if request.method == "POST":
        return JSONResponse(mock.faults.add(await _json(request)).public())
    if request.method == "DELETE":
        mock.faults.rules.clear()
        return JSONResponse({"ok": True})
    return JSONResponse({"faults": [f.public() for f in mock.faults.rules]})


async def fault(mock: Mock, request: Request) -> Response:
    if not mock.faults.remove(request.path_params["fault_id"]):
        return errors.control_error(404, "no such fault")
    return JSONResponse({"ok": True})


def _filtered(mock: Mock, request: Request) -> list[dict[str, Any]]:
    query = request.query_params
    entries = mock.state.journal
    for name in JOURNAL_FILTERS:
        if name in query:
            entries = [e for e in entries if str(e.get(name)) == query[name]]
    if "paid" in query:
        entries = [e for e in entries if e["paid"] == (query["paid"].lower() in ("1", "true"))]
    return entries


async def journal(mock: Mock, request: Request) -> Response:
    if request.method == "DELETE":
        mock.state.journal.clear()
        return JSONResponse({"ok": True})
    entries = _filtered(mock, request)
    return JSONResponse({"count": len(entries), "entries": entries})


async def journal_export(mock: Mock, request: Request) -> Response:
    """The journal (filters as for GET /__mock/journal) as JSON Lines, one request a line."""
    entries = _filtered(mock, request)
    lines = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries)
    return Response(
        lines,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="mock_upstream-journal.jsonl"'},
    )


async def journal_count(mock: Mock, request: Request) -> Response:
    entries = _filtered(mock, request)
    group = request.query_params.get("group_by")
    if group is None:
        return JSONResponse({"count": len(entries)})
    return JSONResponse({"count": len(entries), "groups": dict(Counter(str(e.get(group)) for e in entries))})


async def callbacks(mock: Mock, request: Request) -> Response:
    hub = mock.callbacks
    return JSONResponse(
        {
            "config": asdict(hub.config),
            "pending": [d.public() for d in hub.pending],
            "log": [d.public() for d in hub.log],
        }
    )


async def callbacks_config(mock: Mock, request: Request) -> Response:
    return JSONResponse(asdict(mock.callbacks.configure(await _json(request))))


async def callbacks_flush(mock: Mock, request: Request) -> Response:
    # Renders in flight end their tasks first (unless held on purpose), so a flush right after
    # a submit delivers that task's callback.
    if not mock.renders.held:
        await mock.renders.wait_for(lambda: not mock.renders.running, MAX_WAIT)
    mock.sweep()
    delivered = await mock.callbacks.flush(mock.state.clock.now())
    return JSONResponse({"delivered": [d.public() for d in delivered]})


async def sink(mock: Mock, request: Request) -> Response:
    """A callback receiver: POST records the JSON body under a name, GET lists them."""
    name = request.path_params["name"]
    sinks = mock.state.sinks
    if request.method == "POST":
        raw = await request.body()
        try:
            sinks.setdefault(name, []).append(json.loads(raw))
        except json.JSONDecodeError:
            sinks.setdefault(name, []).append({"raw": raw.decode("utf-8", "replace")})
        async with mock.sink_changed():
            mock.sink_changed().notify_all()
        return JSONResponse({"ok": True})
    wanted = int(request.query_params.get("wait_for", "0"))
    if wanted:
        # Block (server side) until that many bodies arrived: tests wait without sleeping.
        timeout = min(float(request.query_params.get("timeout", "5")), 30.0)
        async with mock.sink_changed():
            try:
                await asyncio.wait_for(
                    mock.sink_changed().wait_for(lambda: len(sinks.get(name, [])) >= wanted), timeout
                )
            except TimeoutError:
                return errors.control_error(408, "timed out waiting for callbacks")
    return JSONResponse({"received": sinks.get(name, [])})


async def tencent_jobs(mock: Mock, request: Request) -> Response:
    if request.method == "POST":
        body = await _json(request)
        if "hold" in body:
            mock.jobs.set_hold(bool(body["hold"]))
    elif "wait_active" in request.query_params:
        timeout = min(float(request.query_params.get("timeout", "5")), 30.0)
        reached = await mock.jobs.wait_total(int(request.query_params["wait_active"]), timeout)
        if not reached:
            return errors.control_error(408, "timed out waiting for running jobs")
    return JSONResponse({"hold": mock.jobs.hold, "active": mock.jobs.active})


def _timeout(request: Request) -> float:
    return min(float(request.query_params.get("timeout", "10")), MAX_WAIT)


async def renders(mock: Mock, request: Request) -> Response:
    """GET: what the worker pool does, optionally after waiting (`wait_started=N`: N renders
    picked up by a worker; `wait_idle=1`: none in flight). POST {"hold": bool}: keep finished
    renders from being delivered (their tasks stay unfinished) until released."""
    pool = mock.renders
    if request.method == "POST":
        body = await _json(request)
        if body.get("hold"):
            pool.hold()
        elif "hold" in body:
            pool.release()
        return JSONResponse(pool.public())
    query = request.query_params
    if "wait_started" in query:
        wanted = int(query["wait_started"])
        if not await pool.wait_for(lambda: pool.started_total >= wanted, _timeout(request)):
            return errors.control_error(408, "timed out waiting for renders to start")
    idle = query.get("wait_idle") in ("1", "true")
    if idle and not await pool.wait_for(lambda: not pool.running, _timeout(request)):
        return errors.control_error(408, "timed out waiting for renders to end")
    return JSONResponse(pool.public())


async def sync_waiting(mock: Mock, request: Request) -> Response:
    """The task ids whose sync=1 submit is waiting for their end (`wait=N`: at least N)."""
    wanted = int(request.query_params.get("wait", "0"))
    if wanted and not await mock.wait_sync_waiting(wanted, _timeout(request)):
        return errors.control_error(408, "timed out waiting for sync submits")
    return JSONResponse({"task_ids": sorted(mock.sync_waiting)})


async def task(mock: Mock, request: Request) -> Response:
    found = mock.state.tasks.get(request.path_params["task_id"])
    if found is None:
        return errors.control_error(404, "no such task")
    return JSONResponse(
        {
            "task_id": found.task_id,
            "provider": found.provider,
            "kind": found.kind,
            "account": found.account,
            "created_at": found.created_at,
            "finished_at": found.finished_at,
            "ended_at": found.ended_at,
            "rendered": found.rendered,
            "polls": found.polls,
            "scenario": asdict(found.scenario),
            "failure": found.failure(),
            "urls": found.urls,
            "callback_url": found.callback_url,
        }
    )


async def files(mock: Mock, request: Request) -> Response:
    """Serve a result file; 403 once expired (mock clock), 404 if unknown."""
    token, name = request.path_params["token"], request.path_params["name"]
    entry = new_entry(request, "files", "/files")
    stored = mock.state.files.get(token)
    ctx = Context("files", request.url.path, request.method)

    async def work() -> Response:
        if stored is None or stored.name != name:
            return errors.file_error(404, "NoSuchKey", "The specified key does not exist.")
        if mock.state.clock.now() >= stored.expires_at:
            return errors.file_error(403, "AccessDenied", "Request has expired")
        return Response(stored.content, media_type=stored.media_type)

    response = await mock.exchange(ctx, entry, work)
    if response.status_code == 200:
        # What actually went out (after any damaging fault), so tests can compare checksums.
        entry["result_sha256"] = hashlib.sha256(bytes(response.body)).hexdigest()
    return response


def routes(mock: Mock) -> list[Route]:
    def r(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, control(mock, handler), methods=methods)

    return [
        r("/__mock/reset", reset, ["POST"]),
        r("/__mock/load", load, ["POST"]),
        r("/__mock/seed", seed, ["POST"]),
        r("/__mock/clock", clock, ["GET", "POST"]),
        r("/__mock/accounts", accounts, ["GET", "POST"]),
        r("/__mock/accounts/{name}", account, ["GET"]),
        r("/__mock/config", settings, ["GET", "POST"]),
        r("/__mock/scenario", scenario, ["POST", "DELETE"]),
        r("/__mock/faults", faults, ["GET", "POST", "DELETE"]),
        r("/__mock/faults/{fault_id}", fault, ["DELETE"]),
        r("/__mock/journal", journal, ["GET", "DELETE"]),
        r("/__mock/journal/count", journal_count, ["GET"]),
        r("/__mock/journal/export", journal_export, ["GET"]),
        r("/__mock/callbacks", callbacks, ["GET"]),
        r("/__mock/callbacks/config", callbacks_config, ["POST"]),
        r("/__mock/callbacks/flush", callbacks_flush, ["POST"]),
        r("/__mock/sink/{name}", sink, ["GET", "POST"]),
        r("/__mock/tencent/jobs", tencent_jobs, ["GET", "POST"]),
        r("/__mock/renders", renders, ["GET", "POST"]),
        r("/__mock/sync_waiting", sync_waiting, ["GET"]),
        r("/__mock/tasks/{task_id}", task, ["GET"]),
        r("/files/{token}/{name}", files, ["GET"]),
    ]


def sweeper(mock: Mock) -> Callable[[], None]:
    return lambda: taskpic.sweep(mock)
