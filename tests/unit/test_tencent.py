"""Tencent Cloud AI Art ReplaceBackground client: signing, request shape, answers, faults.

The contract is document 003 (shared/seeds) and the official SDK's models; the TC3
signature is cross-checked against ``tencentcloud-sdk-python-common`` itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from picflow.core.catalogue import CheckedParams, Provider, ResultKind, TaskState, validate_params
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
from picflow.net.http import RetryPolicy, build_client
from picflow.providers import tc3
from picflow.providers.base import Secret
from picflow.providers.tencent import TencentClient, error_class
from pytest_socket import disable_socket, enable_socket
from tencentcloud.aiart.v20221229 import models as sdk_models
from tencentcloud.aiart.v20221229.aiart_client import AiartClient
from tencentcloud.common import abstract_client as sdk_abstract_client
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.common.sign import Sign

BASE = "http://mock-upstream.test"
SECRET_ID = "AKIDtestSecretId0123456789abcdef"
SECRET_KEY = "testSecretKey-do-not-leak-9876543210"
TIMESTAMP = 1_700_000_000  # 2023-11-14T22:13:20Z
PRODUCT = "https://example.com/product.jpg"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JSON = {"Content-Type": "application/json"}
REQUEST_ID = "0d0728ed-f777-4861-aa4b-5a6167daa0b6"
RESULT_URL = (
    "https://aiart-xxx.cos.ap-guangzhou.myqcloud.com/xxx.jpg?q-sign-algorithm=sha1&q-ak=xxxxx"
    "&q-sign-time=1731574045;1731577645&q-signature=31fe75c1c18c3d91db59508961209dd37aaf41c7"
)


@pytest.fixture(autouse=True)
def _no_sockets() -> Iterator[None]:
    disable_socket()
    yield
    enable_socket()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as r:
        yield r


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(sleeps: list[float] | None = None, **kwargs: Any) -> TencentClient:
    retry = RetryPolicy(sleep=(sleeps if sleeps is not None else []).append)
    return TencentClient(
        build_client(BASE),
        Secret(SECRET_ID),
        Secret(SECRET_KEY),
        clock=lambda: TIMESTAMP + 0.75,
        retry=retry,
        **kwargs,
    )


@pytest.fixture
def client(sleeps: list[float]) -> TencentClient:
    return make_client(sleeps)


def answer(body: dict[str, Any], status: int = 200) -> httpx.Response:
    return httpx.Response(status, headers=JSON, content=json.dumps({"Response": body}).encode())


def success(image: str = RESULT_URL, **extra: Any) -> httpx.Response:
    return answer({"RequestId": REQUEST_ID, "ResultImage": image, **extra})


def tencent_error(code: str, message: str = "something went wrong", status: int = 200) -> httpx.Response:
    return answer({"Error": {"Code": code, "Message": message}, "RequestId": REQUEST_ID}, status)


def streamed(chunks: Iterator[bytes] | list[bytes], content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": content_type}, content=iter(chunks))


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def escaped_b64(raw: bytes) -> str:
    # Many JSON encoders (PHP, some Go/Java setups) escape "/" as "\/".
    return base64.b64encode(raw).decode().replace("/", "\\/")


def sent_json(route: respx.Route) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls.last.request.content)
    return body


# --- TC3 signing -------------------------------------------------------------------------


def sdk_signed_request(
    params: dict[str, Any], timestamp: int, secret_id: str, secret_key: str
) -> RequestInternal:
    """The official SDK builds and signs the same call; its clock is pinned to ``timestamp``."""
    sdk = AiartClient(Credential(secret_id, secret_key), "ap-guangzhou")
    request = RequestInternal(sdk._get_endpoint(), "POST", "/")
    with mock.patch.object(sdk_abstract_client, "time", SimpleNamespace(time=lambda: timestamp)):
        sdk._build_req_with_tc3_signature("ReplaceBackground", params, request)
    return request


# The SDK itself still calls datetime.utcfromtimestamp; that warning is not ours.
sdk_warnings = pytest.mark.filterwarnings("ignore:datetime.datetime.utcfromtimestamp:DeprecationWarning")

_secrets = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=40)


@sdk_warnings
@settings(max_examples=60, deadline=None)
@given(
    prompt=st.text(max_size=300),
    timestamp=st.integers(min_value=0, max_value=4_102_444_800),
    secret_id=_secrets,
    secret_key=_secrets,
)
def test_tc3_authorization_equal_to_official_sdk_for_any_input(
    prompt: str, timestamp: int, secret_id: str, secret_key: str
) -> None:
    # GIVEN the SDK's own signed request for a payload, secret and time
    params = {"ProductUrl": PRODUCT, "Prompt": prompt, "RspImgType": "url"}
    sdk = sdk_signed_request(params, timestamp, secret_id, secret_key)
    # WHEN we sign the same bytes, host, content type and timestamp
    ours = tc3.authorization(
        Secret(secret_id),
        Secret(secret_key),
        service="aiart",
        host=sdk.header["Host"],
        content_type=sdk.header["Content-Type"],
        payload=sdk.data.encode("utf-8"),
        timestamp=int(sdk.header["X-TC-Timestamp"]),
    )
    # THEN the whole Authorization header is identical
    assert ours == sdk.header["Authorization"]


def test_tc3_signature_equal_to_sdk_sign_tc3_helper() -> None:
    to_sign = "TC3-HMAC-SHA256\n1700000000\n2023-11-14/aiart/tc3_request\n" + "ab" * 32
    expected = Sign.sign_tc3(SECRET_KEY, "2023-11-14", "aiart", to_sign)
    assert (
        tc3.signature(Secret(SECRET_KEY), timestamp=TIMESTAMP, service="aiart", to_sign=to_sign) == expected
    )


def test_replace_background_sent_request_signature_verified_by_sdk(router: respx.MockRouter) -> None:
    # GIVEN a request our client actually sent (non-ASCII prompt, charset in the content type)
    route = router.post("/").mock(return_value=success())
    make_client().replace_background({"prompt": "彩色背景,木质桌面", "rsp_img_type": "url"}, PRODUCT)
    sent = route.calls.last.request
    # WHEN the SDK recomputes the signature from the received headers and body
    received = RequestInternal(sent.headers["Host"], "POST", "/")
    received.header = {
        "Content-Type": sent.headers["Content-Type"],
        "Host": sent.headers["Host"],
        "X-TC-Timestamp": sent.headers["X-TC-Timestamp"],
    }
    received.data = sent.content
    date = tc3.utc_date(int(sent.headers["X-TC-Timestamp"]))
    sdk = AiartClient(Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou")
    expected = sdk._get_tc3_signature({}, received, date, "aiart", SECRET_KEY)
    # THEN it matches the Signature we sent
    assert sent.headers["Authorization"].endswith(f"Signature={expected}")


def test_tc3_authorization_same_inputs_reproducible_and_each_input_matters() -> None:
    def sign(**overrides: Any) -> str:
        args: dict[str, Any] = {
            "service": "aiart",
            "host": "aiart.tencentcloudapi.com",
            "content_type": "application/json; charset=utf-8",
            "payload": b'{"Prompt":"x"}',
            "timestamp": TIMESTAMP,
        }
        key = overrides.pop("key", SECRET_KEY)
        return tc3.authorization(Secret(SECRET_ID), Secret(key), **(args | overrides))

    reference = sign()
    assert sign() == reference
    for change in (
        {"payload": b'{"Prompt":"y"}'},
        {"timestamp": TIMESTAMP + 1},
        {"host": "127.0.0.1:8080"},
        {"content_type": "application/json"},
        {"key": SECRET_KEY + "x"},
    ):
        assert sign(**change) != reference, change


def test_tc3_credential_scope_uses_utc_date_of_timestamp() -> None:
    # 1700006399 is 2023-11-14T23:59:59Z; one second later is the 15th in UTC.
    assert tc3.credential_scope(1_700_006_399, "aiart") == "2023-11-14/aiart/tc3_request"
    assert tc3.credential_scope(1_700_006_400, "aiart") == "2023-11-15/aiart/tc3_request"


# --- request shape -----------------------------------------------------------------------


def test_replace_background_all_params_exact_headers_and_pascal_case_body(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    params = {
        "prompt": "BackgroundTemplate",
        "background_template": "christmas",
        "negative_prompt": "blurry",
        "product": "汽车",
        "mask_url": "https://example.com/mask.png",
        "resolution": "1080:1920",
        "logo_add": 0,
        "logo_param": {
            "logo_url": "https://example.com/logo.png",
            "logo_rect": {"x": 10, "y": 12, "width": 20, "height": 22},
        },
        "rsp_img_type": "url",
    }
    make_client(region="ap-shanghai").replace_background(params, PRODUCT)

    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE}/"
    assert request.headers["X-TC-Action"] == "ReplaceBackground"
    assert request.headers["X-TC-Version"] == "2022-12-29"
    assert request.headers["X-TC-Region"] == "ap-shanghai"
    assert request.headers["X-TC-Timestamp"] == str(TIMESTAMP)
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Host"] == "aiart.tencentcloudapi.com"
    assert request.headers["Authorization"] == tc3.authorization(
        Secret(SECRET_ID),
        Secret(SECRET_KEY),
        service="aiart",
        host="aiart.tencentcloudapi.com",
        content_type="application/json; charset=utf-8",
        payload=request.content,
        timestamp=TIMESTAMP,
    )
    assert request.headers["Authorization"].startswith(
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2023-11-14/aiart/tc3_request, "
        "SignedHeaders=content-type;host, Signature="
    )
    assert sent_json(route) == {
        "ProductUrl": PRODUCT,
        "Prompt": "BackgroundTemplate",
        "NegativePrompt": "blurry",
        "Product": "汽车",
        "BackgroundTemplate": "christmas",
        "MaskUrl": "https://example.com/mask.png",
        "Resolution": "1080:1920",
        "LogoAdd": 0,
        "LogoParam": {
            "LogoUrl": "https://example.com/logo.png",
            "LogoRect": {"X": 10, "Y": 12, "Width": 20, "Height": 22},
        },
        "RspImgType": "url",
    }
    assert "汽车".encode() in request.content  # UTF-8, as the content type says, not \u escapes

    # Every field of the official SDK's request model, spelt as it spells them ("_<Name>").
    def names(model: object) -> set[str]:
        return {k.removeprefix("_") for k in vars(model)}

    body = sent_json(route)
    assert set(body) == names(sdk_models.ReplaceBackgroundRequest())
    assert set(body["LogoParam"]) < names(sdk_models.LogoParam())
    assert set(body["LogoParam"]["LogoRect"]) == names(sdk_models.LogoRect())


def test_replace_background_logo_image_sent_as_logo_image(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    make_client().replace_background({"prompt": "x", "logo_param": {"logo_image": "aGk="}}, PRODUCT)
    assert sent_json(route)["LogoParam"] == {"LogoImage": "aGk="}


def test_replace_background_minimal_params_omits_none_and_sends_defaults(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    make_client().replace_background({"prompt": "彩色"}, PRODUCT)
    assert sent_json(route) == {
        "ProductUrl": PRODUCT,
        "Prompt": "彩色",
        "Resolution": "1280:1280",
        "LogoAdd": 1,
        "RspImgType": "base64",
    }


def test_replace_background_host_none_sends_and_signs_base_url_host(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    make_client(host=None).replace_background({"prompt": "x"}, PRODUCT)
    request = route.calls.last.request
    assert request.headers["Host"] == "mock-upstream.test"
    assert request.headers["Authorization"] == tc3.authorization(
        Secret(SECRET_ID),
        Secret(SECRET_KEY),
        service="aiart",
        host="mock-upstream.test",
        content_type=request.headers["Content-Type"],
        payload=request.content,
        timestamp=TIMESTAMP,
    )


def test_replace_background_base_url_with_path_prefix_signs_the_path_sent() -> None:
    with respx.mock(base_url=f"{BASE}/tencent") as router:
        route = router.post("/").mock(return_value=success())
        client = TencentClient(
            build_client(f"{BASE}/tencent"), Secret(SECRET_ID), Secret(SECRET_KEY), clock=lambda: TIMESTAMP
        )
        client.replace_background({"prompt": "x", "rsp_img_type": "url"}, PRODUCT)
        request = route.calls.last.request
    assert request.url.path == "/tencent/"
    assert request.headers["Authorization"] == tc3.authorization(
        Secret(SECRET_ID),
        Secret(SECRET_KEY),
        service="aiart",
        host="aiart.tencentcloudapi.com",
        content_type=request.headers["Content-Type"],
        payload=request.content,
        timestamp=TIMESTAMP,
        uri="/tencent/",
    )


def test_replace_background_params_model_instance_accepted(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    params = validate_params("replace_background", {"prompt": "p", "resolution": "1920:1080"})
    make_client().replace_background(params, PRODUCT)
    assert sent_json(route)["Resolution"] == "1920:1080"


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt": "彩色"},
        {
            "prompt": "BackgroundTemplate",
            "background_template": "t1",
            "negative_prompt": "no",
            "product": "cup",
            "mask_url": "https://example.com/m.png",
            "resolution": "1920:1080",
            "logo_add": "0",
            "logo_param": {
                "logo_url": "https://example.com/l.png",
                "logo_rect": {"x": 1, "y": 2, "width": 3, "height": 4},
            },
            "rsp_img_type": "url",
        },
    ],
)
def test_replace_background_checked_params_sent_as_the_model_they_came_from_would_be(
    router: respx.MockRouter, raw: dict[str, Any]
) -> None:
    # A submit sends Validate's dump (CheckedParams) without building the model again.
    route = router.post("/").mock(return_value=success())
    model = validate_params("replace_background", raw)
    dumped = json.loads(json.dumps(model.model_dump(mode="json", exclude_none=True)))
    make_client().replace_background(model, PRODUCT)
    from_model = sent_json(route)
    make_client().replace_background(CheckedParams("replace_background", dumped), PRODUCT)
    assert sent_json(route) == from_model


def test_replace_background_checked_params_of_another_operation_refused(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    with pytest.raises(ParamValidationError) as caught:
        make_client().replace_background(CheckedParams("background", {"prompt": "p"}), PRODUCT)
    assert caught.value.field == "params"
    assert not route.called


# --- validation before any network call --------------------------------------------------


def test_replace_background_other_operations_params_refused(router: respx.MockRouter) -> None:
    route = router.post("/").mock(return_value=success())
    params = validate_params("background", {"prompt": "p"})
    with pytest.raises(ParamValidationError) as caught:
        make_client().replace_background(params, PRODUCT)
    assert caught.value.field == "params"
    assert not route.called


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/p.jpg", "file:///etc/passwd", "example.com/p.jpg", "https://",
     "http://exa mple.com/p.jpg", "javascript:alert(1)", "", "http://[::1/p.jpg", "s3://bucket/p.jpg"],
)  # fmt: skip
def test_replace_background_non_http_product_url_refused_before_sending(
    router: respx.MockRouter, url: str
) -> None:
    route = router.post("/").mock(return_value=success())
    with pytest.raises(ParamValidationError) as caught:
        make_client().replace_background({"prompt": "x"}, url)
    assert caught.value.field == "product_url"
    assert caught.value.rule == "http(s) URL"
    assert not route.called


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "prompt"),
        ({"prompt": "x" * 257}, "prompt"),
        ({"prompt": "x", "negative_prompt": "n" * 257}, "negative_prompt"),
        ({"prompt": "x", "product": "p" * 51}, "product"),
        ({"prompt": "x", "resolution": "1280x1280"}, "resolution"),
        ({"prompt": "x", "rsp_img_type": "png"}, "rsp_img_type"),
        ({"prompt": "x", "logo_add": 2}, "logo_add"),
        ({"prompt": "x", "Prompt": "y"}, "Prompt"),
        ({"prompt": "BackgroundTemplate"}, "background_template"),
        # our own check: Tencent would refuse these with InvalidParameterValue.UrlIllegal
        ({"prompt": "x", "mask_url": "ftp://example.com/m.png"}, "mask_url"),
        ({"prompt": "x", "logo_param": {"logo_url": "data:image/png;base64,AAAA"}}, "logo_param.logo_url"),
    ],
)
def test_replace_background_invalid_params_refused_before_sending(
    router: respx.MockRouter, params: dict[str, Any], field: str
) -> None:
    route = router.post("/").mock(return_value=success())
    with pytest.raises(ParamValidationError) as caught:
        make_client().replace_background(params, PRODUCT)
    assert caught.value.field == field
    assert not route.called


def _boundary_client() -> tuple[TencentClient, respx.MockRouter, respx.Route]:
    router = respx.mock(base_url=BASE, assert_all_called=False)
    route = router.post("/").mock(return_value=success())
    return make_client(), router, route


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(min_value=1, max_value=300), char=st.sampled_from(["a", "汽", "😀"]))
def test_replace_background_prompt_length_boundary_256_characters(length: int, char: str) -> None:
    # Characters, not bytes: 256 CJK characters or emoji are allowed.
    client, router, route = _boundary_client()
    with router:
        if length <= 256:
            client.replace_background({"prompt": char * length}, PRODUCT)
            assert route.call_count == 1
        else:
            with pytest.raises(ParamValidationError):
                client.replace_background({"prompt": char * length}, PRODUCT)
            assert route.call_count == 0


@settings(max_examples=60, deadline=None)
@given(
    width=st.sampled_from([499, 500, 501, 502, 1280, 3998, 3999, 4000, 4001]),
    height=st.sampled_from([499, 500, 501, 502, 1280, 3998, 3999, 4000, 4001]),
)
def test_replace_background_resolution_sides_boundary_500_4000_exclusive(width: int, height: int) -> None:
    client, router, route = _boundary_client()
    inside = 500 < width < 4000 and 500 < height < 4000 and 2 / 5 <= width / height <= 5 / 2
    with router:
        if inside:
            client.replace_background({"prompt": "x", "resolution": f"{width}:{height}"}, PRODUCT)
        else:
            with pytest.raises(ParamValidationError) as caught:
                client.replace_background({"prompt": "x", "resolution": f"{width}:{height}"}, PRODUCT)
            assert caught.value.field == "resolution"
        assert route.call_count == (1 if inside else 0)


@pytest.mark.parametrize(
    ("resolution", "inside"),
    [("1000:2500", True), ("999:2500", False), ("2500:1000", True), ("2500:999", False), ("1000:2499", True)],
)
def test_replace_background_resolution_ratio_boundary_2_5_to_5_2(resolution: str, inside: bool) -> None:
    client, router, route = _boundary_client()
    with router:
        if inside:
            client.replace_background({"prompt": "x", "resolution": resolution}, PRODUCT)
        else:
            with pytest.raises(ParamValidationError, match="ratio"):
                client.replace_background({"prompt": "x", "resolution": resolution}, PRODUCT)
        assert route.call_count == (1 if inside else 0)


# --- successful answers ------------------------------------------------------------------


def test_replace_background_url_mode_document_example_returns_done_url(router: respx.MockRouter) -> None:
    # The document's own example answer, as Tencent serialises it (escaped slashes, \u0026).
    body = json.dumps({"Response": {"RequestId": REQUEST_ID, "ResultImage": RESULT_URL}}).replace("/", "\\/")
    body = body.replace("&", "\\u0026")
    router.post("/").mock(return_value=httpx.Response(200, headers=JSON, content=body.encode()))
    submission = make_client().replace_background({"prompt": "backpack", "rsp_img_type": "url"}, PRODUCT)
    assert submission.provider is Provider.TENCENT
    assert submission.task_id is None
    assert submission.request_id == REQUEST_ID
    assert submission.status is not None
    assert submission.status.state is TaskState.DONE
    assert submission.status.task_id == REQUEST_ID
    assert [(r.kind, r.url, r.path) for r in submission.status.results] == [
        (ResultKind.IMAGE, RESULT_URL, None)
    ]


def test_replace_background_mask_image_returned_as_mask_result(router: respx.MockRouter) -> None:
    mask = "https://aiart-xxx.cos.ap-guangzhou.myqcloud.com/mask.jpg?q-sign-time=1;2"
    router.post("/").mock(return_value=success(MaskImage=mask))
    submission = make_client().replace_background({"prompt": "x", "rsp_img_type": "url"}, PRODUCT)
    assert submission.status is not None
    results = {r.kind: r.url for r in submission.status.results}
    assert results == {ResultKind.IMAGE: RESULT_URL, ResultKind.MASK: mask}


def test_replace_background_base64_result_decoded_to_file_in_workdir(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    router.post("/").mock(return_value=success(base64.b64encode(PNG).decode()))
    submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert submission.status is not None
    (result,) = submission.status.results
    assert result.kind is ResultKind.IMAGE
    assert result.url is None
    assert result.path is not None
    assert Path(result.path).parent == tmp_path
    assert result.path.endswith(".png")
    assert Path(result.path).read_bytes() == PNG


def test_replace_background_base64_mask_also_decoded_to_file(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"mask" * 100
    router.post("/").mock(
        return_value=success(base64.b64encode(PNG).decode(), MaskImage=base64.b64encode(jpeg).decode())
    )
    submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert submission.status is not None
    paths = {r.kind: r.path for r in submission.status.results}
    assert paths[ResultKind.MASK] is not None
    assert paths[ResultKind.MASK].endswith(".jpg")
    assert Path(paths[ResultKind.MASK]).read_bytes() == jpeg
    assert Path(paths[ResultKind.IMAGE] or "").read_bytes() == PNG


def test_replace_background_pretty_printed_answer_keys_in_any_order(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    text = (
        '{\n  "Response" : {\n    "MaskImage" : "https:\\/\\/x.test\\/m.png",\n'
        f'    "ResultImage"\t:\n "{escaped_b64(PNG)}" ,\n    "RequestId": "{REQUEST_ID}"\n  }}\n}}\n'
    )
    router.post("/").mock(return_value=streamed(split(text.encode(), 5)))
    submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert submission.request_id == REQUEST_ID
    assert submission.status is not None
    refs = {r.kind: r for r in submission.status.results}
    assert refs[ResultKind.MASK].url == "https://x.test/m.png"
    assert Path(refs[ResultKind.IMAGE].path or "").read_bytes() == PNG


def test_replace_background_result_image_key_inside_other_string_not_streamed(
    router: respx.MockRouter,
) -> None:
    # A string that merely contains "ResultImage" (or a quoted quote) is not the key.
    body = {"RequestId": 'say \\"ResultImage\\": ', "ResultImage": RESULT_URL, "Note": "ResultImage"}
    router.post("/").mock(return_value=answer(body))
    submission = make_client().replace_background({"prompt": "x", "rsp_img_type": "url"}, PRODUCT)
    assert submission.request_id == 'say \\"ResultImage\\": '
    assert submission.status is not None
    assert [r.url for r in submission.status.results] == [RESULT_URL]


def _random_png_chunks(total: int, seed: int) -> tuple[Iterator[bytes], Callable[[], str]]:
    """A base64 answer generated chunk by chunk, so the test itself never holds it whole."""
    digest = hashlib.sha256()
    rng = random.Random(seed)
    block = 3 * 21_845  # 3-byte aligned, so each block's base64 concatenates cleanly
    cut = 7_919  # a prime: chunk edges fall inside quads and inside "\\/" escapes

    def chunks() -> Iterator[bytes]:
        yield b'{"Response":{"RequestId":"big-1","ResultImage":"'
        made = 0
        while made < total:
            raw = b"\x89PNG\r\n\x1a\n" + rng.randbytes(block - 8) if made == 0 else rng.randbytes(block)
            raw = raw[: total - made]
            made += len(raw)
            digest.update(raw)
            encoded = base64.b64encode(raw).replace(b"/", b"\\/")
            for i in range(0, len(encoded), cut):
                yield encoded[i : i + cut]
        yield b'","MaskImage":"https:\\/\\/x.test\\/m.png"}}'

    return chunks(), digest.hexdigest


def test_replace_background_multi_mb_escaped_base64_streamed_with_bounded_memory(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    # GIVEN a 4 MB image (≈ 5.5 MB of base64 with every "/" escaped) arriving in odd chunks
    total = 4 * 1024 * 1024
    chunks, expected_digest = _random_png_chunks(total, seed=3)
    router.post("/").mock(return_value=streamed(chunks))
    # WHEN the client reads it
    tracemalloc.start()
    try:
        submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN the file holds exactly the image, and memory never held a fraction of it
    assert submission.status is not None
    refs = {r.kind: r for r in submission.status.results}
    path = Path(refs[ResultKind.IMAGE].path or "")
    assert path.stat().st_size == total
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected_digest()
    assert path.suffix == ".png"
    assert refs[ResultKind.MASK].url == "https://x.test/m.png"
    assert peak < 1024 * 1024, f"peak {peak} bytes"  # measured: about 0.5 MB, whatever the size


@settings(max_examples=50, deadline=None)
@given(
    raw=st.binary(min_size=1, max_size=600),
    chunk=st.integers(min_value=1, max_value=97),
    escape_slashes=st.booleans(),
    spaces=st.sampled_from(["", " ", "\n  "]),
)
def test_replace_background_base64_any_chunking_decodes_exactly(
    raw: bytes, chunk: int, escape_slashes: bool, spaces: str
) -> None:
    encoded = base64.b64encode(raw).decode()
    if escape_slashes:
        encoded = encoded.replace("/", "\\/")
    text = f'{{{spaces}"Response"{spaces}:{{"RequestId":"r","ResultImage"{spaces}:{spaces}"{encoded}"}}}}'
    with tempfile.TemporaryDirectory() as workdir, respx.mock(base_url=BASE) as router:
        router.post("/").mock(return_value=streamed(split(text.encode(), chunk)))
        submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=workdir)
        assert submission.status is not None
        (result,) = submission.status.results
        assert Path(result.path or "").read_bytes() == raw
        assert os.listdir(workdir) == [os.path.basename(result.path or "")]


# --- errors in the body ------------------------------------------------------------------

# Every code in document 003, then the common codes that matter.
DOCUMENT_003_CODES: list[tuple[str, type[PicflowError]]] = [
    ("AuthFailure.UnauthorizedOperation", AuthError),
    ("FailedOperation.GenerateImageFailed", UpstreamTaskFailedError),
    ("FailedOperation.ImageDecodeFailed", InvalidRequestError),
    ("FailedOperation.ImageDownloadError", UpstreamTaskFailedError),
    ("FailedOperation.ImageResolutionExceed", InvalidRequestError),
    ("FailedOperation.ImageSizeExceed", InvalidRequestError),
    ("FailedOperation.InnerError", TransientError),
    ("FailedOperation.RequestEntityTooLarge", InvalidRequestError),
    ("FailedOperation.RequestTimeout", TransientError),
    ("FailedOperation.RpcFail", TransientError),
    ("FailedOperation.ServerError", TransientError),
    ("FailedOperation.Unknown", TransientError),
    ("InvalidParameter.InvalidParameter", InvalidRequestError),
    ("InvalidParameterValue.ImageEmpty", InvalidRequestError),
    ("InvalidParameterValue.ParameterValueError", InvalidRequestError),
    ("InvalidParameterValue.StyleConflict", InvalidRequestError),
    ("InvalidParameterValue.TextLengthExceed", InvalidRequestError),
    ("InvalidParameterValue.UrlIllegal", InvalidRequestError),
    ("OperationDenied.ImageIllegalDetected", UpstreamTaskFailedError),
    ("OperationDenied.TextIllegalDetected", UpstreamTaskFailedError),
    ("RequestLimitExceeded", RateLimitedError),
    ("RequestLimitExceeded.JobNumExceed", ConcurrencyLimitedError),
    ("ResourceUnavailable.Delivering", QuotaExhaustedError),
    ("ResourceUnavailable.InArrears", QuotaExhaustedError),
    ("ResourceUnavailable.LowBalance", QuotaExhaustedError),
    ("ResourceUnavailable.NotExist", QuotaExhaustedError),
    ("ResourceUnavailable.StopUsing", QuotaExhaustedError),
    ("ResourcesSoldOut.ChargeStatusException", QuotaExhaustedError),
]
COMMON_CODES: list[tuple[str, type[PicflowError]]] = [
    ("AuthFailure.SignatureFailure", AuthError),
    ("AuthFailure.SignatureExpire", AuthError),
    ("AuthFailure.SecretIdNotFound", AuthError),
    ("AuthFailure.InvalidAuthorization", AuthError),
    ("AuthFailure.InvalidSecretId", AuthError),
    ("InvalidAction", InvalidRequestError),
    ("NoSuchVersion", InvalidRequestError),
    ("MissingParameter", InvalidRequestError),
    ("UnknownParameter", InvalidRequestError),
    ("InvalidParameter", InvalidRequestError),
    ("UnsupportedRegion", InvalidRequestError),
    ("InternalError", TransientError),
    ("ServiceUnavailable", TransientError),
    ("RequestLimitExceeded.UinLimitExceeded", RateLimitedError),
    ("RequestLimitExceeded.IPLimitExceeded", RateLimitedError),
]


@pytest.mark.parametrize(("code", "expected"), DOCUMENT_003_CODES + COMMON_CODES)
def test_replace_background_error_code_mapped_keeping_code_message_request_id(
    router: respx.MockRouter, sleeps: list[float], code: str, expected: type[PicflowError], tmp_path: Path
) -> None:
    route = router.post("/").mock(return_value=tencent_error(code, "原始信息 raw message"))
    with pytest.raises(PicflowError) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    error = caught.value
    assert type(error) is expected
    assert error.code == code
    assert error.message == "原始信息 raw message"
    assert error.request_id == REQUEST_ID
    assert error.http_status == 200
    assert error.provider == "tencent"
    assert route.call_count == 1  # a paid submit is never retried by the client
    assert sleeps == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("AuthFailure.SomethingNew", AuthError),
        ("InvalidParameterValue.NewRule", InvalidRequestError),
        ("OperationDenied.NewModeration", UpstreamTaskFailedError),
        ("ResourceUnavailable.NewState", QuotaExhaustedError),
        ("ResourcesSoldOut.NewState", QuotaExhaustedError),
        ("RequestLimitExceeded.NewLimit", RateLimitedError),
        ("InternalError.NewFault", TransientError),
        ("FailedOperation.NewFailure", UpstreamTaskFailedError),
        ("Completely.Unknown", UpstreamTaskFailedError),
        ("AuthFailureLookalike", UpstreamTaskFailedError),
    ],
)
def test_error_class_unknown_code_by_prefix_else_task_failed(code: str, expected: type[PicflowError]) -> None:
    assert error_class(code) is expected


def test_replace_background_tencent_error_in_5xx_body_mapped_by_code(router: respx.MockRouter) -> None:
    router.post("/").mock(
        return_value=tencent_error("ResourceUnavailable.LowBalance", "余额不足", status=502)
    )
    with pytest.raises(QuotaExhaustedError) as caught:
        make_client().replace_background({"prompt": "x"}, PRODUCT)
    assert caught.value.http_status == 502
    assert caught.value.code == "ResourceUnavailable.LowBalance"


def test_replace_background_error_message_echoing_secret_is_scrubbed(router: respx.MockRouter) -> None:
    router.post("/").mock(
        return_value=tencent_error(
            "AuthFailure.SecretIdNotFound", f"SecretId {SECRET_ID} not found (key {SECRET_KEY})"
        )
    )
    with pytest.raises(AuthError) as caught:
        make_client().replace_background({"prompt": "x"}, PRODUCT)
    rendered = f"{caught.value} {caught.value!r} {caught.value.to_dict()}"
    assert SECRET_ID not in rendered
    assert SECRET_KEY not in rendered
    assert "SecretId *** not found" in caught.value.message


def test_tencent_client_repr_and_str_hide_secrets() -> None:
    client = make_client()
    for text in (repr(client), str(client), repr(vars(client))):
        assert SECRET_KEY not in text
        assert SECRET_ID not in text


# --- unusable answers and transport faults -----------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"Response": {"RequestId": "r", "ResultImage": "https://x/y"',  # truncated
        b"not json at all",
        b'{"Response": []}',
        b'{"Result": {"ResultImage": "https://x/y"}}',
        b'{"Response": {"RequestId": "r"}}',  # neither result nor error
        b'{"Response": {"RequestId": "r", "ResultImage": ""}}',
        b'{"Response": {"RequestId": "r", "ResultImage": null}}',
        b'{"Response": {"RequestId": "r", "ResultImage": "iVBORw0KGgo!!!!"}}',  # not base64
        b'{"Response": {"RequestId": "r", "ResultImage": "iVBORw0KGgoAA"}}',  # length not a multiple of 4
        b'{"Response": {"RequestId": "r", "ResultImage": "iV==BORw"}}',  # padding in the middle
        b'{"Response": {"RequestId": "r", "ResultImage": "iVBO\\q"}}',  # invalid escape
        b'{"Response": {"Error": {"Message": "no code"}, "RequestId": "r"}}',
    ],
)
def test_replace_background_malformed_200_answer_outcome_unknown_and_no_file_left(
    router: respx.MockRouter, sleeps: list[float], tmp_path: Path, content: bytes
) -> None:
    route = router.post("/").mock(return_value=httpx.Response(200, headers=JSON, content=content))
    with pytest.raises(OutcomeUnknownError) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert caught.value.http_status == 200
    assert route.call_count == 1
    assert list(tmp_path.iterdir()) == []


def test_replace_background_valid_short_base64_is_accepted(router: respx.MockRouter, tmp_path: Path) -> None:
    # Companion of the malformed cases above: "iVBORw==" style answers with a valid length decode.
    router.post("/").mock(return_value=success("iVBORw0KGgo="))
    submission = make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert submission.status is not None
    assert Path(submission.status.results[0].path or "").read_bytes() == base64.b64decode("iVBORw0KGgo=")


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None])
def test_replace_background_200_wrong_content_type_outcome_unknown(
    router: respx.MockRouter, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    router.post("/").mock(return_value=httpx.Response(200, headers=headers, content=b"<html>gateway</html>"))
    with pytest.raises(OutcomeUnknownError):
        make_client().replace_background({"prompt": "x"}, PRODUCT)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_replace_background_5xx_without_tencent_body_transient_not_retried(
    router: respx.MockRouter, sleeps: list[float], status: int
) -> None:
    route = router.post("/").mock(return_value=httpx.Response(status, text="<html>bad gateway</html>"))
    with pytest.raises(TransientError) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT)
    assert caught.value.http_status == status
    assert route.call_count == 1
    assert sleeps == []


def test_replace_background_429_with_retry_after_rate_limited(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.post("/").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
    )
    with pytest.raises(RateLimitedError) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT)
    assert type(caught.value) is RateLimitedError
    assert caught.value.retry_after == 7.0
    assert route.call_count == 1


def test_replace_background_429_with_a_tencent_error_keeps_retry_after(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    # A gateway's 429 may carry Tencent's own error body: the code decides the class, the
    # header still says when to come back.
    response = tencent_error("RequestLimitExceeded", status=429)
    response.headers["Retry-After"] = "7"
    route = router.post("/").mock(return_value=response)
    with pytest.raises(RateLimitedError) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT)
    assert (caught.value.code, caught.value.retry_after) == ("RequestLimitExceeded", 7.0)
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [(401, AuthError), (403, AuthError), (413, InvalidRequestError), (404, InvalidRequestError)],
)
def test_replace_background_4xx_without_tencent_body_by_status(
    router: respx.MockRouter, status: int, expected: type[PicflowError]
) -> None:
    router.post("/").mock(return_value=httpx.Response(status, text="nope"))
    with pytest.raises(expected) as caught:
        make_client().replace_background({"prompt": "x"}, PRODUCT)
    assert type(caught.value) is expected
    assert caught.value.http_status == status


def test_replace_background_connect_error_then_success_same_signed_request(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.post("/").mock(side_effect=[httpx.ConnectError("refused"), success()])
    submission = make_client(sleeps).replace_background({"prompt": "x", "rsp_img_type": "url"}, PRODUCT)
    assert submission.request_id == REQUEST_ID
    assert route.call_count == 2
    assert len(sleeps) == 1
    first, second = (call.request for call in route.calls)
    assert first.headers["Authorization"] == second.headers["Authorization"]


@pytest.mark.parametrize(
    ("fault", "expected", "calls"),
    [
        # never connected: provably not sent, so retried (3 attempts), then transient
        (httpx.ConnectError("refused"), TransientError, 3),
        (httpx.ConnectTimeout("slow connect"), TransientError, 3),
        # sent, answer lost: the image may be made and billed, so never retried
        (httpx.ReadTimeout("slow"), OutcomeUnknownError, 1),
        (httpx.RemoteProtocolError("reset"), OutcomeUnknownError, 1),
    ],
)
def test_replace_background_transport_fault_retried_only_when_never_sent(
    router: respx.MockRouter, sleeps: list[float], fault: Exception, expected: type[PicflowError], calls: int
) -> None:
    route = router.post("/").mock(side_effect=fault)
    with pytest.raises(expected) as caught:
        make_client(sleeps).replace_background({"prompt": "x"}, PRODUCT)
    assert type(caught.value) is expected
    assert route.call_count == calls
    assert len(sleeps) == calls - 1


def test_replace_background_connection_lost_mid_body_outcome_unknown_no_file_left(
    router: respx.MockRouter, tmp_path: Path
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"Response":{"RequestId":"r","ResultImage":"'
        yield base64.b64encode(PNG)
        raise httpx.ReadError("connection reset")

    router.post("/").mock(return_value=streamed(chunks()))
    with pytest.raises(OutcomeUnknownError) as caught:
        make_client().replace_background({"prompt": "x"}, PRODUCT, workdir=str(tmp_path))
    assert caught.value.code == "NoAnswer"
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert list(tmp_path.iterdir()) == []
