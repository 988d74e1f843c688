"""Tencent Cloud AI Art ``ReplaceBackground`` (document 003): a TC3-signed JSON POST.

The call is synchronous: the answer carries the finished image, as a URL valid for one
hour (``RspImgType=url``) or as base64 (the default). A base64 image can be tens of MB,
so the answer is read as a stream: :class:`_StreamedJson` passes the JSON through in
chunks, sends the value of ``ResultImage``/``MaskImage`` straight to a sink, and keeps
only the rest (a few hundred bytes) to parse normally. The sink looks at the value's first
bytes: ``http:``/``https:`` means a URL (kept as text), anything else is base64 and is
decoded 4 characters at a time into a file in ``workdir``. The base64 text and the decoded
bytes are never both in memory; at most one chunk of each is.

Errors come back in an HTTP 200 body as ``Response.Error.Code``/``Message`` with
``RequestId``; :func:`error_class` is the one table from those codes to picflow's errors.
A failed call is not billed (Tencent bills successful calls only), which is why its
internal errors map to :class:`TransientError`; an answer that cannot be read after the
request was sent is :class:`OutcomeUnknownError`, because the image may have been made
and paid for.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import httpx

from picflow.core.catalogue import OPERATIONS, Provider, ResultKind, validate_params
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
from picflow.net.http import RetryPolicy, parse_retry_after, send
from picflow.providers import tc3
from picflow.providers.base import ResultRef, Secret, Submission, TaskState, TaskStatus

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
# Everything but the streamed values: an answer is a few hundred bytes, so 1 MiB is plenty.
_MAX_SKELETON = 1024 * 1024
_MAX_URL = 64 * 1024
# guess: a 4000x4000 PNG stays well below this; the cap protects Lambda's /tmp.
_MAX_RESULT_BYTES = 256 * 1024 * 1024
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


# --- streamed answer ------------------------------------------------------------------------


class _MalformedError(ValueError):
    """The answer is not the JSON it claims to be (our message, never the provider's bytes)."""


@dataclass(frozen=True)
class _Value:
    url: str | None = None
    path: str | None = None


_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
)


def _suffix(head: bytes) -> str:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), ".bin")


class _Base64File:
    """Decodes base64 fed in arbitrary pieces into a file, 4 characters at a time."""

    _WHITESPACE = b" \t\r\n"

    def __init__(self, directory: str | None) -> None:
        fd, self._part = tempfile.mkstemp(prefix="picflow-tencent-", suffix=".part", dir=directory)
        self._file = os.fdopen(fd, "wb")
        self._carry = b""
        self._padded = False
        self._head = b""
        self.size = 0

    def feed(self, data: bytes) -> None:
        data = self._carry + data.translate(None, self._WHITESPACE)
        whole = len(data) - len(data) % 4
        if whole:
            if self._padded:
                raise _MalformedError("base64 data after padding")
            block = data[:whole]
            try:
                decoded = binascii.a2b_base64(block, strict_mode=True)
            except binascii.Error as exc:
                raise _MalformedError(f"invalid base64: {exc}") from None
            self._padded = block.endswith(b"=")
            self.size += len(decoded)
            if self.size > _MAX_RESULT_BYTES:
                raise _MalformedError(f"result larger than {_MAX_RESULT_BYTES} bytes")
            if len(self._head) < 12:
                self._head = (self._head + decoded)[:12]
            self._file.write(decoded)
        self._carry = data[whole:]

    def finish(self) -> str:
        if self._carry:
            raise _MalformedError("base64 length is not a multiple of 4")
        if self.size == 0:
            raise _MalformedError("empty base64 result")
        self._file.close()
        path = self._part.removesuffix(".part") + _suffix(self._head)
        os.replace(self._part, path)
        self._part = path
        return path

    def discard(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._part)


class _ValueSink:
    """One streamed string value: a URL kept as text, or base64 decoded into a file."""

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._head = b""
        self._text: bytearray | None = None
        self._decoder: _Base64File | None = None

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            self._decoder.feed(data)
        elif self._text is not None:
            self._text += data
            if len(self._text) > _MAX_URL:
                raise _MalformedError(f"result URL longer than {_MAX_URL} bytes")
        else:
            self._head += data
            if len(self._head) >= 8:
                self._decide()

    def _decide(self) -> None:
        head, self._head = self._head, b""
        # ':' is not a base64 character, so this cannot mistake base64 for a URL.
        if head.startswith((b"http:", b"https:")):
            self._text = bytearray()
        else:
            self._decoder = _Base64File(self._directory)
        self.feed(head)

    def finish(self) -> _Value:
        if self._decoder is None and self._text is None:
            if not self._head:
                return _Value()  # "" means no result; the caller decides what that costs
            self._decide()
        if self._text is not None:
            try:
                return _Value(url=self._text.decode("utf-8"))
            except UnicodeDecodeError:
                raise _MalformedError("result URL is not UTF-8") from None
        assert self._decoder is not None
        return _Value(path=self._decoder.finish())

    def discard(self) -> None:
        if self._decoder is not None:
            self._decoder.discard()


_SPECIAL = re.compile(rb'["\\]')
_SIMPLE_ESCAPES: Final = {
    ord('"'): b'"',
    ord("\\"): b"\\",
    ord("/"): b"/",
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
}


def _unescape(escape: bytes) -> bytes:
    """One JSON escape (``\\/`` or ``\\uXXXX``) as UTF-8 bytes."""
    if escape[1] == ord("u"):
        try:
            return chr(int(escape[2:6], 16)).encode("utf-8", "surrogatepass")
        except ValueError:
            raise _MalformedError("invalid \\u escape") from None
    try:
        return _SIMPLE_ESCAPES[escape[1]]
    except KeyError:
        raise _MalformedError("invalid escape") from None


class _StreamedJson:
    """A JSON document read in chunks; the string values of ``keys`` go to value sinks.

    The rest (the "skeleton", with ``""`` in place of each streamed value) is kept and
    parsed with :func:`json.loads` at the end, so JSON syntax is still checked by the
    standard parser. The scanner only tracks strings, which is all it takes to find a
    ``"Key": "value"`` pair: a string that follows a ``:`` whose preceding token was a
    string is a value, and that string was its key. Keys are matched at any depth; the
    Tencent answer has no other object using these names.
    """

    _OUT, _STRING, _VALUE = range(3)

    def __init__(self, keys: Mapping[str, Any], directory: str | None) -> None:
        self._keys = keys
        self._directory = directory
        self._skeleton = bytearray()
        self._pending = b""  # an escape split across chunks
        self._state = self._OUT
        self._string_start = 0
        self._last_string = b""  # raw bytes of the last string in the skeleton
        self._after_string = -1  # skeleton length just after that string's closing quote
        self._sink: _ValueSink | None = None
        self._sink_key = ""
        self._sinks: list[_ValueSink] = []
        self.values: dict[str, _Value] = {}

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._state == self._OUT:
                pos = self._outside(data, pos)
                continue
            match = _SPECIAL.search(data, pos)
            stop = end if match is None else match.start()
            self._string_part(data[pos:stop])
            if match is None:
                break
            if data[stop] == ord('"'):
                self._close_string()
                pos = stop + 1
                continue
            size = 6 if stop + 1 < end and data[stop + 1] == ord("u") else 2
            if stop + size > end:
                self._pending = data[stop:]
                break
            escape = data[stop : stop + size]
            if self._sink is None:
                self._skeleton += escape
            else:
                self._sink.feed(_unescape(escape))
            pos = stop + size
        if len(self._skeleton) > _MAX_SKELETON:
            raise _MalformedError(f"answer (without the image) larger than {_MAX_SKELETON} bytes")

    def _outside(self, data: bytes, pos: int) -> int:
        quote = data.find(b'"', pos)
        if quote < 0:
            self._skeleton += data[pos:]
            return len(data)
        self._skeleton += data[pos:quote]
        key = self._value_key()
        self._skeleton += b'"'
        if key is None:
            self._state = self._STRING
            self._string_start = len(self._skeleton)
        else:
            self._state = self._VALUE
            self._sink = _ValueSink(self._directory)
            self._sinks.append(self._sink)
            self._sink_key = key
        return quote + 1

    def _value_key(self) -> str | None:
        """The key if the string about to open is the value of one of ``keys``."""
        if self._after_string < 0 or self._skeleton[self._after_string :].strip() != b":":
            return None
        try:
            key = json.loads(b'"' + self._last_string + b'"')
        except ValueError:
            return None
        return key if isinstance(key, str) and key in self._keys else None

    def _string_part(self, part: bytes) -> None:
        if self._sink is None:
            self._skeleton += part
        elif part:
            self._sink.feed(part)

    def _close_string(self) -> None:
        if self._sink is None:
            self._last_string = bytes(self._skeleton[self._string_start :])
        else:
            self.values[self._sink_key] = self._sink.finish()
            self._sink = None
        self._skeleton += b'"'
        self._after_string = len(self._skeleton)
        self._state = self._OUT

    def finish(self) -> Any:
        if self._state != self._OUT or self._pending:
            raise _MalformedError("answer ends inside a string")
        try:
            return json.loads(self._skeleton)
        except ValueError as exc:
            raise _MalformedError(f"malformed JSON: {exc}") from None

    def discard(self) -> None:
        for sink in self._sinks:
            sink.discard()


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

    def replace_background(
        self, params: Params | Mapping[str, Any], product_url: str, *, workdir: str | None = None
    ) -> Submission:
        """Replace the background of the product at ``product_url``; one paid, synchronous call.

        Returns a DONE :class:`Submission` whose results are the image (``path`` to a file
        in ``workdir`` for base64, ``url`` valid for one hour for url) and, when Tencent
        returns one, the mask. Raises :class:`ParamValidationError` before any network call,
        else the error :func:`error_class` names for Tencent's code.
        """
        checked = self._validate(params)
        _require_http_url(product_url, "product_url")
        _require_http_url(checked.mask_url, "mask_url")
        _require_http_url(checked.logo_param.logo_url if checked.logo_param else None, "logo_param.logo_url")
        body = {"ProductUrl": product_url, **_pascal(checked.model_dump(exclude_none=True))}
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
        scanner = _StreamedJson(_STREAMED_KEYS, workdir)
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
            except _MalformedError as exc:
                raise _status_error(status, response.headers, str(exc)) from None
            except OSError as exc:
                raise OutcomeUnknownError(
                    f"could not store the result: {type(exc).__name__}", provider=PROVIDER, code="NoAnswer"
                ) from exc
            return self._submission(response, document, scanner.values)
        except BaseException:
            scanner.discard()
            raise

    def _submission(
        self, response: httpx.Response, document: Any, values: Mapping[str, _Value]
    ) -> Submission:
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
