"""The task/pic API (documents 000-002) checked against the documents themselves.

Every expectation here is read out of the seed documents at test time: the example requests
are sent as written, their answers compared field by field with the example answers, and the
parameter tables' values, ranges and choices tried. Nothing is copied from the mock's code.
"""

from __future__ import annotations

import io
import re

import pytest
from documents import (
    TASKPIC_DOCS,
    declared_extras,
    default_choice,
    enumerated,
    shape_differences,
    taskpic,
    text,
)
from PIL import Image

pytestmark = pytest.mark.integration

KINDS = sorted(TASKPIC_DOCS)


def token(kind: str) -> str:
    match = re.search(r'Authorization: Bearer (\S+?)"', text(TASKPIC_DOCS[kind]))
    assert match is not None
    return match[1]


def post(client, kind, fields, files=None, auth=None):
    """As the documents' Python example sends it: the URL as a (None, value) part, the rest as data."""
    doc = taskpic(kind)
    data = dict(fields)
    parts = dict(files or {})
    if "image_url" in data:
        parts["image_url"] = (None, data.pop("image_url"))
    headers = {"Authorization": f"Bearer {auth or token(kind)}"}
    return client.post(doc.path, headers=headers, data=data, files=parts)


def example(kind: str, **changes: str | None) -> dict[str, str]:
    fields = dict(taskpic(kind).example_request)
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def uuid_shape(value: str) -> str:
    return re.sub(r"[0-9a-f]", "h", value)


def image_at(client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


# ---- the example requests give the example answers ---------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_example_request_gets_the_example_answer_field_by_field(client, kind):
    doc = taskpic(kind)
    response = post(client, kind, doc.example_request)

    assert response.status_code == 200
    answer = response.json()
    assert shape_differences(doc.example_answer, answer) == []
    data, documented = answer["data"], doc.example_answer["data"]
    assert answer["status"] == doc.example_answer["status"]
    # What the example request decides, the example answer shows: these must be equal.
    for name in ("state", "state_detail", "progress", "return_type", "result_type", "type", "output_type"):
        assert data[name] == documented[name], name
    assert data["err_info"] == documented["err_info"]
    assert uuid_shape(data["task_id"]) == uuid_shape(documented["task_id"])
    assert documented["created_at"] <= documented["processed_at"] <= documented["completed_at"]
    assert data["created_at"] <= data["processed_at"] <= data["completed_at"]
    # The image is there, at the size the answer says, with the foreground inside it.
    image = image_at(client, data["image"])
    assert image.size == (data["image_width"], data["image_height"])
    rect = data["foreground_rect"]
    assert min(rect.values()) >= 0
    assert rect["x"] + rect["width"] <= data["image_width"]
    assert rect["y"] + rect["height"] <= data["image_height"]


def test_idphoto_example_is_exactly_the_documented_size(client):
    doc = taskpic("idphoto")
    width, height = (int(v) for v in doc.example_request["size"].split("x"))
    data = post(client, "idphoto", doc.example_request).json()["data"]
    assert (data["image_width"], data["image_height"]) == (
        doc.example_answer["data"]["image_width"],
        doc.example_answer["data"]["image_height"],
    )
    assert image_at(client, data["image"]).size == (width, height)


@pytest.mark.parametrize("kind", KINDS)
def test_async_answer_has_the_documented_fields_and_no_result_yet(client, mock_upstream, kind):
    # sync: "0=异步(默认)": without it the answer comes before the result.
    doc = taskpic(kind)
    async_value = default_choice(doc.params["sync"].description)
    assert enumerated(doc.params["sync"].description)[async_value] == "异步"
    mock_upstream.hold_renders()
    data = post(client, kind, example(kind, sync=async_value)).json()["data"]
    assert shape_differences(doc.example_answer["data"], data) == []
    assert data["state"] != doc.example_answer["data"]["state"]
    # Nothing of the finished task yet: no image, box, size or completion time.
    assert not data["image"]
    assert not any(data["foreground_rect"].values())
    assert (data["image_width"], data["image_height"], data["completed_at"]) == (0, 0, 0)
    mock_upstream.release_renders()


@pytest.mark.parametrize("kind", KINDS)
def test_sync_is_asynchronous_by_default(client, mock_upstream, kind):
    mock_upstream.hold_renders()
    data = post(client, kind, example(kind, sync=None)).json()["data"]
    assert data["state"] != taskpic(kind).example_answer["data"]["state"]
    mock_upstream.release_renders()


# ---- the parameter tables ------------------------------------------------------------------
def test_every_documented_parameter_is_in_the_table(client):
    # The tables are what the mock is checked against: they must have been read.
    assert set(taskpic("segmentation").params) >= {"type", "output_type", "crop", "format", "bg_color"}
    assert set(taskpic("idphoto").params) >= {"size", "format", "bg_color"}
    assert set(taskpic("background").params) >= {"batch_size", "prompt"}


ENUMERATED = [
    (kind, name)
    for kind in KINDS
    for name, param in taskpic(kind).params.items()
    if name != "sync" and enumerated(param.description)
]


@pytest.mark.parametrize(("kind", "name"), ENUMERATED)
def test_each_documented_choice_is_accepted_and_others_refused(client, kind, name):
    choices = enumerated(taskpic(kind).params[name].description)
    for value in choices:
        response = post(client, kind, example(kind, **{name: value}))
        assert response.status_code == 200, (name, value, response.text)
        assert response.json()["data"]["state"] == 1
    outside = (
        str(max(int(v) for v in choices) + 1) if all(v.isdigit() for v in choices) else "x" + min(choices)
    )
    refused = post(client, kind, example(kind, **{name: outside}))
    assert refused.status_code != 200 or refused.json().get("status") != 200


def test_output_type_gives_image_mask_or_both(client):
    # "1=图片+蒙版、2=仅图片、3=仅蒙版"; the mask's field is declared in the README (not documented).
    choices = enumerated(taskpic("segmentation").params["output_type"].description)
    extras = declared_extras()
    assert "data.mask" in extras
    for value, meaning in choices.items():
        data = post(client, "segmentation", example("segmentation", output_type=value)).json()["data"]
        has_image, has_mask = "图片" in meaning, "蒙版" in meaning
        assert bool(data["image"]) is has_image, meaning
        assert ("mask" in data) is has_mask, meaning
        if has_mask:
            assert image_at(client, data["mask"]).mode == "L"
        others = shape_differences(
            taskpic("segmentation").example_answer["data"], data, optional=frozenset({"mask"})
        )
        assert others == []


def test_format_png_is_transparent_and_jpg_white(client):
    choices = enumerated(taskpic("segmentation").params["format"].description)
    assert choices["png"] == "透明图"
    assert choices["jpg"] == "白底图"
    png = image_at(
        client, post(client, "segmentation", example("segmentation", format="png")).json()["data"]["image"]
    )
    assert png.format == "PNG"
    assert png.mode == "RGBA"
    assert png.getpixel((0, 0))[3] == 0
    jpg = image_at(
        client, post(client, "segmentation", example("segmentation", format="jpg")).json()["data"]["image"]
    )
    assert jpg.format == "JPEG"
    assert all(channel > 240 for channel in jpg.getpixel((0, 0)))


def test_bg_color_colours_a_jpg(client):
    description = taskpic("segmentation").params["bg_color"].description
    (colour,) = re.findall(r"例如 ([0-9a-fA-F]{6})", description)
    assert colour.lower() == "ffffff"
    green = image_at(
        client,
        post(client, "segmentation", example("segmentation", format="jpg", bg_color="00ff00")).json()["data"][
            "image"
        ],
    )
    red, g, blue = green.getpixel((0, 0))
    assert g > 200
    assert red < 60
    assert blue < 60


def test_crop_zero_keeps_the_source_size_and_one_crops_to_the_subject(client):
    choices = enumerated(taskpic("segmentation").params["crop"].description)
    whole = post(client, "segmentation", example("segmentation", crop="0")).json()["data"]
    cropped = post(client, "segmentation", example("segmentation", crop="1")).json()["data"]
    assert "原图大小" in choices["0"]
    assert "裁剪" in choices["1"]
    rect = cropped["foreground_rect"]
    assert (cropped["image_width"], cropped["image_height"]) == (rect["width"], rect["height"])
    assert cropped["image_width"] < whole["image_width"]


def test_idphoto_size_range_from_the_table(client):
    description = taskpic("idphoto").params["size"].description
    low, high = (int(v) for v in re.search(r"(\d+)~(\d+)", description).groups())
    for size in (f"{low}x{high}", f"{high}x{low}"):
        data = post(client, "idphoto", example("idphoto", size=size)).json()["data"]
        assert image_at(client, data["image"]).size == tuple(int(v) for v in size.split("x"))
    for size in (f"{low - 1}x{low}", f"{low}x{high + 1}", f"{low}*{low}"):
        assert post(client, "idphoto", example("idphoto", size=size)).status_code != 200


def test_background_prompt_and_batch_size_limits_from_the_table(client, mock_upstream):
    params = taskpic("background").params
    longest = int(re.search(r"最长 (\d+) 字符", params["prompt"].description)[1])
    most = int(re.search(r"最大 (\d+)", params["batch_size"].description)[1])
    assert post(client, "background", example("background", prompt="p" * longest)).status_code == 200
    assert post(client, "background", example("background", prompt="p" * (longest + 1))).status_code != 200
    before = mock_upstream.account()["taskpic_balance"]
    assert post(client, "background", example("background", batch_size=str(most))).status_code == 200
    # "价格按数量翻倍": the price counts the images.
    assert mock_upstream.account()["taskpic_balance"] == before - most
    assert post(client, "background", example("background", batch_size=str(most + 1))).status_code != 200


@pytest.mark.parametrize("name", [n for n, p in taskpic("background").params.items() if p.required])
def test_background_required_parameters_are_required(client, name):
    assert post(client, "background", example("background", **{name: None})).status_code != 200


@pytest.mark.parametrize("kind", KINDS)
def test_image_file_or_image_url_exactly_one(client, sample, kind):
    # "与 image_url 二选一": one of the two.
    doc = taskpic(kind)
    assert "二选一" in doc.params["image_file"].description
    upload = {"image_file": ("a.png", sample("image.png"), "image/png")}
    assert post(client, kind, example(kind, image_url=None), upload).status_code == 200
    assert post(client, kind, example(kind, image_url=None)).status_code != 200
    both = post(client, kind, example(kind), upload)
    assert both.status_code != 200


@pytest.mark.parametrize("kind", KINDS)
def test_bearer_token_is_checked(client, mock_upstream, kind):
    response = post(client, kind, example(kind), auth="sk-not-the-documented-one")
    assert response.status_code != 200
    assert mock_upstream.count(paid=True) == 0
