"""Tencent ReplaceBackground: the official SDK, TC3 strictness, parameter and image rules, job limit."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
from PIL import Image
from tencentcloud.aiart.v20221229 import aiart_client, models
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

pytestmark = pytest.mark.integration

DOC_EXAMPLE = {
    "ProductUrl": "https://xxx.com/product.jpg",
    "MaskUrl": "https://xxx.com/mask.jpg",
    "Prompt": "backpack,real picture quality, fabric texture, fine, cartoon",
    "RspImgType": "url",
}


def sdk_client(mock_upstream, secret_key="mock-upstream-secret-key"):  # noqa: S107 - mock-only key
    # The SDK builds `<scheme>://<endpoint><path>`: protocol "http" and a host:port endpoint reach the mock.
    profile = ClientProfile(httpProfile=HttpProfile(protocol="http", endpoint=mock_upstream.base_url[7:]))
    return aiart_client.AiartClient(
        credential.Credential("AKIDMOCKUPSTREAM", secret_key), "ap-guangzhou", profile
    )


def decode_b64(data):
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_official_sdk_gets_the_documented_answer(mock_upstream, client):
    request = models.ReplaceBackgroundRequest()
    request.from_json_string(json.dumps(DOC_EXAMPLE))
    response = sdk_client(mock_upstream).ReplaceBackground(request)
    assert response.RequestId
    assert response.MaskImage is None
    image = Image.open(io.BytesIO(client.get(response.ResultImage).content))
    assert image.size == (1280, 1280)
    assert image.format == "JPEG"
    assert mock_upstream.count(provider="tencent", paid=True) == 1


def test_official_sdk_sees_signature_failure(mock_upstream):
    request = models.ReplaceBackgroundRequest()
    request.from_json_string(json.dumps(DOC_EXAMPLE))
    with pytest.raises(TencentCloudSDKException) as raised:
        sdk_client(mock_upstream, secret_key="wrong").ReplaceBackground(request)
    assert raised.value.code == "AuthFailure.SignatureFailure"
    assert raised.value.requestId


def test_base64_default_with_resolution_and_auto_mask(tencent, client):
    response = tencent(
        {"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "彩色", "Resolution": "720:1280"}
    )
    assert decode_b64(response["ResultImage"]).size == (720, 1280)
    mask = Image.open(io.BytesIO(client.get(response["MaskImage"]).content))
    assert mask.size == (640, 640)
    assert mask.mode == "L"


def test_same_input_same_bytes(tencent):
    params = {"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "beach", "LogoAdd": 0}
    assert tencent(params)["ResultImage"] == tencent(params)["ResultImage"]
    assert tencent(params)["ResultImage"] != tencent({**params, "Prompt": "forest"})["ResultImage"]


def test_logo_param_is_painted(tencent):
    logo = {"LogoUrl": "https://xxx.com/logo.jpg", "LogoRect": {"X": 10, "Y": 10, "Width": 60, "Height": 20}}
    product = "https://xxx.com/product.jpg"
    with_logo = decode_b64(tencent({"ProductUrl": product, "Prompt": "x", "LogoParam": logo})[
        "ResultImage"])  # fmt: skip
    without = decode_b64(tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x", "LogoAdd": 0})[
        "ResultImage"])  # fmt: skip
    assert with_logo.getpixel((30, 20)) != without.getpixel((30, 20))


def test_url_result_expires_after_an_hour(tencent, client, mock_upstream):
    url = tencent({**DOC_EXAMPLE})["ResultImage"]
    assert "q-sign-time=" in url
    assert client.get(url).status_code == 200
    mock_upstream.advance_clock(3600)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"Prompt": "x"}, "MissingParameter"),
        ({"ProductUrl": "https://xxx.com/p.jpg"}, "MissingParameter"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "长" * 257},
         "InvalidParameterValue.TextLengthExceed"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "x", "Resolution": "500:1000"},
         "InvalidParameterValue.ParameterValueError"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "x", "Resolution": "600:1600"},
         "InvalidParameterValue.ParameterValueError"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "x", "Resolution": "1280x1280"},
         "InvalidParameterValue.ParameterValueError"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "x", "RspImgType": "png"},
         "InvalidParameterValue.ParameterValueError"),
        ({"ProductUrl": "not a url", "Prompt": "x"}, "InvalidParameterValue.UrlIllegal"),
        ({"ProductUrl": "", "Prompt": "x"}, "InvalidParameterValue.ImageEmpty"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": 5}, "InvalidParameter"),
        ({"ProductUrl": "https://xxx.com/p.jpg", "Prompt": "x", "Colour": "red"}, "UnknownParameter"),
        ({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x", "MaskUrl": "https://xxx.com/image.png"},
         "InvalidParameterValue.ParameterValueError"),  # mask size differs from the product
    ],
)  # fmt: skip
def test_parameter_rules(tencent, params, code):
    assert tencent(params)["Error"]["Code"] == code


def test_prompt_of_256_characters_is_fine(tencent):
    assert "ResultImage" in tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "长" * 256})


def test_download_and_decode_failures(tencent, mock_upstream):
    missing = tencent({"ProductUrl": mock_upstream.url("/files/x/none.png"), "Prompt": "x"})
    assert missing["Error"]["Code"] == "FailedOperation.ImageDownloadError"
    # The mock's callback sink answers JSON, which is not an image.
    not_image = tencent({"ProductUrl": mock_upstream.url("/__mock/sink/any"), "Prompt": "x"})
    assert not_image["Error"]["Code"] == "FailedOperation.ImageDecodeFailed"


@pytest.mark.parametrize(
    ("sign", "code"),
    [
        ({"secret_key": "wrong"}, "AuthFailure.SignatureFailure"),
        ({"secret_id": "AKIDNOBODY"}, "AuthFailure.SecretIdNotFound"),
        ({"action": "TextToImage"}, "InvalidAction"),
        ({"version": "2020-01-01"}, "NoSuchVersion"),
        ({"region": "mars-1"}, "UnsupportedRegion"),
        ({"service": "cvm"}, "AuthFailure.InvalidAuthorization"),
    ],
)
def test_signature_and_header_checks(tencent, sign, code):
    response = tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"}, **sign)
    assert response["Error"]["Code"] == code
    assert response["RequestId"]


def test_signature_expires_beyond_five_minutes_of_mock_time(tencent, mock_upstream):
    now = int(mock_upstream.now())
    params = {"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"}
    assert "ResultImage" in tencent(params, timestamp=now - 299)
    assert tencent(params, timestamp=now - 301)["Error"]["Code"] == "AuthFailure.SignatureExpire"
    mock_upstream.advance_clock(400)
    assert tencent(params, timestamp=now)["Error"]["Code"] == "AuthFailure.SignatureExpire"


def test_tampered_body_fails_signature(client, mock_upstream, tc3):
    signed = json.dumps({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"}).encode()
    headers = tc3(mock_upstream.base_url[7:], signed, timestamp=int(mock_upstream.now()))
    sent = signed.replace(b'"x"', b'"y"')
    response = client.post("/", content=sent, headers=headers)
    assert response.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_malformed_authorization(client):
    response = client.post(
        "/", json={}, headers={"Authorization": "Bearer x", "X-TC-Action": "ReplaceBackground"}
    )
    assert response.json()["Response"]["Error"]["Code"] == "AuthFailure.InvalidAuthorization"


def test_low_balance(tencent, mock_upstream):
    mock_upstream.set_account("default", tencent_balance=0)
    response = tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"})
    assert response["Error"]["Code"] == "ResourceUnavailable.LowBalance"


def test_scenario_failure_code(tencent, mock_upstream):
    mock_upstream.set_scenario(next=1, outcome="failure", code="OperationDenied.ImageIllegalDetected")
    params = {"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"}
    assert tencent(params)["Error"]["Code"] == "OperationDenied.ImageIllegalDetected"
    assert "ResultImage" in tencent(params)


def test_second_job_while_one_runs_is_job_num_exceed(tencent, mock_upstream):
    params = {"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x", "LogoAdd": 0}
    mock_upstream.hold_tencent()
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault("first", tencent(params)))
    worker.start()
    try:
        mock_upstream.wait_tencent_jobs(1, timeout=5)
        assert tencent(params)["Error"]["Code"] == "RequestLimitExceeded.JobNumExceed"
    finally:
        mock_upstream.release_tencent()
        worker.join(10)
    assert "ResultImage" in results["first"]
    assert "ResultImage" in tencent(params)  # the slot is free again
