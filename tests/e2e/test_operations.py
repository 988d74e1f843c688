"""Every operation end to end from an S3 upload: the real state machine, handlers and layer.

GIVEN an image uploaded under ``<operation>/`` with params in its metadata
WHEN the S3 trigger starts the job and the workflow runs against the mock upstream
THEN the job SUCCEEDS, every result lies in the output bucket with the recorded sha256 and
a content type its bytes prove, the manifest lists them, and exactly one paid call was made.
"""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

# operation -> (sample, params, result kinds the manifest must hold, style used)
CASES = {
    "segmentation": ("product.jpg", {"output_type": 1}, {"image", "mask"}, "callback"),
    "background": ("foreground.png", {"prompt": "a quiet beach", "batch_size": 2}, {"images"}, "callback"),
    "idphoto": (
        "portrait.png",
        {"size": "300x400", "format": "jpg", "bg_color": "FFFFFF"},
        {"image"},
        "callback",
    ),
    "replace_background": ("product.jpg", {"prompt": "a marble table"}, {"image", "mask"}, "sync"),
    "redraw": ("image.png", {"upscale": 2}, {"image"}, "poll"),
    "vectorize": ("logo.jpg", {"color_count": 4}, {"vector"}, "poll"),
    "face_enhance": ("portrait.png", {}, {"image"}, "poll"),
    "seamless": ("image.png", {"direction": 0}, {"image", "grid", "image_1x"}, "poll"),
    "remove_fabric": ("image.png", {}, {"image"}, "poll"),
    "edit_image": ("image.png", {"prompt": "watercolour"}, {"image"}, "poll"),
    "extract_pattern": ("image.png", {"aspect_ratio": "1:1"}, {"images"}, "poll"),
    "remove_diamonds": ("image.png", {}, {"image"}, "poll"),
    "expand_image": ("image.png", {"expand_top": 0.2}, {"image"}, "poll"),
    "remove_watermark": ("image.png", {}, {"image"}, "poll"),
}


@pytest.mark.parametrize("operation", sorted(CASES))
def test_operation_from_s3_upload_succeeds_with_results_in_s3(system, sample, operation):
    name, params, kinds, style = CASES[operation]
    key = system.upload(f"{operation}/in/{name}", sample[name], params)

    execution, job = system.run(key)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert job["status"] == "SUCCEEDED"
    assert job["style"] == style
    manifest = json.loads(system.output(job["manifest"]["key"]))
    assert {o["kind"] for o in manifest["outputs"]} >= kinds
    for out in manifest["outputs"]:
        data = system.output(out["key"])
        assert hashlib.sha256(data).hexdigest() == out["sha256"]
        assert len(data) == out["size"]
        head = system.s3.head_object(Bucket=system.info.output_bucket, Key=out["key"])
        assert head["ContentType"] == out["content_type"]
        if out["content_type"].startswith("image/"):
            with Image.open(io.BytesIO(data)) as img:
                assert img.size == (out["width"], out["height"])
        else:
            assert data.startswith(b"%!PS-Adobe")
    assert system.mock.count(paid=True) == 1


def test_idphoto_result_has_exactly_the_requested_size(system, sample):
    key = system.upload("idphoto/in/p.png", sample["portrait.png"], {"size": "320x480", "format": "jpg"})
    _, job = system.run(key)
    (out,) = job["manifest"]["outputs"]
    assert (out["width"], out["height"]) == (320, 480)
    assert out["content_type"] == "image/jpeg"


def test_redraw_result_is_input_size_times_upscale(system, sample):
    with Image.open(io.BytesIO(sample["image.png"])) as img:
        width, height = img.size
    key = system.upload("redraw/in/i.png", sample["image.png"], {"upscale": 2})
    _, job = system.run(key)
    (out,) = job["manifest"]["outputs"]
    assert (out["width"], out["height"]) == (width * 2, height * 2)


@pytest.mark.parametrize("mode", ["sync", "poll"])
def test_taskpic_runs_in_the_style_asked_for(system, sample, mode):
    key = system.upload("segmentation/in/p.jpg", sample["product.jpg"], {}, mode=mode)
    execution, job = system.run(key)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert job["style"] == mode
    submits = system.mock.journal(route="/task/pic/segmentation")
    assert len(submits) == 1
