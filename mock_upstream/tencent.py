"""Tencent Cloud AI Art `ReplaceBackground` (document 003), TC3-HMAC-SHA256 signed JSON at `POST /`.

Only POST with a JSON body is emulated (the SDK default; GET answers 405). Checked like the real
service, in this order: Authorization shape
(AuthFailure.InvalidAuthorization), X-TC-Action (InvalidAction), X-TC-Version (NoSuchVersion),
X-TC-Region, X-TC-Timestamp, SecretId (AuthFailure.SecretIdNotFound), clock skew over 5 minutes
against the mock clock (AuthFailure.SignatureExpire), then the signature itself over the
canonical request (AuthFailure.SignatureFailure). Then the body: unknown parameters, Prompt
(required: empty is refused; at most 256 characters), Resolution, RspImgType, the balance, the
per-account job limit (1 by default: RequestLimitExceeded.JobNumExceed while one runs), then
the images: downloaded on the event loop, decoded, checked (size, ratio) and rendered in a
worker process, at most `sync_wait_seconds` (then FailedOperation.RequestTimeout).
Every error is HTTP 200 `{"Response": {"Error": {...}, "RequestId": ...}}`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import re
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mock_upstream import errors, images, jobs, sources
from mock_upstream.core import Mock, base_url, new_entry, request_scenario
from mock_upstream.errors import TencentError
from mock_upstream.faults import Context
from mock_upstream.render import RenderError
from mock_upstream.state import TENCENT_PRICE, Account

SERVICE: Final = "aiart"
ACTION: Final = "ReplaceBackground"
VERSION: Final = "2022-12-29"
REGIONS: Final = frozenset({"ap-guangzhou", "ap-shanghai", "ap-beijing"})
PARAMS: Final = frozenset(
    {
        "ProductUrl",
        "Prompt",
        "NegativePrompt",
        "Product",
        "BackgroundTemplate",
        "MaskUrl",
        "Resolution",
        "LogoAdd",
        "LogoParam",
        "RspImgType",
    }
)
AUTH_RE: Final = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/\s]+)"
    r"/tc3_request,"
    r"\s*SignedHeaders=(?P<headers>[a-z0-9;-]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
RESOLUTION_RE: Final = re.compile(r"^(\d{1,5}):(\d{1,5})$")
MAX_BASE64_BYTES: Final = 6 * 1024 * 1024
DEFAULT_RESOLUTION: Final = (1280, 1280)
MAX_STORED_STRING: Final = 512


def tc3_signature(secret_key: str, date: str, string_to_sign: str) -> str:
    def _hmac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


def string_to_sign(
    request: Request, body: bytes, signed_headers: list[str], timestamp: str, date: str
) -> str:
    canonical_headers = "".join(f"{h}:{request.headers.get(h, '').strip().lower()}\n" for h in signed_headers)
    payload = "UNSIGNED-PAYLOAD" if request.headers.get("x-tc-content-sha256") == "UNSIGNED-PAYLOAD" else body
    payload_hash = hashlib.sha256(payload.encode() if isinstance(payload, str) else payload).hexdigest()
    canonical = "\n".join(
        [
            request.method,
            request.url.path,
            request.url.query,
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{SERVICE}/tc3_request\n{digest}"


def authenticate(mock: Mock, request: Request, body: bytes) -> Account:
    """Verify the headers and the TC3 signature; raise TencentError like the real gateway."""
    match = AUTH_RE.match(request.headers.get("authorization", "").strip())
    if match is None:
        raise TencentError("AuthFailure.InvalidAuthorization")
    signed = match["headers"].split(";")
    if "content-type" not in signed or "host" not in signed or match["service"] != SERVICE:
        raise TencentError("AuthFailure.InvalidAuthorization")
    action = request.headers.get("x-tc-action")
    if not action:
        raise TencentError("MissingParameter", "The request is missing a required parameter `Action`.")
    if action != ACTION:
        raise TencentError("InvalidAction", f"The action `{action}` is not supported by this mock.")
    version = request.headers.get("x-tc-version")
    if not version:
        raise TencentError("MissingParameter", "The request is missing a required parameter `Version`.")
    if version != VERSION:
        raise TencentError("NoSuchVersion", f"The version `{version}` of action `{action}` does not exist.")
    region = request.headers.get("x-tc-region")
    if not region:
        raise TencentError("MissingParameter", "The request is missing a required parameter `Region`.")
    if region not in REGIONS:
        raise TencentError("UnsupportedRegion")
    timestamp = request.headers.get("x-tc-timestamp", "")
    if not timestamp.isdigit():
        raise TencentError("MissingParameter", "The request is missing a required parameter `Timestamp`.")
    account = mock.state.account_by("secret_id", match["id"])
    if account is None or not account.secret_key:
        raise TencentError("AuthFailure.SecretIdNotFound")
    skew = abs(mock.state.clock.now() - int(timestamp))
    if skew > mock.state.settings.tencent_max_skew_seconds:
        raise TencentError("AuthFailure.SignatureExpire")
    expected_date = datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC).strftime("%Y-%m-%d")
    if match["date"] != expected_date:
        raise TencentError(
            "AuthFailure.SignatureFailure", "The date in Credential does not match X-TC-Timestamp."
        )
    expected = tc3_signature(
        account.secret_key, match["date"], string_to_sign(request, body, signed, timestamp, match["date"])
    )
    if not hmac.compare_digest(expected, match["sig"]):
        raise TencentError("AuthFailure.SignatureFailure")
    return account


def _string(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise TencentError("MissingParameter", f"The request is missing a required parameter `{name}`.")
        return None
    if not isinstance(value, str):
        raise TencentError("InvalidParameter", f"The value type of parameter `{name}` is not valid.")
    return value


def _url(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = _string(params, name, required=required)
    if value is not None and value == "":
        raise TencentError("InvalidParameterValue.ImageEmpty")
    if value is not None and not re.match(r"^https?://[^\s/]+", value):
        raise TencentError("InvalidParameterValue.UrlIllegal")
    return value


def parse_resolution(value: str | None) -> tuple[int, int]:
    if value is None:
        return DEFAULT_RESOLUTION
    match = RESOLUTION_RE.match(value)
    if match:
        w, h = int(match[1]), int(match[2])
        if 500 < w < 4000 and 500 < h < 4000 and 2 / 5 <= w / h <= 5 / 2:
            return (w, h)
    raise TencentError(
        "InvalidParameterValue.ParameterValueError",
        "Resolution 需为 W:H,单边大于500且小于4000,长宽比在2:5 ~ 5:2之间。",
    )


def parse_params(params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise TencentError("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
    prompt = _string(params, "Prompt", required=True) or ""
    if not prompt.strip():
        # Required (必选 是) by document 003: an empty one is no description at all.
        raise TencentError("InvalidParameterValue.ParameterValueError", "Prompt 不能为空。")
    if len(prompt) > 256:
        raise TencentError("InvalidParameterValue.TextLengthExceed")
    for name in ("Product", "NegativePrompt", "BackgroundTemplate"):
        _string(params, name)
    logo_add = params.get("LogoAdd", 1)
    if not isinstance(logo_add, int) or isinstance(logo_add, bool):
        raise TencentError("InvalidParameter", "The value type of parameter `LogoAdd` is not valid.")
    rsp = _string(params, "RspImgType") or "base64"
    if rsp not in ("base64", "url"):
        raise TencentError("InvalidParameterValue.ParameterValueError", "RspImgType 只支持 base64 或 url。")
    logo = params.get("LogoParam")
    if logo is not None and not isinstance(logo, dict):
        raise TencentError("InvalidParameter", "The value type of parameter `LogoParam` is not valid.")
    return {
        "product_url": _url(params, "ProductUrl", required=True),
        "mask_url": _url(params, "MaskUrl"),
        "prompt": prompt,
        "resolution": parse_resolution(_string(params, "Resolution")),
        "logo_add": logo_add != 0,
        "logo": parse_logo(logo) if logo else None,
        "rsp": rsp,
    }


def parse_logo(logo: dict[str, Any]) -> dict[str, Any]:
    rect = logo.get("LogoRect")
    box = None
    if rect is not None:
        if not isinstance(rect, dict) or not all(
            isinstance(rect.get(k), int) for k in ("X", "Y", "Width", "Height")
        ):
            raise TencentError(
                "InvalidParameterValue.ParameterValueError", "LogoRect 需包含整数 X、Y、Width、Height。"
            )
        box = (rect["X"], rect["Y"], rect["Width"], rect["Height"])
        if box[2] <= 0 or box[3] <= 0:
            raise TencentError("InvalidParameterValue.ParameterValueError", "LogoRect 的宽高必须大于0。")
    image = logo.get("LogoImage")
    if image is not None and not isinstance(image, str):
        raise TencentError("InvalidParameter", "The value type of parameter `LogoImage` is not valid.")
    return {"url": _url(logo, "LogoUrl"), "image": image, "rect": box}


async def download(mock: Mock, url: str) -> bytes:
    try:
        fetched = await sources.fetch(
            url, timeout=mock.state.settings.fetch_timeout_seconds, max_bytes=MAX_BASE64_BYTES
        )
    except sources.FetchError as exc:
        raise TencentError("FailedOperation.ImageDownloadError") from exc
    if fetched.too_large or len(base64.b64encode(fetched.data)) > MAX_BASE64_BYTES:
        raise TencentError("FailedOperation.ImageSizeExceed")
    return fetched.data


async def fetch_images(mock: Mock, params: dict[str, Any]) -> tuple[bytes, bytes | None, bytes | None]:
    """Download the product, mask and logo (on the loop: I/O only; decoding is the worker's)."""
    product = await download(mock, params["product_url"])
    mask = await download(mock, params["mask_url"]) if params["mask_url"] else None
    logo = None
    if params["logo"] and params["logo"]["url"]:
        logo = await download(mock, params["logo"]["url"])
    return product, mask, logo


def redact_json(value: Any) -> Any:
    """Long strings (base64 logos) are journalled by size and hash only."""
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, str) and len(value) > MAX_STORED_STRING:
        return f"<{len(value)} chars sha256={hashlib.sha256(value.encode()).hexdigest()}>"
    return value


async def handle(mock: Mock, request: Request) -> Response:
    request_id = mock.state.uuid()
    entry = new_entry(request, "tencent", "/")
    body = await request.body()
    match = AUTH_RE.match(request.headers.get("authorization", "").strip())
    account = mock.state.account_by("secret_id", match["id"]) if match else None
    ctx = Context(
        "tencent",
        request.url.path,
        request.method,
        account=account.name if account else None,
        action=request.headers.get("x-tc-action"),
        request_id=request_id,
    )
    entry["route"] = ctx.action or "/"

    async def work() -> Response:
        try:
            result = await replace_background(mock, request, body, entry, request_id)
        except TencentError as exc:
            entry["error_code"] = exc.code
            return errors.tencent_error(exc.code, exc.message, request_id)
        return JSONResponse({"Response": {**result, "RequestId": request_id}})

    return await mock.exchange(ctx, entry, work)


async def replace_background(
    mock: Mock, request: Request, body: bytes, entry: dict[str, Any], request_id: str
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise TencentError("InvalidParameter", "This mock accepts POST with Content-Type application/json.")
    account = authenticate(mock, request, body)
    try:
        payload = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TencentError("InvalidParameter", "The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise TencentError("InvalidParameter", "The request body must be a JSON object.")
    entry["json"] = redact_json(payload)
    params = parse_params(payload)
    try:
        scenario = request_scenario(request)
    except ValueError as exc:
        raise TencentError("InvalidParameter", str(exc)) from None
    if account.tencent_balance < TENCENT_PRICE:
        raise TencentError("ResourceUnavailable.LowBalance")
    if mock.jobs.active.get(account.name, 0) >= account.tencent_job_limit:
        raise TencentError("RequestLimitExceeded.JobNumExceed")
    await mock.jobs.change(account.name, +1)
    try:
        await mock.jobs.parked()
        if mock.state.settings.tencent_processing_seconds > 0:
            await asyncio.sleep(mock.state.settings.tencent_processing_seconds)
        product, mask, logo = await fetch_images(mock, params)
        outcome = mock.state.scenario_for(account.name, scenario)
        if outcome.outcome != "success":
            raise TencentError(str(outcome.code or "FailedOperation.InnerError"), outcome.message)
        render = asyncio.ensure_future(
            mock.renders.run("tencent/ReplaceBackground", jobs.tencent, params, product, mask, logo)
        )
        render.add_done_callback(_consume)
        try:
            # The job slot stays taken while the worker renders; past the cap the call fails
            # with the document's own timeout code (the render is left to finish, unbilled).
            made = await asyncio.wait_for(asyncio.shield(render), mock.state.settings.sync_wait_seconds)
        except TimeoutError:
            raise TencentError("FailedOperation.RequestTimeout") from None
        except RenderError:  # the render crashed, or its worker was killed (a reset)
            raise TencentError("FailedOperation.InnerError") from None
    finally:
        await mock.jobs.change(account.name, -1)
    if "error" in made:
        raise TencentError(*made["error"])
    result: bytes = made["result"]
    account.tencent_balance -= TENCENT_PRICE
    entry["paid"] = True
    entry["result_sha256"] = hashlib.sha256(result).hexdigest()
    answer: dict[str, Any] = {}
    if params["rsp"] == "url":
        answer["ResultImage"] = signed_url(mock, request, f"{request_id}.jpg", result, images.JPEG)
    else:
        answer["ResultImage"] = base64.b64encode(result).decode()
    if made["mask"] is not None:
        answer["MaskImage"] = signed_url(mock, request, f"{request_id}-mask.png", made["mask"], images.PNG)
    return answer


def _consume(future: asyncio.Future[Any]) -> None:
    """A render abandoned at the cap (or killed by a reset) has no one left to tell."""
    if not future.cancelled():
        future.exception()


def signed_url(mock: Mock, request: Request, name: str, content: bytes, media: str) -> str:
    """A COS-like presigned URL (the query is decoration; expiry is enforced by the file store)."""
    url = mock.publish(base_url(request), name, content, media)
    start = int(mock.state.clock.now())
    end = start + int(mock.state.settings.file_ttl_seconds)
    return f"{url}?q-sign-algorithm=sha1&q-sign-time={start};{end}"
