"""Tencent Cloud AI Art ``ReplaceBackground`` (document 003): a TC3-signed JSON POST.

The call is synchronous: the answer carries the finished image, as a URL valid for one
hour (``RspImgType=url``) or as base64 (the default). A base64 image can be tens of MB,
so the answer is read as a stream (:mod:`picflow.providers.jsonstream`): the values of
``ResultImage``/``MaskImage`` go straight to files in ``workdir``, never whole into memory.

Errors come back in an HTTP 200 body as ``Response.Error.Code``/``Message`` with
``RequestId``; :func:`error_class` is the one table from those codes to picflow's errors.
A failed call is not billed (Tencent bills successful calls only), which is why its
internal errors map to :class:`TransientError`; an answer that cannot be read after the
request was sent is :class:`OutcomeUnknownError`, because the image may have been made
and paid for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import urlsplit

import httpx

from picflow.core.catalogue import (
    OPERATIONS,
    CheckedParams,
    Provider,
    ResultKind,
    TaskState,
    choose_style,
    validate_params,
)
from picflow.core.errors import (
    AuthError,
    ConcurrencyLimitedError,
    InvalidRequestError,
    OutcomeUnknownError,
    ParamValidationError,
    PicflowError,
    QuotaExhaustedError,
    RateLimitedError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import ResultRef, Submission, TaskStatus
from picflow.net.http import RetryPolicy, parse_retry_after, send
from picflow.providers import tc3
from picflow.providers.base import ImageInput, Secret
from picflow.providers.jsonstream import MalformedError, StreamedJson, Value

if TYPE_CHECKING:
    from picflow.core.params import Params, ReplaceBackgroundParams

__all__ = ["DEFAULT_HOST", "TencentClient", "error_class"]

PROVIDER: Final = Provider.TENCENT
DEFAULT_HOST: Final = "aiart.tencentcloudapi.com"
SERVICE: Final = "aiart"
ACTION: Final = "ReplaceBackground"
VERSION: Final = "2022-12-29"
CONTENT_TYPE: Final = "application/json; charset=utf-8"
OPERATION: Final = "replace_background"

_READ_CHUNK = 64 * 1024
_STREAMED_KEYS: Final = {"ResultImage": ResultKind.IMAGE, "MaskImage": ResultKind.MASK}


# --- error mapping --------------------------------------------------------------------------

# Exact codes first (document 003 and the common codes that matter), then prefixes.
_EXACT: Final[Mapping[str, type[PicflowError]]] = {
    "FailedOperation.ImageDecodeFailed": InvalidRequestError,
    "FailedOperation.ImageResolutionExceed": InvalidRequestError,
    "FailedOperation.ImageSizeExceed": InvalidRequestError,
    "FailedOperation.RequestEntityTooLarge": InvalidRequestError,
    "InvalidAction": InvalidRequestError,
    "NoSuchVersion": InvalidRequestError,
    "MissingParameter": InvalidRequestError,
    "UnknownParameter": InvalidRequestError,
    "UnsupportedRegion": InvalidRequestError,
    "UnsupportedProtocol": InvalidRequestError,
    "RequestSizeLimitExceeded": InvalidRequestError,
    # guess: the base64 answer was too big; the same request fails again (use RspImgType=url).
    "ResponseSizeLimitExceeded": InvalidRequestError,
    "FailedOperation.InnerError": TransientError,
    "FailedOperation.RequestTimeout": TransientError,
    "FailedOperation.RpcFail": TransientError,
    "FailedOperation.ServerError": TransientError,
    "FailedOperation.Unknown": TransientError,
    "InternalError": TransientError,
    "ServiceUnavailable": TransientError,
    # "生成图片审核不通过": moderation of the generated image; the provider ran the task.
    "FailedOperation.GenerateImageFailed": UpstreamTaskFailedError,
    "FailedOperation.ImageDownloadError": UpstreamTaskFailedError,
    "RequestLimitExceeded": RateLimitedError,
    "RequestLimitExceeded.JobNumExceed": ConcurrencyLimitedError,
    "UnauthorizedOperation": AuthError,
    "IpInBlacklist": AuthError,
    "IpNotInWhitelist": AuthError,
}
_PREFIXES: Final[tuple[tuple[str, type[PicflowError]], ...]] = (
    ("AuthFailure", AuthError),
    ("InvalidParameter", InvalidRequestError),
    ("InvalidParameterValue", InvalidRequestError),
    ("OperationDenied", UpstreamTaskFailedError),
    ("RequestLimitExceeded", RateLimitedError),
    ("ResourceUnavailable", QuotaExhaustedError),
    ("ResourcesSoldOut", QuotaExhaustedError),
    ("InternalError", TransientError),
    ("FailedOperation", UpstreamTaskFailedError),
)


def error_class(code: str) -> type[PicflowError]:
    """The picflow error for a Tencent ``Error.Code``; unknown codes fail the task."""
    if code in _EXACT:
        return _EXACT[code]
    for prefix, cls in _PREFIXES:
        if code == prefix or code.startswith(prefix + "."):
            return cls
    return UpstreamTaskFailedError


def _status_error(status: int, headers: httpx.Headers, problem: str) -> PicflowError:
    """An answer without a usable Tencent body: judge by the HTTP status alone.

    A 2xx (or 3xx) that cannot be read means the paid call may have run: outcome unknown.
    """
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RateLimitedError(
            problem, provider=PROVIDER, code=429, http_status=429, retry_after=retry_after
        )
    if status >= 500:
        return TransientError(problem, provider=PROVIDER, code=status, http_status=status)
    if status in (401, 403):
        return AuthError(problem, provider=PROVIDER, code=status, http_status=status)
    if 400 <= status < 500:
        # guess: a gateway refused the request before it ran, so nothing was made or billed.
        return InvalidRequestError(problem, provider=PROVIDER, code=status, http_status=status)
    return OutcomeUnknownError(problem, provider=PROVIDER, code="MalformedAnswer", http_status=status)


# --- the client -----------------------------------------------------------------------------


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _require_http_url(value: str | None, field: str) -> None:
    """Refuse a non-http(s) URL before paying for a call Tencent would reject."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. a malformed IPv6 host
        ok = False
    if not ok or any(c.isspace() for c in value):
        # The URL itself stays out of the message: it may carry a signed query string.
        raise ParamValidationError(
            f"{field} must be an absolute http(s) URL", field=field, rule="http(s) URL", operation=OPERATION
        )


def _pascal(value: Any) -> Any:
    """snake_case keys to Tencent's PascalCase, recursively (logo_rect.x -> LogoRect.X)."""
    if isinstance(value, dict):
        return {"".join(p.capitalize() for p in k.split("_")): _pascal(v) for k, v in value.items()}
    return value


class TencentClient:
    """Tencent Cloud AI Art on an injected ``httpx.Client`` (built by ``build_client``).

    ``host`` is the ``Host`` header sent and signed; pass ``None`` to send (and sign) the
    host of the client's base URL instead.
    """

    def __init__(
        self,
        http: httpx.Client,
        secret_id: Secret,
        secret_key: Secret,
        *,
        region: str = "ap-guangzhou",
        host: str | None = DEFAULT_HOST,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._region = region
        self._host = host
        self._clock = clock
        self._retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"TencentClient(region={self._region!r}, host={self._host!r})"

    @classmethod
    def from_config(cls, http: httpx.Client, secrets: Mapping[str, Secret]) -> Self:
        # host=None: sign the host of the configured endpoint (the real one, or the local mock).
        return cls(http, secrets["tencent_secret_id"], secrets["tencent_secret_key"], host=None)

    def submit(
        self,
        operation: str,
        params: Params | CheckedParams | Mapping[str, Any],
        image: ImageInput,
        *,
        sync: bool = True,
        callback_url: str | None = None,
    ) -> Submission:
        """:meth:`replace_background` as every client submits (ProviderClient): a URL image, sync."""
        if operation != OPERATION:
            raise ParamValidationError(
                f"{operation} is not a Tencent AI Art operation",
                field="operation",
                rule=OPERATION,
                operation=operation,
            )
        if not sync or callback_url is not None:
            choose_style(OPERATIONS[OPERATION], "callback" if callback_url else "poll", callbacks=True)
        if image.url is None:
            raise ParamValidationError(
                f"{OPERATION}: Tencent fetches the product image from a URL, not an upload",
                field="ProductUrl",
                rule="a URL, not a file",
                operation=OPERATION,
            )
        return self.replace_background(params, image.url)

    def status(self, task_id: str, *, operation: str | None = None) -> TaskStatus:
        """ReplaceBackground answers at once: there is never a task to read."""
        raise InvalidRequestError(
            "ReplaceBackground is synchronous: there is no task to read", provider=PROVIDER, code="NoTask"
        )

    def replace_background(
        self,
        params: Params | CheckedParams | Mapping[str, Any],
        product_url: str,
        *,
        workdir: str | None = None,
    ) -> Submission:
        """Replace the background of the product at ``product_url``; one paid, synchronous call.

        Returns a DONE :class:`Submission` whose results are the image (``path`` to a file
        in ``workdir`` for base64, ``url`` valid for one hour for url) and, when Tencent
        returns one, the mask. Raises :class:`ParamValidationError` before any network call,
        else the error :func:`error_class` names for Tencent's code.
        """
        values = self._param_values(params)
        logo = values.get("logo_param") or {}
        _require_http_url(product_url, "product_url")
        _require_http_url(values.get("mask_url"), "mask_url")
        _require_http_url(logo.get("logo_url"), "logo_param.logo_url")
        body = {"ProductUrl": product_url, **_pascal(dict(values))}
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request = self._signed_request(payload)
        response = send(
            self._http, request, provider=PROVIDER, idempotent=False, retry=self._retry, stream=True
        )
        try:
            return self._answer(response, workdir)
        finally:
            response.close()

    @staticmethod
    def _param_values(params: Params | CheckedParams | Mapping[str, Any]) -> Mapping[str, Any]:
        """The params to send, None left out: Validate's checked values as they are, else validated."""
        if isinstance(params, CheckedParams):
            return params.for_operation(OPERATION)
        return TencentClient._validate(params).model_dump(exclude_none=True)

    @staticmethod
    def _validate(params: Params | Mapping[str, Any]) -> ReplaceBackgroundParams:
        from picflow.core.params import Params, ReplaceBackgroundParams

        if isinstance(params, Params):
            if not isinstance(params, ReplaceBackgroundParams):
                raise ParamValidationError(
                    f"{type(params).__name__} is not the params of {OPERATION}",
                    field="params",
                    rule="ReplaceBackgroundParams",
                    operation=OPERATION,
                )
            return params
        checked = validate_params(OPERATIONS[OPERATION], params)
        assert isinstance(checked, ReplaceBackgroundParams)
        return checked

    def _signed_request(self, payload: bytes) -> httpx.Request:
        headers = {
            "Content-Type": CONTENT_TYPE,
            "X-TC-Action": ACTION,
            "X-TC-Version": VERSION,
            "X-TC-Region": self._region,
            "X-TC-Timestamp": str(int(self._clock())),
        }
        if self._host is not None:
            headers["Host"] = self._host
        request = self._http.build_request("POST", "/", content=payload, headers=headers)
        # Sign what is actually sent: the Host header httpx settled on, the path (a base URL
        # may carry a prefix) and the exact body.
        request.headers["Authorization"] = tc3.authorization(
            self._secret_id,
            self._secret_key,
            service=SERVICE,
            host=request.headers["Host"],
            uri=request.url.path,
            query=request.url.query.decode("ascii"),
            content_type=request.headers["Content-Type"],
            payload=payload,
            timestamp=int(request.headers["X-TC-Timestamp"]),
        )
        return request

    def _answer(self, response: httpx.Response, workdir: str | None) -> Submission:
        status = response.status_code
        content_type = response.headers.get("Content-Type")
        if not _is_json(content_type):
            raise _status_error(status, response.headers, f"answer is {content_type or 'untyped'}, not JSON")
        scanner = StreamedJson(_STREAMED_KEYS, workdir)
        try:
            try:
                for chunk in response.iter_bytes(_READ_CHUNK):
                    scanner.feed(chunk)
                document = scanner.finish()
            except httpx.HTTPError as exc:
                raise OutcomeUnknownError(
                    f"answer lost while reading: {type(exc).__name__}",
                    provider=PROVIDER,
                    code="NoAnswer",
                    http_status=status,
                ) from exc
            except MalformedError as exc:
                raise _status_error(status, response.headers, str(exc)) from None
            except OSError as exc:
                raise OutcomeUnknownError(
                    f"could not store the result: {type(exc).__name__}", provider=PROVIDER, code="NoAnswer"
                ) from exc
            return self._submission(response, document, scanner.values)
        except BaseException:
            scanner.discard()
            raise

    def _submission(self, response: httpx.Response, document: Any, values: Mapping[str, Value]) -> Submission:
        body = document.get("Response") if isinstance(document, dict) else None
        if not isinstance(body, dict):
            raise _status_error(response.status_code, response.headers, "answer has no Response object")
        request_id = body.get("RequestId") if isinstance(body.get("RequestId"), str) else None
        error = body.get("Error")
        if isinstance(error, dict):
            raise self._provider_error(error, response, request_id)
        if response.status_code != 200:
            raise _status_error(
                response.status_code, response.headers, f"HTTP {response.status_code} without an Error"
            )
        results = tuple(
            ResultRef(kind=kind, url=value.url, path=value.path)
            for key, kind in _STREAMED_KEYS.items()
            if (value := values.get(key)) is not None and (value.url or value.path)
        )
        if not any(r.kind is ResultKind.IMAGE for r in results):
            raise OutcomeUnknownError(
                "answer has neither ResultImage nor Error",
                provider=PROVIDER,
                code="MalformedAnswer",
                http_status=response.status_code,
                request_id=request_id,
            )
        status = TaskStatus(
            provider=PROVIDER, task_id=request_id or "", state=TaskState.DONE, raw_state=None, results=results
        )
        return Submission(provider=PROVIDER, task_id=None, status=status, request_id=request_id)

    def _provider_error(
        self, error: Mapping[str, Any], response: httpx.Response, request_id: str | None
    ) -> PicflowError:
        http_status = response.status_code
        code = str(error.get("Code") or "")
        message = self._scrub(str(error.get("Message") or code or "error without a message"))
        if not code:
            return OutcomeUnknownError(
                f"Error without a Code: {message}",
                provider=PROVIDER,
                code="MalformedAnswer",
                http_status=http_status,
                request_id=request_id,
            )
        cls = error_class(code)
        # A throttled answer (e.g. HTTP 429 with a Tencent body) may say when to come back.
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After"))
            if issubclass(cls, RateLimitedError)
            else None
        )
        return cls(
            message,
            provider=PROVIDER,
            code=code,
            http_status=http_status,
            request_id=request_id,
            retry_after=retry_after,
        )

    def _scrub(self, text: str) -> str:
        # Defensive: a provider message must never echo our credentials into logs.
        for secret in (self._secret_id, self._secret_key):
            text = text.replace(secret.reveal(), "***")
        return text
