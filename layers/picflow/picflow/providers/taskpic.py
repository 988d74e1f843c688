"""Client for the "task/pic" API: ``segmentation``, ``background`` and ``idphoto`` (documents 000-002).

Every operation is a multipart ``POST /task/pic/<name>`` with ``Authorization: Bearer``; the
source image is ``image_file`` (streamed from a file object) or ``image_url``. With ``sync=1``
the answer carries the finished task; with ``sync=0`` it carries a ``task_id`` to poll, and a
``callback_url`` makes the provider POST the same JSON a poll returns. One parser,
:meth:`TaskPicClient._task_status`, reads a task from all three.

What the documents do not say, and what we chose (each also marked ``# guess:`` below):
- the status path: ``GET /task/{task_id}`` (:attr:`TaskPicClient.STATUS_PATH`);
- the error answers: the documents show only the success shape. We read
  ``{"status": <non-200>, "message": ...}`` whether it comes with HTTP 200 or a matching
  HTTP status, and map the code like an HTTP status (see :func:`_error_for`);
- the request id: taken from ``X-Request-Id`` / ``X-Oneapi-Request-Id`` when present;
- task states other than the documented ones: unknown non-negative = pending, unknown
  negative = failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Self

import httpx

from picflow.core.catalogue import (
    SPECS,
    CheckedParams,
    Operation,
    Provider,
    ResultKind,
    TaskState,
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
from picflow.core.tasks import ResultRef, Submission, TaskStatus
from picflow.net.http import RetryPolicy, parse_retry_after, send
from picflow.providers.base import ImageInput, Secret

if TYPE_CHECKING:
    from picflow.core.params import Params

__all__ = ["TaskPicClient", "expected_results"]

PROVIDER: Final = Provider.TASKPIC

# The task states of documents 000-002 and what each failed one means: the spec's status mapping.
STATES: Final = SPECS[PROVIDER].states

# Kept in ``meta`` so the job record shows what the provider measured and when.
_META_KEYS: Final = (
    "foreground_rect",
    "image_width",
    "image_height",
    "created_at",
    "processed_at",
    "completed_at",
    "time_elapsed",
    "download_time",
    "result_type",
    "return_type",
    "output_type",
    "type",
)
# guess: no request id is documented; these are the headers such gateways commonly set.
_REQUEST_ID_HEADERS: Final = ("x-request-id", "x-oneapi-request-id")
# guess: ids are documented only by example (a UUID); refuse anything that could change the path.
_TASK_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def expected_results(operation: str | Operation, params: Params) -> frozenset[ResultKind]:
    """The result kinds a successful call of ``operation`` with ``params`` returns."""
    op = operation if isinstance(operation, Operation) else get_operation(operation)
    if op.name == "segmentation":
        output_type = getattr(params, "output_type", 2)
        return {
            1: frozenset({ResultKind.IMAGE, ResultKind.MASK}),
            2: frozenset({ResultKind.IMAGE}),
            3: frozenset({ResultKind.MASK}),
        }[output_type]
    return op.results


class TaskPicClient:
    """Submits task/pic operations and reads their tasks (poll or callback).

    ``http`` comes from :func:`picflow.net.http.build_client` with the provider's base URL.
    """

    # guess: the documents do not show how to read a task; this is the one line to change.
    STATUS_PATH: Final = "/task/{task_id}"

    def __init__(self, http: httpx.Client, token: Secret, *, retry: RetryPolicy | None = None) -> None:
        self._http = http
        self._token = token
        self._retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"TaskPicClient(base_url={str(self._http.base_url)!r})"

    @classmethod
    def from_config(cls, http: httpx.Client, secrets: Mapping[str, Secret]) -> Self:
        return cls(http, secrets["taskpic_token"])

    # --- public API ---------------------------------------------------------------------

    def submit(
        self,
        operation: str,
        params: Params | CheckedParams | Mapping[str, Any],
        image: ImageInput,
        *,
        sync: bool = False,
        callback_url: str | None = None,
    ) -> Submission:
        """Submit one paid task; validated first, never retried once it may have been sent.

        Returns the :class:`Submission` with the task id and the task as the answer
        described it: finished (``sync=True`` and done), pending, or already failed (call
        :meth:`TaskStatus.raise_for_failure`). Raises :class:`ParamValidationError` before
        any network call, the mapped error of a provider refusal, or
        :class:`OutcomeUnknownError` when the answer was lost or unreadable.
        """
        op = get_operation(operation)
        if op.provider is not PROVIDER:
            raise ParamValidationError(
                f"{op.name} is a {op.provider} operation, not a task/pic one",
                field="operation",
                rule="a task/pic operation",
                operation=op.name,
            )
        fields = {name: str(value) for name, value in self._param_values(op, params).items()}
        fields["sync"] = "1" if sync else "0"
        if callback_url is not None:
            fields["callback_url"] = _checked_url(callback_url, "callback_url", op.name)
        files: dict[str, Any]
        if image.file is not None:
            _check_size(image, op)
            files = {"image_file": (image.filename, image.file, image.content_type)}
        else:
            # A (None, value) part keeps the body multipart (as the documents' requests
            # example does) even when no file is sent.
            files = {"image_url": (None, _checked_url(image.url or "", "image_url", op.name))}
        request = self._http.build_request(
            "POST", op.endpoint, data=fields, files=files, headers=self._auth_headers()
        )
        response = send(self._http, request, provider=PROVIDER, idempotent=False, retry=self._retry)
        data = self._answer(response, paid=True)
        status = self._task_status(data, op.name, malformed=OutcomeUnknownError)
        return Submission(
            provider=PROVIDER, task_id=status.task_id, status=status, request_id=_request_id(response)
        )

    def status(self, task_id: str, *, operation: str | None = None) -> TaskStatus:
        """Read a task (idempotent, retried within the policy).

        ``operation`` names the results of a background task as ``IMAGES`` even when the
        provider answers with a single ``image``; without it ``image`` reads as ``IMAGE``.
        A task the provider does not know raises :class:`UpstreamTaskFailedError`.
        """
        if not _TASK_ID.fullmatch(task_id):
            raise ParamValidationError(
                f"invalid task id {task_id!r}", field="task_id", rule=f"matches {_TASK_ID.pattern}"
            )
        request = self._http.build_request(
            "GET", self.STATUS_PATH.format(task_id=task_id), headers=self._auth_headers()
        )
        response = send(self._http, request, provider=PROVIDER, idempotent=True, retry=self._retry)
        data = self._answer(response, paid=False, task_lookup=True)
        return self._task_status(data, operation, malformed=TransientError, fallback_task_id=task_id)

    @classmethod
    def parse_callback(cls, body: bytes | Mapping[str, Any], *, operation: str | None = None) -> TaskStatus:
        """Read the task the provider POSTed to ``callback_url`` (the same JSON a poll returns).

        A classmethod: a callback needs no credentials. A body that is not that JSON raises
        :class:`InvalidRequestError`: the caller, not the provider, sent something wrong,
        and retrying cannot fix it.
        """
        if isinstance(body, bytes | bytearray):
            try:
                payload: Any = json.loads(body)
            except ValueError:
                raise InvalidRequestError(
                    "callback body is not JSON", provider=PROVIDER, code="MalformedCallback"
                ) from None
        else:
            payload = body
        data = _envelope(
            payload, http_status=None, paid=False, task_lookup=True, malformed=InvalidRequestError, token=None
        )
        return cls._task_status(data, operation, malformed=InvalidRequestError)

    # --- internals ----------------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.reveal()}"}

    @staticmethod
    def _param_values(op: Operation, params: Params | CheckedParams | Mapping[str, Any]) -> Mapping[str, Any]:
        """The params to send, None left out: Validate's checked values as they are, else validated."""
        if isinstance(params, CheckedParams):
            return params.for_operation(op.name)
        return TaskPicClient._check_params(op, params).model_dump(exclude_none=True)

    @staticmethod
    def _check_params(op: Operation, params: Params | Mapping[str, Any]) -> Params:
        # Only a submit of unchecked params needs the models (pydantic): status reads do not load them.
        from picflow.core.params import Params

        if isinstance(params, Params):
            if not isinstance(params, op.params):
                raise ParamValidationError(
                    f"{op.name} takes {op.params.__name__}, not {type(params).__name__}",
                    field="params",
                    rule=op.params.__name__,
                    operation=op.name,
                )
            return params
        return validate_params(op, params)

    def _answer(
        self, response: httpx.Response, *, paid: bool, task_lookup: bool = False
    ) -> Mapping[str, Any]:
        """The ``data`` of a success answer, or the mapped error: the one place answers are judged."""
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        payload: Any = None
        if content_type == "application/json" or content_type.endswith("+json"):
            try:
                payload = response.json()
            except ValueError:
                payload = None
        request_id = _request_id(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if not response.is_success and _provider_error_code(payload) is None:
            # A gateway's or server's own answer (HTML 502, plain-text 429): judge the HTTP status.
            raise _error_for(
                response.status_code,
                response.reason_phrase or "no message",
                paid=paid,
                task_lookup=task_lookup,
                from_provider=False,
                http_status=response.status_code,
                request_id=request_id,
                retry_after=retry_after,
                token=self._token,
            )
        return _envelope(
            payload,
            http_status=response.status_code,
            paid=paid,
            task_lookup=task_lookup,
            malformed=OutcomeUnknownError if paid else TransientError,
            request_id=request_id,
            retry_after=retry_after,
            token=self._token,
        )

    @staticmethod
    def _task_status(
        data: Mapping[str, Any],
        operation: str | None,
        *,
        malformed: type[PicflowError],
        fallback_task_id: str | None = None,
    ) -> TaskStatus:
        """The one parser of a task, for sync answers, polls and callbacks alike."""
        state = _int(data.get("state"))
        task_id = data.get("task_id") or fallback_task_id
        if state is None or not isinstance(task_id, str):
            raise malformed(
                "task answer lacks an integer state or a task_id", provider=PROVIDER, code="MalformedResponse"
            )
        detail = _str(data.get("state_detail"))
        err_info = _str(data.get("err_info"))
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "task_id": task_id,
            "raw_state": state,
            "progress": _progress(data.get("progress")),
            "detail": detail,
            "meta": {key: data[key] for key in _META_KEYS if data.get(key) is not None},
        }
        reading = STATES.read(state)
        if reading is TaskState.FAILED:
            meaning = STATES.meaning(state) or "unknown failure state"
            message = "; ".join(part for part in (meaning, detail, err_info) if part)
            return TaskStatus(state=TaskState.FAILED, error_code=state, error_message=message, **common)
        if reading is TaskState.PENDING:
            return TaskStatus(state=TaskState.PENDING, **common)
        results = _results(data, operation)
        if not results:
            raise ResultUnavailableError(
                f"task {task_id} is complete but names no result", provider=PROVIDER, code="NoResult"
            )
        return TaskStatus(state=TaskState.DONE, results=results, **common)


def _results(data: Mapping[str, Any], operation: str | None) -> tuple[ResultRef, ...]:
    """``image`` (the documented result field) and ``mask`` as result refs.

    A background task answers with one ``image`` like the others (document 000's example):
    it is named ``IMAGES`` index 0, the batch the operation promises.
    """
    refs: list[ResultRef] = []
    image = _str(data.get("image"))
    if image:
        kind = ResultKind.IMAGES if operation == "background" else ResultKind.IMAGE
        refs.append(ResultRef(kind, url=image))
    # guess: output_type 1 and 3 promise a mask the example answer has no field for.
    mask = _str(data.get("mask"))
    if mask:
        refs.append(ResultRef(ResultKind.MASK, url=mask))
    return tuple(refs)


def _envelope(
    payload: Any,
    *,
    http_status: int | None,
    paid: bool,
    task_lookup: bool,
    malformed: type[PicflowError],
    request_id: str | None = None,
    retry_after: float | None = None,
    token: Secret | None,
) -> Mapping[str, Any]:
    """``{"status": 200, "data": {...}}`` -> data; ``{"status": <other>, "message"}`` -> error."""
    if not isinstance(payload, Mapping):
        raise malformed(
            "answer is not a JSON object",
            provider=PROVIDER,
            code="MalformedResponse",
            http_status=http_status,
            request_id=request_id,
        )
    code = _provider_error_code(payload)
    if code is not None:
        raise _error_for(
            code,
            str(payload.get("message") or "no message"),
            paid=paid,
            task_lookup=task_lookup,
            from_provider=True,
            http_status=http_status,
            request_id=request_id,
            retry_after=retry_after,
            token=token,
        )
    data = payload.get("data")
    if payload.get("status") != 200 or not isinstance(data, Mapping):
        raise malformed(
            "answer has no status 200 with data",
            provider=PROVIDER,
            code="MalformedResponse",
            http_status=http_status,
            request_id=request_id,
        )
    return data


def _provider_error_code(payload: Any) -> int | None:
    """The code of the documented error envelope: an integer ``status`` other than 200."""
    code = payload.get("status") if isinstance(payload, Mapping) else None
    if isinstance(code, int) and not isinstance(code, bool) and code != 200:
        return code
    return None


# guess: the documents list no error codes; these follow the HTTP meaning of the code.
_BY_CODE: Final[Mapping[int, type[PicflowError]]] = {
    400: InvalidRequestError,
    401: AuthError,
    402: QuotaExhaustedError,
    403: AuthError,
    413: InvalidRequestError,
    429: RateLimitedError,
}


def _error_for(
    code: int,
    message: str,
    *,
    paid: bool,
    task_lookup: bool,
    from_provider: bool,
    http_status: int | None,
    request_id: str | None,
    retry_after: float | None,
    token: Secret | None,
) -> PicflowError:
    """Map a provider (or gateway) error code to the hierarchy."""
    cls: type[PicflowError]
    if code in _BY_CODE:
        cls = _BY_CODE[code]
    elif code == 404:
        # A task id the provider itself issued is unknown: expired or lost, it will never
        # finish, so polling on is pointless; on a submit a 404 is a wrong endpoint.
        cls = UpstreamTaskFailedError if task_lookup else InvalidRequestError
    elif code >= 500:
        # A gateway's 502/504 means the provider may have taken (and billed) the task but
        # its answer was lost; the provider's own 5xx answer says it did not.
        cls = OutcomeUnknownError if paid and not from_provider and code in (502, 504) else TransientError
    elif 400 <= code < 500:
        cls = InvalidRequestError
    else:
        cls = OutcomeUnknownError if paid else TransientError
    # The provider may echo what it was sent; never let the token into an error.
    safe = message.replace(token.reveal(), "***") if token is not None else message
    return cls(
        f"task/pic error {code}: {safe}",
        provider=PROVIDER,
        code=code,
        http_status=http_status,
        request_id=request_id,
        retry_after=retry_after if cls is RateLimitedError else None,
    )


def _checked_url(url: str, field: str, operation: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise ParamValidationError(
            f"{field} must be an http(s) URL",
            field=field,
            rule="http:// or https:// URL",
            operation=operation,
        )
    return url


def _check_size(image: ImageInput, op: Operation) -> None:
    """Refuse an empty file or one over the provider's limit before paying (state -7 or -5)."""
    size = image.known_size()
    if size is not None:
        op.input.check_size(size, what=op.name, field="image_file")


def _request_id(response: httpx.Response) -> str | None:
    for header in _REQUEST_ID_HEADERS:
        if value := response.headers.get(header):
            return str(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _progress(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
