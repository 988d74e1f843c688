"""Hostile and malformed input through both ways in: refused clearly, before any upstream call.

The API refuses what it can judge from the request and the object's size with a 4xx naming the
field; the bytes themselves are judged by Validate (the first state, before a provider slot is
even taken), so an upload that is not a usable image ends as a FAILED job with a
ParamValidationError on ``image``. Either way the mock's journal stays empty: nothing was paid.
Legitimate text that merely looks odd (right-to-left marks, zero-width joiners, decomposed
accents) is accepted and reaches the provider byte for byte.
"""

from __future__ import annotations

import struct
import unicodedata
import zlib
from io import BytesIO

import httpx
import pytest
from picflow_cli.local.frontdoor import LOCAL_API_KEY

pytestmark = pytest.mark.e2e


@pytest.fixture
def door(system):
    with httpx.Client(
        base_url=system.info.api_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=30
    ) as client:
        yield client


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A few dozen bytes whose header claims ``width`` x ``height`` RGB pixels (a bomb's shape)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _image(fmt: str, width: int, height: int) -> bytes:
    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (width, height)).save(buf, fmt)
    return buf.getvalue()


def _refused_image(system, key: str) -> dict:
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert job["status"] == "FAILED"
    error = job["error"]
    assert (error["type"], error["field"]) == ("ParamValidationError", "image"), error
    assert system.mock.count() == 0
    return error


# --- files, by S3 upload -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "rule"),
    [
        ("zero bytes", lambda s: b"", "not empty"),
        ("text", lambda s: b"just some words, not pixels\n" * 10, "a decodable image"),
        ("pdf", lambda s: b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n", "a decodable image"),
        ("jpeg magic on png bytes", lambda s: b"\xff\xd8\xff\xe0" + s["image.png"][4:], "a complete image"),
        (
            "png magic on jpeg bytes",
            lambda s: b"\x89PNG\r\n\x1a\n" + s["product.jpg"][8:],
            "a decodable image",
        ),
        ("truncated jpeg", lambda s: s["product.jpg"][: len(s["product.jpg"]) // 2], "a complete image"),
        ("bomb: 100000 x 100000 png header", lambda s: png_claiming(100_000, 100_000), "a decodable image"),
        ("bomb: 7000 x 7000 png header", lambda s: png_claiming(7_000, 7_000), "at most 40000000 pixels"),
        ("gif is no accepted format", lambda s: _image("GIF", 64, 64), "one of"),
    ],
)
def test_upload_that_is_no_usable_image_fails_before_any_upstream_call(system, sample, name, make, rule):
    key = system.upload("face_enhance/hostile/x.png", make(sample), {})
    error = _refused_image(system, key)
    assert error["rule"].startswith(rule), (name, error)


def test_upload_over_the_size_limit_fails_before_any_upstream_call(system, sample):
    limit = 16 * 1024 * 1024  # face_enhance: ≤ 16.0 MB
    data = sample["image.png"] + b"\x00" * (limit + 1 - len(sample["image.png"]))
    key = system.upload("face_enhance/hostile/big.png", data, {})
    error = _refused_image(system, key)
    assert error["rule"] == f"at most {limit} bytes"


def test_replace_background_image_outside_its_ratio_fails_before_any_upstream_call(system):
    wide = _image("PNG", 1200, 400)  # 3:1, beyond 5:2
    key = system.upload("replace_background/hostile/wide.png", wide, {"prompt": "a beach"})
    error = _refused_image(system, key)
    assert "ratio" in error["rule"]


# --- parameters, by S3 upload ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "field"),
    [
        ("segmentation", {"format": "jpg", "bg_color": "red"}, "bg_color"),
        ("segmentation", {"format": "jpg", "bg_color": "#FF0000"}, "bg_color"),
        ("segmentation", {"format": "jpg", "bg_color": "GGGGGG"}, "bg_color"),
        ("idphoto", {"size": "99x400"}, "size"),
        ("idphoto", {"size": "300x4000"}, "size"),
        ("idphoto", {"size": "300×400"}, "size"),  # a multiplication sign, not an x
        ("extract_pattern", {"aspect_ratio": "0:1"}, "aspect_ratio"),
        ("extract_pattern", {"aspect_ratio": "16/9"}, "aspect_ratio"),
        ("replace_background", {"prompt": "x", "resolution": "500:1280"}, "resolution"),
        ("replace_background", {"prompt": "x", "resolution": "600:3000"}, "resolution"),
        ("background", {"prompt": "p" * 1025}, "prompt"),
        ("background", {"prompt": "a beach\x00"}, "prompt"),
        ("background", {"prompt": "\x1b[2Jclear the terminal"}, "prompt"),
        ("background", {"prompt": "next\u0085line"}, "prompt"),  # C1 NEL (at an end it is stripped)
        ("background", {"prompt": "   "}, "prompt"),
    ],
)
def test_bad_params_by_upload_fail_before_any_upstream_call(system, sample, operation, params, field):
    key = system.upload(f"{operation}/hostile/p.png", sample["image.png"], params)
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert (job["error"]["type"], job["error"]["field"]) == ("ParamValidationError", field)
    assert system.mock.count() == 0


# --- the API ----------------------------------------------------------------------------------


def _create(door, params, operation="background", source=None):
    body = {"operation": operation, "params": params, "input": source or {"key": "nothing/here.png"}}
    return door.post("/jobs", json=body)


def _refusal(answer, status: int, field: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["field"] == field, error
    assert error["message"]
    return error


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt": "p" * 100_000}, "params.prompt"),
        ({"prompt": "ok\x00"}, "params.prompt"),
        ({"prompt": "\x07\x08\x1b"}, "params.prompt"),
        ({"prompt": "\u009b31m"}, "params.prompt"),  # C1 CSI
        ({"prompt": "é" * 1024}, None),  # NFC: 1024 characters, accepted ...
        ({"prompt": unicodedata.normalize("NFD", "é" * 1024)}, "params.prompt"),  # ... NFD: 2048
        ({"prompt": "a", "batch_size": 10**30}, "params.batch_size"),
        ({"prompt": "a", "batch_size": 2.5}, "params.batch_size"),
        ({"prompt": "a", "batch_size": "NaN"}, "params.batch_size"),
        ({"prompt": ["a list"]}, "params.prompt"),
        ({"prompt": "a", "__proto__": {"admin": True}}, "params.__proto__"),
    ],
)
def test_api_refuses_hostile_params_naming_the_field(system, door, params, field):
    answer = _create(door, params)
    if field is None:
        # The params pass; what stops this request is the input that does not exist.
        _refusal(answer, 422, "input.key")
    else:
        error = _refusal(answer, 422, field)
        assert "p" * 100 not in error["message"]  # the refusal does not echo the input back
    assert system.mock.count() == 0


def test_api_refuses_a_lone_surrogate_in_json(system, door):
    body = b'{"operation": "background", "params": {"prompt": "\\ud800"}, "input": {"key": "k.png"}}'
    answer = door.post("/jobs", content=body, headers={"content-type": "application/json"})
    _refusal(answer, 422, "params.prompt")
    assert system.mock.count() == 0


@pytest.mark.parametrize(
    "body",
    [b"\xbb\xff not utf-8", b'{"operation": "background"', b"[]", b"null", b'"a string"', b"{" * 5000],
)
def test_api_refuses_a_body_that_is_no_json_object(system, door, body):
    answer = door.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text
    assert set(answer.json()["error"]) == {"type", "message", "field", "rule"}
    assert system.mock.count() == 0


def test_api_refuses_files_it_can_judge_by_size(system, door, sample):
    slot = door.post("/uploads", json={"filename": "z.png", "content_type": "image/png"}).json()
    assert httpx.put(slot["url"], content=b"", headers=slot["headers"]).status_code == 200
    error = _refusal(
        _create(door, {}, "face_enhance", {"upload_id": slot["upload_id"]}), 422, "input.upload_id"
    )
    assert error["rule"] == "not empty"
    big = sample["image.png"] + b"\x00" * (16 * 1024 * 1024)
    system.s3.put_object(Bucket=system.info.input_bucket, Key="uploads/big/b.png", Body=big)
    error = _refusal(_create(door, {}, "face_enhance", {"key": "uploads/big/b.png"}), 422, "input.key")
    assert error["rule"] == f"at most {16 * 1024 * 1024} bytes"
    assert system.mock.count() == 0


def test_api_upload_of_a_non_image_is_refused_before_any_job_or_upstream_call(system, door):
    slot = door.post("/uploads", json={"filename": "../../etc/passwd", "content_type": "image/png"}).json()
    assert slot["key"].endswith("/passwd")
    assert ".." not in slot["key"]
    assert (
        httpx.put(slot["url"], content=png_claiming(100_000, 100_000), headers=slot["headers"]).status_code
        == 200
    )
    before = door.get("/jobs").json()["jobs"]
    error = _refusal(
        _create(door, {}, "face_enhance", {"upload_id": slot["upload_id"]}), 422, "input.upload_id"
    )
    assert error["type"] == "ParamValidationError"
    assert door.get("/jobs").json()["jobs"] == before  # no job, not even a FAILED one
    assert system.mock.count() == 0


@pytest.mark.parametrize(
    "text",
    [
        "\u05e9\u05dc\u05d5\u05dd \u200fa beach\u200e",  # Hebrew with RTL/LTR marks
        "family \U0001f468\u200d\U0001f469\u200d\U0001f467 on a beach",  # zero-width joiners
        unicodedata.normalize("NFD", "café crème brûlée"),  # decomposed accents
    ],
)
def test_odd_but_legitimate_text_reaches_the_provider_unchanged(system, sample, text):
    key = system.upload("edit_image/unicode/u.png", sample["image.png"], {"prompt": text})
    execution, _ = system.run(key)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    sent = [e["fields"].get("prompt") for e in system.mock.journal(paid=True)]
    assert sent == [text]
