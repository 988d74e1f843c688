"""Client for the "HD redraw" vendor (document 004): ten paid submit endpoints, one status check.

Every call is a multipart POST carrying a ``user_key`` form field. Submits upload the source
image as the ``input_image`` file part (streamed from its file object, never read whole) and
answer ``{"err_code": 0, "task_id": ..., "remaining_count": ..., "remaining_money": ...}``;
``/api/check_task_status`` answers with a free-text ``status`` and, once done, the result
URLs. Failures arrive as ``{"err_code": 1, "err_msg": "<Chinese text>"}``: the vendor has no
error codes, so :data:`ERROR_TABLE` maps the documented messages to picflow's errors and
gives each a stable short code, keeping the vendor's text as the message.

Submits cost money and are sent ``idempotent=False`` (never retried once the request may
have reached the vendor); status checks are reads and are retried. The vendor caches
status answers for 3 seconds (:attr:`HdRedrawClient.STATUS_CACHE_SECONDS`): polling faster
only returns the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any, Final, Self

import httpx

from picflow.core.catalogue import (
    SPECS,
    CheckedParams,
    Operation,
    Provider,
    ResultKind,
    TaskState,
    choose_style,
    get_operation,
    validate_params,
)
from picflow.core.errors import (
    AuthError,
    InvalidRequestError,
    OutcomeUnknownError,
    ParamValidationError,
    PicflowError,
    QuotaExhaustedError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import Balance, ResultRef, Submission, TaskStatus
from picflow.net.http import RetryPolicy, parse_retry_after, send
from picflow.providers.base import ImageInput, Secret

if TYPE_CHECKING:
    from picflow.core.params import Params

__all__ = ["ERROR_TABLE", "STATUS_PATH", "HdRedrawClient"]

PROVIDER: Final = Provider.HDREDRAW
STATUS_PATH: Final = "/api/check_task_status"

# Matched by prefix on the stripped ``err_msg``, first hit wins. Prefixes stop before the
# separator because the document writes "任务提交失败:{err_msg}" with an ASCII colon and a
# Chinese server may as well send the full-width one.
#
# - 任务未找到或状态未知 → UpstreamTaskFailedError: the vendor no longer knows the task
#   (expired or never accepted); asking again cannot bring it back and the request itself
#   was well-formed, so it is a terminal task failure that keeps the vendor's text.
# - 任务提交失败:... → UpstreamTaskFailedError: the vendor uses it for any failure while
#   accepting a task (its own faults included), so it proves neither a bad request nor a
#   transient fault. Retrying a paid submit on a guess could pay twice; the job fails with
#   the raw message recorded.
ERROR_TABLE: Final[tuple[tuple[str, type[PicflowError], str], ...]] = (
    ("账户不存在", AuthError, "AccountNotFound"),
    ("账户剩余次数不足", QuotaExhaustedError, "InsufficientBalance"),
    ("文件大小不能超过16MB", InvalidRequestError, "FileTooLarge"),
    ("扩展参数错误", InvalidRequestError, "ExpandOutOfRange"),
    ("任务未找到或状态未知", UpstreamTaskFailedError, "TaskNotFound"),
    ("任务提交失败", UpstreamTaskFailedError, "SubmitFailed"),
)
_UNLISTED: Final = (UpstreamTaskFailedError, "UpstreamError")

# The spec's status mapping: the free-text ``status`` words, lower-cased.
STATES: Final = SPECS[PROVIDER].states

# Optional single-URL results besides the main image(s); empty strings mean "none".
_EXTRA_URLS: Final = (
    ("images_url_1m", ResultKind.IMAGE_1X),
    ("vector_url", ResultKind.VECTOR),
    ("grid_url", ResultKind.GRID),
)


class HdRedrawClient:
    """The HD redraw vendor's ten operations and its status check, over an injected client."""

    # The vendor caches check_task_status for 3 s: the job never polls faster (its spec's poll_floor).
    STATUS_CACHE_SECONDS: Final = SPECS[PROVIDER].poll_floor

    def __init__(self, http: httpx.Client, user_key: Secret, *, retry: RetryPolicy | None = None) -> None:
        self._http = http
        self._user_key = user_key
        self._retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"HdRedrawClient(base_url={str(self._http.base_url)!r})"

    @classmethod
    def from_config(cls, http: httpx.Client, secrets: Mapping[str, Secret]) -> Self:
        return cls(http, secrets["hdredraw_user_key"])

    def submit(
        self,
        operation: str,
        params: Params | CheckedParams | Mapping[str, Any],
        image: ImageInput,
        *,
        sync: bool = False,
        callback_url: str | None = None,
    ) -> Submission:
        """Submit a paid task; returns its ``task_id`` and the balance left.

        Raises :class:`ParamValidationError` before any network call for another provider's
        operation, invalid params, a URL image, a file over the documented 16 MB, or a style
        the vendor does not offer (it is polled: no sync answer, no callback).
        """
        op = get_operation(operation)
        if sync or callback_url is not None:
            choose_style(op, "sync" if sync else "callback", callbacks=True)
        if op.provider is not PROVIDER:
            raise ParamValidationError(
                f"{op.name} is a {op.provider} operation, not an HD redraw one",
                field="operation",
                rule=f"provider {PROVIDER}",
                operation=op.name,
            )
        values = self._param_values(op, params)
        upload = _upload_file(op, image)
        # Every param is sent, defaults included: the document marks most as required.
        fields = {"user_key": self._user_key.reveal()}
        fields.update((name, _form_value(value)) for name, value in values.items())
        request = self._http.build_request(
            "POST",
            op.endpoint,
            data=fields,
            files={"input_image": (image.filename, upload, image.content_type)},
        )
        body = self._call(request, idempotent=False)
        task_id = body.get("task_id")
        if isinstance(task_id, bool) or not isinstance(task_id, str | int) or task_id == "":
            # err_code 0 means the vendor accepted (and billed) a task we cannot follow.
            raise OutcomeUnknownError("accepted without a task_id", provider=PROVIDER, code="NoTaskId")
        return Submission(provider=PROVIDER, task_id=str(task_id), balance=_balance(body))

    @staticmethod
    def _param_values(op: Operation, params: Params | CheckedParams | Mapping[str, Any]) -> Mapping[str, Any]:
        """Every param with its default: Validate's checked values as they are, else validated.

        (These models have no field that may be None: the checked values, dumped without None,
        hold every field too.)"""
        if isinstance(params, CheckedParams):
            return params.for_operation(op.name)
        # Only a submit of unchecked params needs the models (pydantic): status reads do not load them.
        from picflow.core.params import Params

        # Re-validate a Params instance too: it may be another operation's model.
        raw = params.model_dump() if isinstance(params, Params) else params
        return validate_params(op, raw).model_dump()

    def status(self, task_id: str, *, operation: str | None = None) -> TaskStatus:
        """The task's state and, once done, its results and the balance left (any operation's)."""
        if not task_id.strip():
            raise ParamValidationError("task_id is empty", field="task_id", rule="non-empty")
        # (None, value) parts make httpx send a multipart form (as documented) without files.
        request = self._http.build_request(
            "POST",
            STATUS_PATH,
            files={"user_key": (None, self._user_key.reveal()), "task_id": (None, task_id)},
        )
        return _task_status(task_id, self._call(request, idempotent=True))

    # --- the one place the vendor's answers become picflow's errors -----------------------

    def _call(self, request: httpx.Request, *, idempotent: bool) -> dict[str, Any]:
        response = send(self._http, request, provider=PROVIDER, idempotent=idempotent, retry=self._retry)
        body = _json_object(response)
        status = response.status_code
        if not response.is_success:
            raise self._http_error(response, body, paid=not idempotent)
        if body is None or "err_code" not in body:
            kind = OutcomeUnknownError if not idempotent else TransientError
            content_type = response.headers.get("Content-Type", "")
            raise kind(
                f"unreadable answer (HTTP {status}, content-type {content_type!r})",
                provider=PROVIDER,
                code="MalformedAnswer",
                http_status=status,
            )
        err_code = body["err_code"]
        if type(err_code) is int and err_code == 0:
            return body
        raise self._vendor_error(body.get("err_msg"), err_code, http_status=status)

    def _http_error(
        self, response: httpx.Response, body: dict[str, Any] | None, *, paid: bool
    ) -> PicflowError:
        status = response.status_code
        err_msg = body.get("err_msg") if body else None
        message = self._redact(err_msg) if isinstance(err_msg, str) and err_msg else f"HTTP {status}"
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimitedError(
                message, provider=PROVIDER, code=status, http_status=status, retry_after=retry_after
            )
        if status in (502, 504) and paid and body is None:
            # A gateway's own 502/504 (the vendor always answers JSON): the vendor may have taken
            # and billed the task before the answer was lost, so this is not retried.
            return OutcomeUnknownError(message, provider=PROVIDER, code=status, http_status=status)
        if status >= 500:
            # The vendor's own 5xx, or a 500/503 before it: the task was not accepted.
            return TransientError(message, provider=PROVIDER, code=status, http_status=status)
        if status in (401, 403):
            return AuthError(message, provider=PROVIDER, code=status, http_status=status)
        if isinstance(err_msg, str) and err_msg:
            return self._vendor_error(err_msg, None, http_status=status)
        return InvalidRequestError(message, provider=PROVIDER, code=status, http_status=status)

    def _vendor_error(self, err_msg: object, err_code: object, *, http_status: int) -> PicflowError:
        text = err_msg.strip() if isinstance(err_msg, str) else ""
        kind, code = next(((k, c) for prefix, k, c in ERROR_TABLE if text.startswith(prefix)), _UNLISTED)
        message = self._redact(text) if text else f"err_code={err_code!r} without err_msg"
        return kind(message, provider=PROVIDER, code=code, http_status=http_status)

    def _redact(self, text: str) -> str:
        # The vendor's free text could echo the form back; the key must not reach an error.
        return text.replace(self._user_key.reveal(), "***")


def _upload_file(op: Operation, image: ImageInput) -> IO[bytes]:
    if image.file is None:
        raise ParamValidationError(
            f"{op.name}: the HD redraw API takes an uploaded file, not a URL",
            field="input_image",
            rule="a file, not a URL",
            operation=op.name,
        )
    size = image.known_size()
    if size is not None:
        op.input.check_size(size, what=op.name, field="input_image")
    return image.file


def _form_value(value: object) -> str:
    """A form field as the vendor's example sends it, but integral floats without ".0"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        # steps is documented as a float yet means a count: "30", not "30.0".
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"no form encoding for {type(value).__name__}")


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _task_status(task_id: str, body: Mapping[str, Any]) -> TaskStatus:
    raw = body.get("status")
    word = raw.strip().lower() if isinstance(raw, str) else ""
    raw_state = raw if isinstance(raw, str | int) and not isinstance(raw, bool) else None
    # A null status (present, None) reads as failed (the spec says why); an absent one, a number or
    # a word the document does not name is still running.
    state = STATES.read(None if "status" in body and raw is None else word)
    if raw is None and state is TaskState.FAILED:
        raw_state = "None"
    # The document gives result URLs only once the task is completed.
    results = _results(body) if state is TaskState.DONE else ()
    if state is TaskState.DONE and not any(ref.url for ref in results):
        raise ResultUnavailableError(
            f"task {raw} without a result URL", provider=PROVIDER, code="NoResultUrl"
        )
    failed = state is TaskState.FAILED
    err_msg = body.get("err_msg")
    return TaskStatus(
        provider=PROVIDER,
        task_id=task_id,
        state=state,
        raw_state=raw_state,
        results=results,
        error_code=raw_state if failed else None,
        error_message=err_msg if failed and _present(err_msg) else None,
        balance=_balance(body),
    )


def _results(body: Mapping[str, Any]) -> tuple[ResultRef, ...]:
    # images_urls is preferred ("客户端应优先检查 images_urls"); images_url is its first element.
    listed = body.get("images_urls")
    urls = [u for u in listed if _present(u)] if isinstance(listed, list) else []
    refs: list[ResultRef] = []
    if len(urls) > 1:
        refs.extend(ResultRef(kind=ResultKind.IMAGES, url=url, index=i) for i, url in enumerate(urls))
    elif urls:
        refs.append(ResultRef(kind=ResultKind.IMAGE, url=urls[0]))
    elif _present(main := body.get("images_url")):
        refs.append(ResultRef(kind=ResultKind.IMAGE, url=main))
    refs.extend(ResultRef(kind=kind, url=body[key]) for key, kind in _EXTRA_URLS if _present(body.get(key)))
    if _present(prompt := body.get("generated_prompt")):
        refs.append(ResultRef(kind=ResultKind.PROMPT, text=prompt))
    return tuple(refs)


def _present(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _balance(body: Mapping[str, Any]) -> Balance | None:
    count = _number(body.get("remaining_count"))
    money = _number(body.get("remaining_money"))
    if count is None and money is None:
        return None
    return Balance(remaining_count=None if count is None else int(count), remaining_money=money)


def _number(value: object) -> float | None:
    # Informational only: an unreadable balance is dropped rather than failing a paid call.
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None
