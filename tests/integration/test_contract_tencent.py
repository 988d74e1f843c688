"""Contract tests: the Tencent ReplaceBackground client against mock_upstream over loopback.

The mock verifies TC3-HMAC-SHA256 the way the service does, so these tests prove the client's
signature over the mock's real Host header (``host=None``), its clock skew limits, its
streamed base64 and URL answers, the Tencent error codes mapped to picflow's errors with
``Code``/``Message``/``RequestId`` kept, the one-job-at-a-time limit, and every fault on this
paid, synchronous call (sent once; a retryable error never follows a charge).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from contract_support import (
    fetch_image,
    sample_size,
    stored,
)
from picflow.core.catalogue import Provider, ResultKind, TaskState
from picflow.core.errors import (
    AuthError,
    ConcurrencyLimitedError,
    InvalidRequestError,
    PicflowError,
    QuotaExhaustedError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import Submission
from picflow.net.http import RetryPolicy, build_client
from picflow.providers.base import Secret
from picflow.providers.tencent import TencentClient
from PIL import Image

from mock_upstream.errors import TENCENT_MESSAGES
from mock_upstream.testing import MockUpstream

pytestmark = pytest.mark.integration

PRODUCT = "https://example.com/product.jpg"  # the 640x640 sample
ACTION = "ReplaceBackground"
SECRET_ID = "AKIDMOCKUPSTREAM"
SECRET_KEY = "mock-upstream-secret-key"
Factory = Callable[..., TencentClient]


@pytest.fixture
def make(http: httpx.Client, retry: RetryPolicy, mock_upstream: MockUpstream) -> Factory:
    """A client signing with the mock's clock and Host; credentials overridable."""

    def build(
        *,
        secret_id: str = SECRET_ID,
        secret_key: str = SECRET_KEY,
        skew: float = 0.0,
        transport: httpx.Client | None = None,
    ) -> TencentClient:
        return TencentClient(
            transport or http,
            Secret(secret_id),
            Secret(secret_key),
            host=None,
            clock=lambda: mock_upstream.now() + skew,
            retry=retry,
        )

    return build


@pytest.fixture
def tencent(make: Factory) -> TencentClient:
    return make()


def replace(client: TencentClient, workdir: Path, product: str = PRODUCT, **params: Any) -> Submission:
    return client.replace_background(
        {"prompt": "a marble kitchen counter", **params}, product, workdir=str(workdir)
    )


# --- the one operation, both answer types -----------------------------------------------


def test_base64_answer_is_decoded_to_a_file_at_the_requested_resolution(tencent, mock_upstream, tmp_path):
    # GIVEN the documented call with the default base64 answer
    # WHEN it is made
    sub = replace(tencent, tmp_path, resolution="1280:960")

    # THEN it is a finished synchronous call identified by Tencent's RequestId
    status = sub.status
    assert sub.provider is Provider.TENCENT
    assert sub.task_id is None
    assert status is not None
    assert (status.state, status.task_id) == (TaskState.DONE, sub.request_id)
    assert sub.request_id
    # AND the image is a JPEG file of the requested size, byte for byte what the mock made
    image, mask = status.results
    assert (image.kind, image.url) == (ResultKind.IMAGE, None)
    path = Path(image.path or "")
    assert path.parent == tmp_path
    assert path.suffix == ".jpg"
    with Image.open(path) as decoded:
        assert (decoded.format, decoded.size) == ("JPEG", (1280, 960))
    (entry,) = mock_upstream.journal(paid=True)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["result_sha256"]
    # AND without a MaskUrl Tencent also returns its mask, as a URL to a PNG of the product's size
    assert mask.kind is ResultKind.MASK
    fetched = fetch_image(mask.url or "")
    assert (fetched.format, fetched.size) == ("PNG", sample_size("product.jpg"))


def test_url_answer_downloads_to_a_jpeg_of_the_requested_resolution(tencent, tmp_path):
    sub = replace(tencent, tmp_path, rsp_img_type="url", resolution="1024:768")

    assert sub.status is not None
    image = sub.status.results[0]
    assert image.path is None
    assert "q-sign-time=" in (image.url or "")
    fetched = fetch_image(image.url or "")
    assert (fetched.format, fetched.size) == ("JPEG", (1024, 768))
    assert list(tmp_path.iterdir()) == []


def test_request_is_signed_json_in_tencents_casing(tencent, mock_upstream, tmp_path):
    replace(
        tencent,
        tmp_path,
        product="https://example.com/product.jpg",
        mask_url="https://example.com/mask.png",
        logo_param={
            "logo_url": "https://example.com/logo.jpg",
            "logo_rect": {"x": 10, "y": 10, "width": 120, "height": 40},
        },
        rsp_img_type="url",
    )

    (entry,) = mock_upstream.journal(paid=True)
    assert entry["json"] == {
        "ProductUrl": "https://example.com/product.jpg",
        "Prompt": "a marble kitchen counter",
        "MaskUrl": "https://example.com/mask.png",
        "Resolution": "1280:1280",
        "LogoAdd": 1,
        "LogoParam": {
            "LogoUrl": "https://example.com/logo.jpg",
            "LogoRect": {"X": 10, "Y": 10, "Width": 120, "Height": 40},
        },
        "RspImgType": "url",
    }
    headers = entry["headers"]
    assert (headers["x-tc-action"], headers["x-tc-version"], headers["x-tc-region"]) == (
        ACTION,
        "2022-12-29",
        "ap-guangzhou",
    )
    assert headers["authorization"] == "TC3-HMAC-SHA256 <redacted>"


def test_with_a_mask_url_only_the_image_comes_back(tencent, tmp_path):
    sub = replace(tencent, tmp_path, mask_url="https://example.com/mask.png", rsp_img_type="url")

    assert sub.status is not None
    assert [ref.kind for ref in sub.status.results] == [ResultKind.IMAGE]


def test_collect_stores_the_decoded_file_and_the_mask_url(tencent, collect, s3, tmp_path):
    status = replace(tencent, tmp_path).status
    assert status is not None

    manifest = collect(status.results, "tencent")

    outputs = {o["kind"]: o for o in manifest["outputs"]}
    assert (outputs["image"]["content_type"], outputs["image"]["width"]) == ("image/jpeg", 1280)
    assert (outputs["mask"]["content_type"], outputs["mask"]["width"]) == ("image/png", 640)
    assert len(stored(s3, outputs["image"]["key"])) == outputs["image"]["size"]
    assert list(tmp_path.iterdir()) == []  # the decoded file was handed over and removed


def test_expired_mask_url_is_unavailable(tencent, mock_upstream, collect, tmp_path):
    status = replace(tencent, tmp_path, rsp_img_type="url").status
    assert status is not None
    mock_upstream.advance_clock(3600)

    with pytest.raises(ResultUnavailableError) as caught:
        collect(status.results, "tencent")

    assert caught.value.code == 403


@pytest.mark.parametrize(
    ("kind", "params", "error", "code"),
    [
        ("http_status", {"status": 404}, ResultUnavailableError, 404),
        ("truncated", {}, TransientError, "Truncated"),
        ("corrupt_body", {}, ResultUnavailableError, "CorruptResult"),
    ],
)
def test_damaged_result_url_maps_to_its_error(
    tencent, mock_upstream, collect, tmp_path, kind, params, error, code
):
    status = replace(tencent, tmp_path, rsp_img_type="url").status
    assert status is not None
    mock_upstream.inject_fault(kind, route="/files/*", **params)

    with pytest.raises(PicflowError) as caught:
        collect(status.results, "tencent")

    assert type(caught.value) is error
    assert caught.value.code == code


# --- signature, credentials and account --------------------------------------------------


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"secret_id": "AKIDNOSUCHKEY"}, "AuthFailure.SecretIdNotFound"),
        ({"secret_key": "not-the-secret-key"}, "AuthFailure.SignatureFailure"),
        ({"skew": -301}, "AuthFailure.SignatureExpire"),
        ({"skew": 301}, "AuthFailure.SignatureExpire"),
    ],
)
def test_refused_credentials_are_auth_errors_with_tencents_code(
    make, mock_upstream, tmp_path, override, code
):
    with pytest.raises(AuthError) as caught:
        replace(make(**override), tmp_path)

    error = caught.value
    assert (error.code, error.message, error.http_status) == (code, TENCENT_MESSAGES[code], 200)
    assert error.request_id
    assert "not-the-secret-key" not in str(error)
    assert mock_upstream.count(paid=True) == 0


def test_clock_skew_just_inside_five_minutes_is_accepted(make, tmp_path):
    assert replace(make(skew=-299), tmp_path, rsp_img_type="url").status is not None


def test_exhausted_balance_is_quota_exhausted(tencent, mock_upstream, tmp_path):
    mock_upstream.set_account("default", tencent_balance=0)

    with pytest.raises(QuotaExhaustedError) as caught:
        replace(tencent, tmp_path)

    assert caught.value.code == "ResourceUnavailable.LowBalance"


def test_second_job_while_one_is_held_is_concurrency_limited(make, mock_upstream, tmp_path):
    # GIVEN one job running (held by the mock) on the account's single slot
    mock_upstream.hold_tencent()
    first: dict[str, Any] = {}
    with build_client(mock_upstream.url("")) as other_http:
        other = make(transport=other_http)
        worker = threading.Thread(
            target=lambda: first.setdefault("sub", replace(other, tmp_path, rsp_img_type="url"))
        )
        worker.start()
        try:
            mock_upstream.wait_tencent_jobs(1)

            # WHEN a second job is sent
            with pytest.raises(ConcurrencyLimitedError) as caught:
                replace(make(), tmp_path, rsp_img_type="url")
        finally:
            mock_upstream.release_tencent()
            worker.join(10)

    # THEN it is the retryable JobNumExceed, and only the first job was charged
    assert caught.value.code == "RequestLimitExceeded.JobNumExceed"
    assert caught.value.retryable
    assert first["sub"].status.state is TaskState.DONE
    assert mock_upstream.count(paid=True) == 1
    # AND the slot is free again
    assert replace(make(), tmp_path, rsp_img_type="url").status is not None


def test_unreachable_product_url_fails_the_task(tencent, mock_upstream, tmp_path):
    with pytest.raises(UpstreamTaskFailedError) as caught:
        replace(tencent, tmp_path, product=mock_upstream.url("/files/none/missing.jpg"))

    assert caught.value.code == "FailedOperation.ImageDownloadError"
    assert mock_upstream.count(paid=True) == 0


def test_product_url_that_is_not_an_image_is_an_invalid_request(tencent, mock_upstream, tmp_path):
    with pytest.raises(InvalidRequestError) as caught:
        replace(tencent, tmp_path, product=mock_upstream.sink_url("not-an-image"))

    assert caught.value.code == "FailedOperation.ImageDecodeFailed"


def test_mask_of_another_size_is_an_invalid_request(tencent, tmp_path):
    with pytest.raises(InvalidRequestError) as caught:
        replace(
            tencent,
            tmp_path,
            product="https://example.com/foreground.png",
            mask_url="https://example.com/mask.png",
        )

    assert caught.value.code == "InvalidParameterValue.ParameterValueError"


def test_generated_image_refused_by_moderation_fails_and_costs_nothing(tencent, mock_upstream, tmp_path):
    mock_upstream.set_scenario(next=1, outcome="failure", code="OperationDenied.ImageIllegalDetected")

    with pytest.raises(UpstreamTaskFailedError) as caught:
        replace(tencent, tmp_path)

    assert (caught.value.code, caught.value.message) == (
        "OperationDenied.ImageIllegalDetected",
        TENCENT_MESSAGES["OperationDenied.ImageIllegalDetected"],
    )
    assert mock_upstream.count(paid=True) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("InternalError", TransientError),
        ("FailedOperation.InnerError", TransientError),
        ("FailedOperation.RpcFail", TransientError),
        ("FailedOperation.GenerateImageFailed", UpstreamTaskFailedError),
        ("FailedOperation.ImageResolutionExceed", InvalidRequestError),
        ("FailedOperation.RequestEntityTooLarge", InvalidRequestError),
        ("InvalidParameterValue.TextLengthExceed", InvalidRequestError),
        ("UnsupportedRegion", InvalidRequestError),
        ("OperationDenied.TextIllegalDetected", UpstreamTaskFailedError),
        ("RequestLimitExceeded", RateLimitedError),
        ("AuthFailure.UnauthorizedOperation", AuthError),
        ("ResourceUnavailable.InArrears", QuotaExhaustedError),
        ("ResourceUnavailable.NotExist", QuotaExhaustedError),
        ("ResourcesSoldOut.ChargeStatusException", QuotaExhaustedError),
    ],
)
def test_tencent_error_code_maps_to_its_class_with_code_message_and_request_id(
    tencent, mock_upstream, sleeps, tmp_path, code, error
):
    mock_upstream.inject_fault("provider_error", action=ACTION, code=code)

    with pytest.raises(PicflowError) as caught:
        replace(tencent, tmp_path)

    assert type(caught.value) is error
    assert (caught.value.code, caught.value.message) == (code, TENCENT_MESSAGES[code])
    assert caught.value.request_id
    assert mock_upstream.count(route=ACTION) == 1
    assert mock_upstream.count(paid=True) == 0
    assert sleeps == []
