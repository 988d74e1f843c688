"""task/pic API: submits, polling through the states, outputs, failures and errors."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer sk-xxxx"}


def submit(client, kind, data, files=None, headers=None):
    return client.post(f"/task/pic/{kind}", headers={**AUTH, **(headers or {})}, data=data, files=files)


def url_form(url):
    return {"image_url": (None, url)}


def fetch_image(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return Image.open(io.BytesIO(response.content)), response


@pytest.mark.parametrize(("output_type", "has_image", "has_mask"), [(1, True, True), (3, False, True)])
def test_segmentation_output_types_return_mask(client, sample, output_type, has_image, has_mask):
    response = submit(
        client,
        "segmentation",
        {"sync": "1", "output_type": str(output_type)},
        {"image_file": ("a.png", sample("image.png"), "image/png")},
    )
    data = response.json()["data"]
    assert bool(data["image"]) is has_image
    mask, _ = fetch_image(client, data["mask"])
    assert mask.mode == "L"
    assert set(mask.getdata()) <= {0, 255}


def test_segmentation_jpg_on_bg_color_with_crop(client, sample):
    response = submit(
        client,
        "segmentation",
        {"sync": "1", "format": "jpg", "bg_color": "00ff00", "crop": "1"},
        {"image_file": ("a.png", sample("image.png"), "image/png")},
    )
    data = response.json()["data"]
    image, raw = fetch_image(client, data["image"])
    assert raw.headers["content-type"] == "image/jpeg"
    assert image.format == "JPEG"
    rect = data["foreground_rect"]
    assert image.size == (rect["width"], rect["height"]) == (data["image_width"], data["image_height"])
    r, g, b = image.getpixel((1, 1))
    assert g > 200
    assert r < 60
    assert b < 60


def test_outputs_are_deterministic(client, mock_upstream, sample):
    def run():
        data = submit(
            client,
            "segmentation",
            {"sync": "1", "output_type": "1"},
            {"image_file": ("a.png", sample("portrait.png"), "image/png")},
        ).json()["data"]
        return [hashlib.sha256(client.get(data[k]).content).hexdigest() for k in ("image", "mask")]

    assert run() == run()
    served = {e["result_sha256"] for e in mock_upstream.journal(provider="files")}
    assert set(run()) <= served  # the journal records the checksum of each served file


def test_background_answers_one_image_and_charges_the_batch(client, mock_upstream):
    # Document 000: one `image` in the answer, "价格按数量翻倍" (the price counts batch_size).
    before = mock_upstream.account()["taskpic_balance"]
    response = submit(
        client,
        "background",
        {"batch_size": "3", "prompt": "beach", "sync": "1"},
        url_form("https://example.com/foreground.png"),
    )
    data = response.json()["data"]
    assert "images" not in data
    image, _ = fetch_image(client, data["image"])
    assert image.format == "PNG"
    assert mock_upstream.account()["taskpic_balance"] == before - 3


def test_async_task_walks_the_states_after_n_polls(client, mock_upstream):
    mock_upstream.set_scenario(next=1, polls=4)
    first = submit(client, "segmentation", {}, url_form("https://example.com/image.png")).json()["data"]
    assert first["image"] == ""
    polls = [client.get(f"/task/{first['task_id']}", headers=AUTH).json()["data"] for _ in range(5)]
    # Four checks see it running (no documented end state, progress never going back), the fifth ends it.
    assert [p["state"] == 1 for p in polls] == [False, False, False, False, True]
    assert all(p["state"] >= 0 for p in polls)
    progress = [p["progress"] for p in polls]
    assert progress == sorted(progress)
    assert progress[-1] == 100
    # The alias path answers the same task.
    assert client.get(f"/task/pic/{first['task_id']}", headers=AUTH).json()["data"]["state"] == 1


def test_async_task_ends_after_mock_seconds(client, mock_upstream):
    headers = mock_upstream.scenario_header(seconds=30)
    task_id = submit(client, "segmentation", {}, url_form("https://example.com/image.png"), headers).json()[
        "data"
    ]["task_id"]
    poll = lambda: client.get(f"/task/{task_id}", headers=AUTH).json()["data"]  # noqa: E731
    assert poll()["state"] != 1
    mock_upstream.advance_clock(29)
    assert poll()["state"] != 1
    mock_upstream.advance_clock(1)
    done = poll()
    assert done["state"] == 1
    assert done["completed_at"] - done["created_at"] == 30


def test_sync_submit_waits_for_the_result_and_answers_with_it(client, mock_upstream):
    # Document 001: sync 1 = "等待结果就绪" (wait until the result is ready).
    # GIVEN a 30-second task submitted with sync=1, in a thread
    answers = []
    headers = mock_upstream.scenario_header(seconds=30)
    worker = threading.Thread(
        target=lambda: answers.append(
            submit(client, "segmentation", {"sync": "1"}, url_form("https://example.com/image.png"), headers)
        )
    )
    worker.start()
    try:
        # WHEN the mock says the submit is waiting, and 30 s of mock time pass
        (task_id,) = mock_upstream.wait_sync_submits(1)
        assert answers == []
        mock_upstream.advance_clock(30)
    finally:
        worker.join(30)
    # THEN the sync answer is the finished task, with its result
    data = answers[0].json()["data"]
    assert (data["task_id"], data["state"], data["state_detail"]) == (task_id, 1, "Complete")
    assert data["completed_at"] - data["created_at"] == 30
    image, _ = fetch_image(client, data["image"])
    assert image.size == (data["image_width"], data["image_height"])


def test_sync_submit_past_its_cap_answers_the_task_as_it_stands(client, mock_upstream):
    mock_upstream.configure(sync_wait_seconds=0.2)
    headers = mock_upstream.scenario_header(seconds=30)
    data = submit(
        client, "segmentation", {"sync": "1"}, url_form("https://example.com/image.png"), headers
    ).json()["data"]
    assert data["state"] not in (1, -1)
    assert (data["image"], data["foreground_rect"]["width"]) == ("", 0)
    assert mock_upstream.wait_sync_submits(0) == []


@pytest.mark.parametrize("code", [-1, -2, -8])
def test_scenario_failure_codes(client, mock_upstream, code):
    mock_upstream.set_scenario(account="default", outcome="failure", code=code)
    data = submit(client, "segmentation", {"sync": "1"}, url_form("https://example.com/image.png")).json()[
        "data"
    ]
    assert data["state"] == code
    assert data["state_detail"] == "Failed"
    assert data["err_info"]
    assert data["image"] == ""


def test_download_failure_is_state_minus_3(client, mock_upstream):
    data = submit(
        client, "segmentation", {"sync": "1"}, url_form(mock_upstream.url("/files/nope/missing.png"))
    ).json()["data"]
    assert data["state"] == -3


def test_invalid_image_is_state_minus_7(client):
    data = submit(
        client, "segmentation", {"sync": "1"}, {"image_file": ("a.png", b"not an image", "image/png")}
    ).json()["data"]
    assert data["state"] == -7


def test_oversized_image_is_state_minus_5(client, mock_upstream, sample):
    mock_upstream.configure(taskpic_max_image_bytes=1000)
    data = submit(
        client, "segmentation", {"sync": "1"}, {"image_file": ("a.png", sample("image.png"), "image/png")}
    ).json()["data"]
    assert data["state"] == -5


def test_fetch_over_loopback_http(client, mock_upstream):
    # GIVEN an image served over HTTP (the mock's own file route stands in for S3)
    data = submit(client, "segmentation", {"sync": "1"}, url_form("https://example.com/image.png")).json()[
        "data"
    ]
    again = submit(client, "segmentation", {"sync": "1"}, url_form(data["image"])).json()["data"]
    assert again["state"] == 1


@pytest.mark.parametrize(
    ("data", "files", "status"),
    [
        ({}, None, 400),  # no image
        ({"image_url": "https://example.com/a.png"}, {"image_file": ("a", b"x")}, 400),  # both
        ({"image_url": "ftp://x/a.png"}, None, 400),
        ({"image_url": "https://example.com/a.png", "output_type": "4"}, None, 400),
        ({"image_url": "https://example.com/a.png", "type": "car"}, None, 400),
        ({"image_url": "https://example.com/a.png", "format": "gif"}, None, 400),
        ({"image_url": "https://example.com/a.png", "bg_color": "zzzzzz"}, None, 400),
        ({"image_url": "https://example.com/a.png", "sync": "2"}, None, 400),
        ({"image_url": "https://example.com/a.png", "callback_url": "nope"}, None, 400),
    ],
)
def test_segmentation_bad_params_are_400(client, data, files, status):
    response = client.post("/task/pic/segmentation", headers=AUTH, data=data, files=files)
    assert response.status_code == status
    assert response.json()["status"] == status
    assert response.json()["message"]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("idphoto", {"size": "50x400"}),
        ("idphoto", {"size": "300*400"}),
        ("idphoto", {}),
        ("background", {"prompt": "x", "batch_size": "5"}),
        ("background", {"prompt": ""}),
        ("background", {"prompt": "x" * 1025}),
    ],
)
def test_idphoto_and_background_bad_params_are_400(client, kind, data):
    response = client.post(
        f"/task/pic/{kind}", headers=AUTH, data={"image_url": "https://example.com/a.png", **data}
    )
    assert response.status_code == 400
    assert response.json()["status"] == 400


def test_bad_token_is_401(client):
    response = client.post(
        "/task/pic/segmentation",
        headers={"Authorization": "Bearer nope"},
        data={"image_url": "https://example.com/a.png"},
    )
    assert response.status_code == 401
    assert response.json()["status"] == 401
    assert client.get("/task/abc").status_code == 401


def test_unknown_or_foreign_task_is_404(client, mock_upstream):
    unknown = client.get("/task/does-not-exist", headers=AUTH).json()
    assert unknown["status"] == 404
    assert set(unknown) == {"status", "message"}
    mock_upstream.set_account("other", token="sk-other")
    task_id = submit(client, "segmentation", {}, url_form("https://example.com/a.png")).json()["data"][
        "task_id"
    ]
    assert client.get(f"/task/{task_id}", headers={"Authorization": "Bearer sk-other"}).status_code == 404


def test_out_of_balance_is_402_and_not_charged(client, mock_upstream):
    mock_upstream.set_account("default", taskpic_balance=1)
    assert submit(client, "segmentation", {}, url_form("https://example.com/a.png")).status_code == 200
    response = submit(client, "segmentation", {}, url_form("https://example.com/a.png"))
    assert response.status_code == 402
    assert response.json()["status"] == 402
    assert mock_upstream.account()["taskpic_balance"] == 0
    assert mock_upstream.count(route="/task/pic/segmentation", paid=True) == 1


def test_result_urls_expire_after_an_hour_of_mock_time(client, mock_upstream):
    data = submit(client, "segmentation", {"sync": "1"}, url_form("https://example.com/a.png")).json()["data"]
    mock_upstream.advance_clock(3599)
    assert client.get(data["image"]).status_code == 200
    mock_upstream.advance_clock(1)
    expired = client.get(data["image"])
    assert expired.status_code == 403
    assert b"AccessDenied" in expired.content
    assert client.get(mock_upstream.url("/files/0000/none.png")).status_code == 404


def test_seed_makes_task_ids_reproducible(client, mock_upstream):
    def first_id():
        mock_upstream.set_seed(7)
        return submit(client, "segmentation", {}, url_form("https://example.com/a.png")).json()["data"][
            "task_id"
        ]

    a, b = first_id(), first_id()
    assert a == b
    assert len(a) == 36
    assert a[14] == "4"
