"""The "task/pic" API (documents 000-002): segmentation, background, idphoto, and task polling.

`POST /task/pic/{segmentation|background|idphoto}` (multipart, Bearer token) answers
`{"status": 200, "data": {...}}` with exactly the fields of the documents' example answer.
An async submit (sync=0) answers at once with the queued task; the source is downloaded and the
result rendered in the background (render.py). sync=1 waits for the end, at most
`sync_wait_seconds`, and answers with it (or, past the cap, with the task as it stands).
Everything the documents leave open (the poll path `GET /task/{task_id}`, the states other than
1 Complete, the error answers, the callback body) is listed in mock_upstream/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mock_upstream import errors, images, jobs, sources
from mock_upstream.core import Mock, base_url, new_entry, read_form, request_scenario
from mock_upstream.faults import Context
from mock_upstream.state import TASKPIC_PRICE, Account, Scenario, Task

KINDS: Final = ("segmentation", "background", "idphoto")
PROGRESS_STATES: Final = ((0, "Queued", 0), (2, "Preparing", 10), (3, "Waiting", 20), (4, "Processing", 50))
SIZE_RE: Final = re.compile(r"^(\d+)x(\d+)$")
URL_RE: Final = re.compile(r"^https?://[^\s/]+")


class BadParamsError(ValueError):
    """A 400: the message goes to the client."""


def _choice(fields: dict[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = fields.get(name, "") or default
    if value not in allowed:
        raise BadParamsError(f"{name} must be one of {', '.join(a or '(empty)' for a in allowed)}")
    return value


def _color(fields: dict[str, str]) -> tuple[int, int, int]:
    raw = fields.get("bg_color") or "ffffff"
    color = images.parse_hex_color(raw)
    if color is None:
        raise BadParamsError("bg_color must be a hex colour such as ffffff")
    return color


def parse_params(kind: str, fields: dict[str, str], has_file: bool) -> dict[str, Any]:
    """Validate the form for `kind`; raise BadParamsError with the reason."""
    url = fields.get("image_url", "")
    if has_file == bool(url):
        raise BadParamsError("exactly one of image_file and image_url is required")
    if url and not URL_RE.match(url):
        raise BadParamsError("image_url must be an http(s) URL")
    callback = fields.get("callback_url", "")
    if callback and not URL_RE.match(callback):
        raise BadParamsError("callback_url must be an http(s) URL")
    params: dict[str, Any] = {
        "image_url": url,
        "sync": int(_choice(fields, "sync", "0", ("0", "1"))),
        "callback_url": callback or None,
    }
    if kind == "segmentation":
        params["type"] = _choice(fields, "type", "", ("", "person", "object", "stamp"))
        params["output_type"] = int(_choice(fields, "output_type", "2", ("1", "2", "3")))
        params["crop"] = _choice(fields, "crop", "0", ("0", "1")) == "1"
        params["format"] = _choice(fields, "format", "png", ("png", "jpg"))
        params["bg_color"] = _color(fields)
    elif kind == "idphoto":
        match = SIZE_RE.match(fields.get("size", ""))
        if not match or not all(100 <= int(v) <= 2000 for v in match.groups()):
            raise BadParamsError("size must be {width}x{height} with each side within 100-2000")
        params["size"] = (int(match[1]), int(match[2]))
        params["format"] = _choice(fields, "format", "png", ("png", "jpg"))
        params["bg_color"] = _color(fields)
    else:
        batch = fields.get("batch_size", "")
        if not batch:
            # Document 000 marks it required (必填 是) though it names a default of 2.
            raise BadParamsError("batch_size is required")
        if batch not in ("1", "2", "3", "4"):
            raise BadParamsError("batch_size must be an integer within 1-4")
        params["batch_size"] = int(batch)
        prompt = fields.get("prompt", "")
        if not prompt.strip():
            raise BadParamsError("prompt is required")
        if len(prompt) > 1024:
            raise BadParamsError("prompt must be at most 1024 characters")
        params["prompt"] = prompt
    return params


def price(kind: str, params: dict[str, Any]) -> int:
    return TASKPIC_PRICE[kind] * int(params.get("batch_size", 1))


def authenticate(mock: Mock, request: Request) -> Account | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return mock.state.account_by("token", token.strip()) if scheme.lower() == "bearer" else None


def render(mock: Mock, task: Task) -> dict[str, Any]:
    """The `data` object of an answer: always the example answer's fields, filled in as far as
    the task has got (sizes, box and URL only once it is complete)."""
    now = mock.state.clock.now()
    params = task.params
    requested = params.get("type", "")
    data: dict[str, Any] = {
        "completed_at": 0,
        "created_at": int(task.created_at),
        "download_time": 0,
        "err_info": "",
        "foreground_rect": {"x": 0, "y": 0, "width": 0, "height": 0},
        "image": "",
        "image_height": 0,
        "image_width": 0,
        "output_type": params.get("output_type", 2),
        "processed_at": 0,
        "progress": 0,
        "result_type": "",
        "return_type": 1,
        "state": 0,
        "state_detail": "Queued",
        "task_id": task.task_id,
        "time_elapsed": 0.0,
        "type": requested or "auto",
    }
    if task.finished_at is None:
        stage = PROGRESS_STATES[min(3, int(task.fraction(now) * 4))]
        data.update(state=stage[0], state_detail=stage[1], progress=stage[2])
        if stage[0] >= 3:
            data["processed_at"] = int(task.created_at)
        return data
    data.update(
        completed_at=int(task.finished_at),
        processed_at=int(task.created_at),
        progress=100,
        download_time=task.meta.get("download_ms", 0),
        time_elapsed=round((task.finished_at - task.created_at) * 1000 + 384.55, 2),
    )
    failure = task.failure()
    if failure is not None:
        code = failure[0] if isinstance(failure[0], int) and failure[0] in errors.TASKPIC_FAILURES else -1
        message = failure[1] or errors.TASKPIC_FAILURES[code]
        data.update(state=code, state_detail="Failed", err_info=message)
        return data
    box = task.meta.get("rect", (0, 0, 0, 0))
    width, height = task.meta.get("size", (0, 0))
    data.update(
        state=1,
        state_detail="Complete",
        # The example answers say "object" for every operation, idphoto included.
        result_type=requested or "object",
        foreground_rect={"x": box[0], "y": box[1], "width": box[2] - box[0], "height": box[3] - box[1]},
        image_width=width,
        image_height=height,
    )
    for name, url in task.urls.items():
        if name.startswith("image"):
            data["image"] = url
        elif name.startswith("mask"):
            # Not in the documents: output_type 1 and 3 promise a mask, and no field is shown.
            data["mask"] = url
    return data


def answer(mock: Mock, task: Task) -> JSONResponse:
    """A `{"status": 200, "data": ...}` answer, queueing a due callback.

    Queued now, delivered only by the worker's next tick or a flush, i.e. after this answer has
    been written: queueing in a background task instead would race a test's next control call.
    """
    queue_callbacks(mock, [task])
    return JSONResponse({"status": 200, "data": render(mock, task)})


def queue_callbacks(mock: Mock, tasks: Iterable[Task] | None = None) -> None:
    for task in mock.state.tasks.values() if tasks is None else tasks:
        if task.callback_due and task.callback_url and task.finished_at is not None:
            task.callback_due = False
            body = {"status": 200, "data": render(mock, task)}
            mock.callbacks.enqueue(task.task_id, task.callback_url, body, task.finished_at)


def sweep(mock: Mock) -> None:
    """End the tasks whose time has come (not the poll-counted ones) and queue their callbacks."""
    now = mock.state.clock.now()
    for task in mock.state.tasks.values():
        timed = task.scenario.polls is None
        if task.provider == "taskpic" and task.finished_at is None and timed and task.is_due(now):
            mock.finish(task)
    queue_callbacks(mock)


async def submit(mock: Mock, request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind not in KINDS:
        return errors.taskpic_error(404, f"no such endpoint: /task/pic/{kind}")
    entry = new_entry(request, "taskpic", f"/task/pic/{kind}")
    ctx = Context("taskpic", request.url.path, request.method)
    try:
        fields, uploads = await read_form(request, entry)
    except Exception as exc:  # malformed multipart: the provider's own 400
        return errors.taskpic_error(400, f"invalid form: {exc}")
    account = authenticate(mock, request)
    ctx.account = account.name if account else None

    async def work() -> Response:
        if account is None:
            return errors.taskpic_error(401, errors.TASKPIC_BAD_TOKEN)
        try:
            params = parse_params(kind, fields, "image_file" in uploads)
            scenario = request_scenario(request)
        except ValueError as exc:
            return errors.taskpic_error(400, str(exc))
        cost = price(kind, params)
        if account.taskpic_balance < cost:
            return errors.taskpic_error(402, errors.TASKPIC_NO_BALANCE)
        task = create(mock, request, kind, account, params, uploads, scenario)
        account.taskpic_balance -= cost
        entry.update(paid=True, task_id=task.task_id)
        if params["sync"] == 1:
            await mock.wait_sync(task, mock.state.settings.sync_wait_seconds)
        return answer(mock, task)

    return await mock.exchange(ctx, entry, work)


def create(
    mock: Mock,
    request: Request,
    kind: str,
    account: Account,
    params: dict[str, Any],
    uploads: dict[str, tuple[str, bytes]],
    scenario: Scenario | None,
) -> Task:
    """Register the task at once; its source is fetched and rendered in the background."""
    state = mock.state
    task = Task(
        task_id=state.uuid(),
        provider="taskpic",
        kind=kind,
        account=account.name,
        created_at=state.clock.now(),
        scenario=Scenario(),
        params=params,
        base_url=base_url(request),
        callback_url=params["callback_url"],
        sync=params["sync"] == 1,
    )
    mock.new_task(task, scenario)

    def crashed(exc: Exception) -> None:
        task.forced_failure = (-1, f"{errors.TASKPIC_FAILURES[-1]}: {type(exc).__name__}")

    mock.prepare(task, _prepare(mock, task, kind, params, uploads), crashed)
    return task


async def _prepare(
    mock: Mock, task: Task, kind: str, params: dict[str, Any], uploads: dict[str, tuple[str, bytes]]
) -> None:
    state = mock.state
    limit = state.settings.taskpic_max_image_bytes
    if "image_file" in uploads:
        source: bytes | None = uploads["image_file"][1]
    else:
        try:
            fetched = await sources.fetch(
                params["image_url"], timeout=state.settings.fetch_timeout_seconds, max_bytes=limit
            )
        except sources.FetchError as exc:
            task.forced_failure = (-3, f"{errors.TASKPIC_FAILURES[-3]}: {exc}")
            return
        source = None if fetched.too_large else fetched.data
    if source is None or len(source) > limit:
        task.forced_failure = (-5, None)
        return
    # A plausible, deterministic download time in milliseconds.
    task.meta["download_ms"] = 100 + len(source) % 900
    result = await mock.renders.run(f"taskpic/{kind}", jobs.taskpic, kind, params, source)
    if "failure" in result:
        task.forced_failure = (int(result["failure"]), None)
        return
    task.outputs = list(result["outputs"])
    task.meta.update(rect=result["rect"], size=result["size"], source_size=result["source_size"])


async def poll(mock: Mock, request: Request) -> Response:
    task_id = request.path_params["task_id"]
    entry = new_entry(request, "taskpic", "/task/{task_id}")
    account = authenticate(mock, request)
    ctx = Context("taskpic", request.url.path, request.method, account.name if account else None, task_id)

    async def work() -> Response:
        if account is None:
            return errors.taskpic_error(401, errors.TASKPIC_BAD_TOKEN)
        task = mock.state.tasks.get(task_id)
        if task is None or task.provider != "taskpic" or task.account != account.name:
            return errors.taskpic_error(404, errors.TASKPIC_TASK_UNKNOWN)
        task.polls += 1
        now = mock.state.clock.now()
        if task.finished_at is None and not task.rendered and task.scenario_due(now):
            await mock.wait_rendered(task, mock.state.settings.status_render_wait_seconds)
        if task.is_due(now):
            mock.finish(task)
        return answer(mock, task)

    return await mock.exchange(ctx, entry, work)
