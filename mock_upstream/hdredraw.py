"""The "HD redraw" vendor (document 004): ten submit endpoints and `check_task_status`.

All are multipart POSTs authenticated by a `user_key` form field; every answer is HTTP 200 with
`err_code` 0 or 1 (`err_msg` then carries the documented text). A submit answers at once with
the task id; the result is rendered in the background (render.py). Statuses: the documented
`Completed`, `Failed` and `None` (JSON null: status unknown), and, while running, `Pending` then
`Processing` (not in the document: see mock_upstream/README.md). `check_task_status` answers
from a per-task cache for `hd_status_cache_seconds` (3 by default) of mock time, as the document
says; cached answers do not count as polls. A completed answer carries the fields of the
document's example answers (`vector_url`, `grid_url`, `generated_prompt` empty when they do
not apply). Billing: a submit takes one package count while any remain, else its price
(`HD_PRICE_MONEY`) from the money; an account with neither gets "账户剩余次数不足".
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mock_upstream import errors, images, jobs
from mock_upstream.core import Mock, base_url, new_entry, read_form, request_scenario
from mock_upstream.faults import Context
from mock_upstream.state import HD_PRICE_MONEY, Account, Scenario, Task

ROUTES: Final = tuple(HD_PRICE_MONEY)
RATIO_RE: Final = re.compile(r"^(\d{1,3}):(\d{1,3})$")
TRUE: Final = frozenset({"true", "1", "yes", "on"})
FALSE: Final = frozenset({"false", "0", "no", "off", ""})
EXPAND_FIELDS: Final = jobs.EXPAND_FIELDS
RUNNING: Final = ("Pending", "Processing")


class SubmitError(ValueError):
    """A rejected submit; the message is the full documented `err_msg`."""


def _detail(detail: str) -> SubmitError:
    return SubmitError(errors.hd_submit_failed(detail))


def _float(fields: dict[str, str], name: str, lo: float, hi: float, default: float | None = None) -> float:
    raw = fields.get(name, "")
    if raw == "":
        if default is None:
            raise _detail(f"缺少参数{name}")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _detail(f"{name}必须是数字") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _detail(f"{name}必须在{lo:g}-{hi:g}之间")
    return value


def _int(fields: dict[str, str], name: str, lo: int, hi: int, default: int) -> int:
    raw = fields.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _detail(f"{name}必须是整数") from None
    if not lo <= value <= hi:
        raise _detail(f"{name}必须在{lo}-{hi}之间")
    return value


def _bool(fields: dict[str, str], name: str, *, required: bool = False) -> bool:
    raw = fields.get(name)
    if raw is None:
        if required:
            raise _detail(f"缺少参数{name}")
        return False
    if raw.strip().lower() in TRUE:
        return True
    if raw.strip().lower() in FALSE:
        return False
    raise _detail(f"{name}必须是布尔值")


def _text(fields: dict[str, str], name: str, *, required: bool = False) -> str:
    value = fields.get(name, "")
    if required and not value.strip():
        raise _detail(f"缺少参数{name}")
    return value


def _expand(fields: dict[str, str]) -> dict[str, float]:
    out = {}
    for name in EXPAND_FIELDS:
        raw = fields.get(name, "")
        try:
            value = float(raw) if raw != "" else 0.0
        except ValueError:
            raise SubmitError(errors.hd_expand_error(name)) from None
        if not math.isfinite(value) or not 0.0 <= value <= 0.3:
            raise SubmitError(errors.hd_expand_error(name))
        out[name] = value
    return out


def parse_params(route: str, fields: dict[str, str]) -> dict[str, Any]:
    """Validate the form for `route`; raise SubmitError with the documented text."""
    match route:
        case "submit_task":
            return {
                "sdxl_model_dropdown": _text(fields, "sdxl_model_dropdown", required=True),
                "style_dropdown": _text(fields, "style_dropdown", required=True),
                "upscale": _float(fields, "upscale", 1, 8),
                "s_noise": _float(fields, "s_noise", 1, 1.1),
                "steps": _float(fields, "steps", 20, 40),
                "high_fidelity": _bool(fields, "high_fidelity", required=True),
                "strong_inpaint": _bool(fields, "strong_inpaint", required=True),
                "strong_inpaint_intensity": _float(fields, "strong_inpaint_intensity", 0, 1, 0.5),
                "prompt": _text(fields, "prompt"),
                "neg_prompt": _text(fields, "neg_prompt"),
                "vector_switch": _bool(fields, "vector_switch"),
                "color_count": _int(fields, "color_count", 2, 16, 5),
                "auto_generate_prompt": _bool(fields, "auto_generate_prompt"),
            }
        case "submit_vector_task":
            return {"color_count": _int(fields, "color_count", 2, 16, 5)}
        case "submit_seamless_task":
            return {
                "fit": _float(fields, "fit", 0.1, 0.9, 0.5),
                "direction": _int(fields, "direction", 0, 2, 0),
                **_expand(fields),
            }
        case "submit_edit_image_task":
            version = fields.get("model_version") or "v1"
            if version not in ("v1", "v2"):
                raise _detail("model_version必须是v1或v2")
            return {"prompt": _text(fields, "prompt", required=True), "model_version": version}
        case "submit_extract_pattern_task":
            ratio = RATIO_RE.match(fields.get("aspect_ratio") or "1:1")
            if not ratio or int(ratio[1]) == 0 or int(ratio[2]) == 0:
                raise _detail("aspect_ratio格式错误,应为W:H")
            return {"aspect_ratio": (int(ratio[1]), int(ratio[2]))}
        case "submit_expand_image_task":
            return {**_expand(fields), "prompt": _text(fields, "prompt")}
        case _:
            return {}


def charge(account: Account, route: str) -> bool:
    if account.hd_remaining_count > 0:
        account.hd_remaining_count -= 1
        return True
    if account.hd_remaining_money >= HD_PRICE_MONEY[route]:
        account.hd_remaining_money -= HD_PRICE_MONEY[route]
        return True
    return False


def render(mock: Mock, task: Task) -> dict[str, Any]:
    """The status answer: the fields of the document's example answers for the task's kind."""
    if task.finished_at is None:
        return {"err_code": 0, "status": RUNNING[0 if task.fraction(mock.state.clock.now()) < 0.5 else 1]}
    failure = task.failure()
    if failure is not None:
        # The "unknown" outcome ends the task with the documented null status.
        return {"err_code": 0, "status": None if failure[0] == "None" else "Failed"}
    account = mock.state.accounts.get(task.account)
    urls = task.urls
    extra = task.meta.get("extra", {})
    body: dict[str, Any] = {"err_code": 0, "status": "Completed", "images_url": urls["image.png"]}
    if task.kind == "submit_extract_pattern_task":
        body["images_urls"] = [urls["image.png"], urls["image-alt-1.png"]]
    if "image-1m.png" in urls:
        body["images_url_1m"] = urls["image-1m.png"]
    body.update(
        vector_url=urls.get("vector.eps", ""),
        grid_url=urls.get("grid.png", ""),
        generated_prompt=extra.get("generated_prompt", ""),
    )
    if account is not None:
        body.update(remaining_count=account.hd_remaining_count, remaining_money=account.hd_remaining_money)
    return body


async def submit(mock: Mock, request: Request) -> Response:
    route = request.path_params["route"]
    if route not in ROUTES:
        return errors.hd_error(f"no such endpoint: /api/{route}", 404)
    entry = new_entry(request, "hd", f"/api/{route}")
    ctx = Context("hd", request.url.path, request.method)
    try:
        fields, uploads = await read_form(request, entry)
    except Exception as exc:  # malformed multipart: still the vendor's own shape
        return errors.hd_error(errors.hd_submit_failed(f"表单解析失败:{exc}"))
    account = mock.state.account_by("user_key", fields.get("user_key"))
    ctx.account = account.name if account else None

    async def work() -> Response:
        if account is None:
            return errors.hd_error(errors.HD_NO_ACCOUNT)
        try:
            task = create(mock, request, route, account, fields, uploads, request_scenario(request))
        except SubmitError as exc:
            return errors.hd_error(str(exc))
        except ValueError as exc:  # a bad X-Mock-Scenario header
            return errors.hd_error(errors.hd_submit_failed(str(exc)))
        entry.update(paid=True, task_id=task.task_id)
        return JSONResponse(
            {
                "err_code": 0,
                "task_id": task.task_id,
                "remaining_count": account.hd_remaining_count,
                "remaining_money": account.hd_remaining_money,
            }
        )

    return await mock.exchange(ctx, entry, work)


def create(
    mock: Mock,
    request: Request,
    route: str,
    account: Account,
    fields: dict[str, str],
    uploads: dict[str, tuple[str, bytes]],
    scenario: Scenario | None,
) -> Task:
    """Check the submit (cheaply: the image's header, not its pixels), charge, start the render."""
    state = mock.state
    if "input_image" not in uploads:
        raise _detail("缺少参数input_image")
    content = uploads["input_image"][1]
    if len(content) > state.settings.hd_max_file_bytes:
        raise SubmitError(errors.HD_FILE_TOO_LARGE)
    params = parse_params(route, fields)
    if images.image_format(content) is None:
        raise _detail("无法识别的图片文件")
    if not charge(account, route):
        raise SubmitError(errors.HD_NO_BALANCE)
    task = mock.new_task(
        Task(
            task_id=state.hd_task_id(),
            provider="hd",
            kind=route,
            account=account.name,
            created_at=state.clock.now(),
            scenario=Scenario(),
            params=params,
            base_url=base_url(request),
        ),
        scenario,
    )

    async def render_it() -> None:
        made = await mock.renders.run(
            f"hd/{route}", jobs.hdredraw, route, params, content, state.settings.max_output_side
        )
        if "failure" in made:
            task.forced_failure = (None, errors.hd_submit_failed(made["failure"]))
            return
        task.outputs = list(made["outputs"])
        task.meta["extra"] = made["extra"]

    def crashed(exc: Exception) -> None:
        task.forced_failure = (None, f"render failed: {type(exc).__name__}")

    mock.prepare(task, render_it(), crashed)
    return task


async def check_status(mock: Mock, request: Request) -> Response:
    entry = new_entry(request, "hd", "/api/check_task_status")
    ctx = Context("hd", request.url.path, request.method)
    try:
        fields, _ = await read_form(request, entry)
    except Exception as exc:
        return errors.hd_error(errors.hd_submit_failed(f"表单解析失败:{exc}"))
    account = mock.state.account_by("user_key", fields.get("user_key"))
    task_id = fields.get("task_id", "")
    ctx.account, ctx.task_id = (account.name if account else None), task_id

    async def work() -> Response:
        if account is None:
            return errors.hd_error(errors.HD_NO_ACCOUNT)
        task = mock.state.tasks.get(task_id)
        if task is None or task.provider != "hd" or task.account != account.name:
            return errors.hd_error(errors.HD_TASK_UNKNOWN)
        now = mock.state.clock.now()
        if task.cached is not None and now - task.cached[0] < mock.state.settings.hd_status_cache_seconds:
            entry["cached"] = True
            return JSONResponse(task.cached[1])
        task.polls += 1
        if task.finished_at is None and not task.rendered and task.scenario_due(now):
            await mock.wait_rendered(task, mock.state.settings.status_render_wait_seconds)
        if task.is_due(now):
            mock.finish(task)
        body = render(mock, task)
        task.cached = (now, body)
        return JSONResponse(body)

    return await mock.exchange(ctx, entry, work)
