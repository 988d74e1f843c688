"""HD redraw vendor: the ten submits, check_task_status, the 3 s cache, balances and errors."""

from __future__ import annotations

import io

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

KEY = "test-key"
REDRAW = {
    "user_key": KEY, "sdxl_model_dropdown": "通用模型", "style_dropdown": "通用风格", "prompt": "",
    "neg_prompt": "", "upscale": 1.0, "s_noise": 1.003, "steps": 30, "high_fidelity": False,
    "strong_inpaint": False, "vector_switch": False, "color_count": 5, "auto_generate_prompt": False,
}  # fmt: skip


@pytest.fixture
def hd(client, png):
    image = png((200, 100))

    def submit(route, data=None, content=image):
        return client.post(
            f"/api/{route}",
            data={"user_key": KEY, **(data or {})},
            files={"input_image": ("in.png", content, "image/png")},
        ).json()

    def status(task_id, key=KEY):
        return client.post("/api/check_task_status", data={"user_key": key, "task_id": task_id}).json()

    def run(route, data=None):
        submitted = submit(route, data)
        assert submitted["err_code"] == 0, submitted
        return status(submitted["task_id"])

    submit.status, submit.run = status, run
    return submit


def open_url(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return response


def size_of(client, url):
    return Image.open(io.BytesIO(open_url(client, url).content)).size


def test_submit_task_upscale_vector_and_generated_prompt(hd, client):
    status = hd.run(
        "submit_task", {**REDRAW, "upscale": 2.5, "vector_switch": True, "auto_generate_prompt": True}
    )
    assert size_of(client, status["images_url"]) == (500, 250)
    eps = open_url(client, status["vector_url"])
    assert eps.content.startswith(b"%!PS-Adobe-3.0 EPSF-3.0")
    assert b"%%BoundingBox: 0 0 200 100" in eps.content
    assert status["generated_prompt"]


def test_upscale_is_capped_at_max_side(hd, client, mock_upstream):
    mock_upstream.configure(max_output_side=300)
    status = hd.run("submit_task", {**REDRAW, "upscale": 8})
    assert size_of(client, status["images_url"]) == (300, 150)


def test_vector_task_returns_eps(hd, client):
    status = hd.run("submit_vector_task", {"color_count": 3})
    assert open_url(client, status["vector_url"]).content.startswith(b"%!PS-Adobe-3.0 EPSF-3.0")
    assert size_of(client, status["images_url"]) == (200, 100)


@pytest.mark.parametrize(("direction", "grid"), [(0, (2, 2)), (1, (1, 2)), (2, (2, 1))])
def test_seamless_grid_and_1x_image(hd, client, direction, grid):
    status = hd.run("submit_seamless_task", {"fit": 0.3, "direction": direction, "expand_top": 0.2})
    one = size_of(client, status["images_url_1m"])
    assert one == (200, 120)  # 20 % taller
    assert size_of(client, status["grid_url"]) == (one[0] * grid[0], one[1] * grid[1])
    assert size_of(client, status["images_url"]) == (400, 240)


def test_extract_pattern_returns_two_images_like_the_example(hd, client):
    status = hd.run("submit_extract_pattern_task", {"aspect_ratio": "16:9"})
    assert status["images_urls"][0] == status["images_url"]
    assert len(status["images_urls"]) == 2
    assert status["vector_url"] == ""
    assert status["grid_url"] == ""
    assert status["generated_prompt"]
    w, h = size_of(client, status["images_urls"][1])
    assert abs(w / h - 16 / 9) < 0.02


def test_expand_image_grows_canvas(hd, client):
    status = hd.run("submit_expand_image_task", {"expand_left": 0.1, "expand_right": 0.3, "prompt": "x"})
    assert size_of(client, status["images_url"]) == (280, 100)


@pytest.mark.parametrize(
    "route",
    ["submit_face_enhance_task", "submit_remove_fabric_task", "submit_remove_diamonds_task",
     "submit_remove_watermark_task"],
)  # fmt: skip
def test_simple_routes_keep_size(hd, client, route):
    assert size_of(client, hd.run(route)["images_url"]) == (200, 100)


def test_edit_image_depends_on_prompt(hd, client):
    a = open_url(
        client, hd.run("submit_edit_image_task", {"prompt": "水彩", "model_version": "v2"})["images_url"]
    )
    b = open_url(client, hd.run("submit_edit_image_task", {"prompt": "油画"})["images_url"])
    assert a.content != b.content


def test_rejected_submits_are_free(hd, mock_upstream):
    # (The documented ranges and texts are tried by test_doc_hdredraw.py.)
    assert hd("submit_task", {**REDRAW, "upscale": 9})["err_code"] == 1
    assert hd("submit_edit_image_task", {})["err_code"] == 1
    assert mock_upstream.account()["hd_remaining_count"] == 1000
    assert mock_upstream.count(paid=True) == 0


def test_file_over_16mb_and_bad_image(hd, mock_upstream, png):
    assert hd("submit_remove_watermark_task", content=b"garbage")["err_msg"].startswith("任务提交失败:")
    mock_upstream.configure(hd_max_file_bytes=100)
    assert hd("submit_remove_fabric_task") == {"err_code": 1, "err_msg": "文件大小不能超过16MB"}


def test_balance_count_then_money_then_exhausted(hd, mock_upstream):
    mock_upstream.set_account("default", hd_remaining_count=1, hd_remaining_money=3)
    first = hd("submit_task", REDRAW)
    assert (first["remaining_count"], first["remaining_money"]) == (0, 3)
    second = hd("submit_task", REDRAW)  # price 3 from the money
    assert (second["remaining_count"], second["remaining_money"]) == (0, 0)
    assert hd("submit_task", REDRAW) == {"err_code": 1, "err_msg": "账户剩余次数不足"}
    assert mock_upstream.count(provider="hd", paid=True) == 2


def test_status_progress_and_three_second_cache(hd, mock_upstream):
    mock_upstream.set_scenario(next=1, polls=3)
    task_id = hd("submit_face_enhance_task")["task_id"]
    seen = []
    for _ in range(4):
        seen.append(hd.status(task_id)["status"])
        assert hd.status(task_id)["status"] == seen[-1]  # within 3 s: the cached answer
        mock_upstream.advance_clock(3)
    assert seen[-1] == "Completed"
    assert not {"Completed", "Failed", None} & set(seen[:-1])  # running: none of the end states
    assert mock_upstream.count(route="/api/check_task_status") == 8
    assert sum(1 for e in mock_upstream.journal(route="/api/check_task_status") if e.get("cached")) == 4


def test_failed_outcome(hd, mock_upstream):
    mock_upstream.set_scenario(account="default", outcome="failure", seconds=10)
    task_id = hd("submit_face_enhance_task")["task_id"]
    assert hd.status(task_id)["status"] not in ("Completed", "Failed", None)
    mock_upstream.advance_clock(10)
    assert hd.status(task_id) == {"err_code": 0, "status": "Failed"}


def test_hd_ids_are_not_uuids(hd):
    task_id = hd("submit_face_enhance_task")["task_id"]
    assert len(task_id) == 24
    assert "-" not in task_id
