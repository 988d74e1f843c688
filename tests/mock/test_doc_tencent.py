"""Tencent ReplaceBackground (document 003) checked against the document itself.

The input and output tables, the example input and output and the error-code table are read
at test time; the example input is signed and sent, and every rule a table states is tried.
"""

from __future__ import annotations

import base64
import io
import re
import threading

import pytest
from documents import declared_extras, shape_differences, tencent
from PIL import Image

pytestmark = pytest.mark.integration

DOC = tencent()


def product_only(**extra):
    return {"ProductUrl": DOC.example_input["ProductUrl"], "Prompt": DOC.example_input["Prompt"], **extra}


def decoded(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_example_input_gets_the_example_output_field_by_field(tencent, client, mock_upstream):
    # GIVEN the document's example input, signed for the documented Action and Version
    answer = tencent(DOC.example_input, action=DOC.action, version=DOC.version)

    # THEN the answer has the example output's fields, of the same types, and no other
    assert shape_differences(DOC.example_output, answer) == []
    assert re.sub(r"[0-9a-f]", "h", answer["RequestId"]) == re.sub(
        r"[0-9a-f]", "h", DOC.example_output["RequestId"]
    )
    # RspImgType url: "有效期1小时" - the URL serves the image for an hour of mock time.
    hours = int(re.search(r"url 有效期为(\d+)小时", DOC.inputs["RspImgType"].description)[1])
    image = client.get(answer["ResultImage"])
    assert image.status_code == 200
    assert Image.open(io.BytesIO(image.content)).format == "JPEG"
    mock_upstream.advance_clock(hours * 3600)
    assert client.get(answer["ResultImage"]).status_code != 200


def test_every_output_field_is_documented():
    assert set(DOC.example_output) <= set(DOC.outputs)


@pytest.mark.parametrize("name", [n for n, p in DOC.inputs.items() if p.required and n in DOC.example_input])
def test_required_inputs_are_required(tencent, name):
    params = {k: v for k, v in DOC.example_input.items() if k != name}
    error = tencent(params)["Error"]
    assert error["Code"]
    assert error["Code"] in DOC.errors or error["Code"] in {"MissingParameter"}


@pytest.mark.parametrize("header", ["action", "version"])
def test_action_and_version_must_be_the_documented_values(tencent, header):
    wrong = {"action": "TextToImage", "version": "2020-01-01"}[header]
    assert "Error" in tencent(DOC.example_input, **{header: wrong})


@pytest.mark.parametrize("blank", ["", "   "])
def test_prompt_is_required_so_an_empty_one_is_refused(tencent, mock_upstream, blank):
    assert DOC.inputs["Prompt"].required
    error = tencent(product_only(Prompt=blank))["Error"]
    assert error["Code"] in DOC.errors
    assert mock_upstream.count(paid=True) == 0


def test_prompt_length_limit_and_its_error_code(tencent):
    limit = int(re.search(r"最多支持(\d+)个", DOC.inputs["Prompt"].description)[1])
    (code,) = [c for c, text in DOC.errors.items() if "文本过长" in text]
    assert "ResultImage" in tencent(product_only(Prompt="长" * limit, RspImgType="url"))
    error = tencent(product_only(Prompt="长" * (limit + 1)))["Error"]
    assert error == {"Code": code, "Message": DOC.errors[code]}


def test_resolution_default_and_range(tencent):
    description = DOC.inputs["Resolution"].description
    default = re.search(r"不传默认生成(\d+):(\d+)", description)
    low, high = (int(v) for v in re.search(r"单边分辨率大于(\d+)且小于(\d+)", description).groups())
    assert decoded(tencent(product_only())["ResultImage"]).size == (int(default[1]), int(default[2]))
    assert decoded(tencent(product_only(Resolution=f"{low + 1}:{low + 1}"))["ResultImage"]).size == (
        low + 1,
        low + 1,
    )
    for refused in (f"{low}:{low + 100}", f"{high}:{high - 100}", f"{low + 1}:{3 * low}"):
        # sides must be > low and < high, the ratio within 2:5 .. 5:2
        assert tencent(product_only(Resolution=refused))["Error"]["Code"] in DOC.errors


def test_rsp_img_type_defaults_to_base64(tencent):
    assert "默认为 base64" in DOC.inputs["RspImgType"].description
    assert decoded(tencent(product_only())["ResultImage"]).format == "JPEG"


def test_mask_image_only_without_mask_url(tencent, client):
    # "如果 MaskUrl 未传,则返回使用内置商品分割算法得到的 Mask 结果。"
    assert "MaskUrl 未传" in DOC.outputs["MaskImage"]
    without = tencent(product_only())
    assert client.get(without["MaskImage"]).status_code == 200
    assert "MaskImage" not in tencent(DOC.example_input)


def test_logo_add_defaults_to_one(tencent):
    assert "默认为1" in DOC.inputs["LogoAdd"].description
    default = tencent(product_only())["ResultImage"]
    assert default == tencent(product_only(LogoAdd=1))["ResultImage"]
    assert default != tencent(product_only(LogoAdd=0))["ResultImage"]


def test_logo_param_example_value_is_accepted(tencent):
    example = re.search(r"示例值:(\{.*\})", DOC.inputs["LogoParam"].description)[1]
    import json

    assert "ResultImage" in tencent(product_only(LogoParam=json.loads(example)))


def test_one_job_at_a_time_by_default(tencent, mock_upstream):
    # "默认提供1个并发任务数": a second job while one runs is refused with the document's code.
    assert "默认提供1个并发任务数" in DOC.text
    (code,) = [c for c, text in DOC.errors.items() if "同时处理的任务数过多" in text]
    mock_upstream.hold_tencent()
    first = {}
    worker = threading.Thread(target=lambda: first.setdefault("answer", tencent(product_only())))
    worker.start()
    try:
        mock_upstream.wait_tencent_jobs(1)
        assert tencent(product_only())["Error"] == {"Code": code, "Message": DOC.errors[code]}
    finally:
        mock_upstream.release_tencent()
        worker.join(30)
    assert "ResultImage" in first["answer"]


@pytest.mark.parametrize(
    ("params", "meaning"),
    [
        (product_only(ProductUrl="not a url"), "URL格式不合法"),
        (product_only(ProductUrl=""), "图片为空"),
        (product_only(ProductUrl="http://127.0.0.1:9/none.jpg"), "图片下载错误"),
    ],
)
def test_image_errors_have_the_documents_codes_and_texts(tencent, params, meaning):
    (code,) = [c for c, text in DOC.errors.items() if meaning in text]
    assert tencent(params)["Error"] == {"Code": code, "Message": DOC.errors[code]}


def test_undecodable_image_has_the_documents_code_and_text(tencent, mock_upstream):
    (code,) = [c for c, text in DOC.errors.items() if "图片解码失败" in text]
    # The mock's callback sink answers JSON: not an image.
    error = tencent(product_only(ProductUrl=mock_upstream.url("/__mock/sink/x")))["Error"]
    assert error == {"Code": code, "Message": DOC.errors[code]}


def test_low_balance_has_the_documents_code_and_text(tencent, mock_upstream):
    (code,) = [c for c, text in DOC.errors.items() if text == "余额不足。"]
    mock_upstream.set_account("default", tencent_balance=0)
    assert tencent(product_only())["Error"] == {"Code": code, "Message": DOC.errors[code]}


def test_every_documented_error_code_keeps_the_documents_text(tencent, mock_upstream):
    # Each code the document lists, forced through the mock (a provider_error fault with only
    # the code): the message must be the document's, verbatim.
    for code, message in DOC.errors.items():
        mock_upstream.inject_fault("provider_error", action=DOC.action, code=code)
        assert tencent(product_only())["Error"] == {"Code": code, "Message": message}, code


def test_errors_outside_the_document_are_declared(tencent):
    # Codes the mock answers that the document's table does not list are the common ones the
    # README declares (the document points to "公共错误码" without listing them).
    readme = declared_extras()
    assert readme  # the README's list was read
    seen = {
        tencent(product_only(), secret_key="wrong")["Error"]["Code"],
        tencent(product_only(Colour="red"))["Error"]["Code"],
        tencent({"Prompt": "x"})["Error"]["Code"],
    }
    from documents import README

    text = README.read_text(encoding="utf-8")
    for code in seen - set(DOC.errors):
        assert f"`{code.split('.')[0]}" in text, code
