"""Rendering off the event loop: status answers while a heavy render runs, sync caps, resets.

Tests synchronise on the mock's own states (a render picked up by a worker, renders held or
delivered, sync submits waiting), never on sleeps.
"""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer sk-xxxx"}


def heavy_png(size=(3000, 2400)) -> bytes:
    """A large photo-like source: a segmentation of it takes the worker seconds, not millis."""
    image = Image.new("RGB", size, (235, 235, 235))
    draw = ImageDraw.Draw(image)
    for i in range(0, size[0], 150):
        draw.ellipse((i, i % size[1], i + 900, i % size[1] + 700), fill=(i % 255, 80, 160))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def segment(client, content, *, data=None, headers=None):
    return client.post(
        "/task/pic/segmentation",
        headers={**AUTH, **(headers or {})},
        data=data or {},
        files={"image_file": ("big.png", content, "image/png")},
    ).json()["data"]


def poll(client, task_id):
    return client.get(f"/task/{task_id}", headers=AUTH).json()["data"]


def test_status_answers_arrive_while_a_heavy_render_is_running(client, mock_upstream, png):
    # GIVEN a finished task of each polled provider
    finished = segment(client, png((64, 64)), data={"sync": "1"})
    assert finished["state"] == 1
    hd_task = client.post(
        "/api/submit_face_enhance_task",
        data={"user_key": "test-key"},
        files={"input_image": ("f.png", png((64, 64)), "image/png")},
    ).json()["task_id"]
    assert (
        client.post("/api/check_task_status", data={"user_key": "test-key", "task_id": hd_task}).json()[
            "status"
        ]
        == "Completed"
    )
    # AND a heavy segmentation, kept in flight (held) once its worker has it
    mock_upstream.hold_renders()
    started = mock_upstream.renders()["started_total"]
    heavy = segment(client, heavy_png(), headers=mock_upstream.scenario_header(polls=3))
    assert heavy["state"] == 0  # the submit answered at once: the task is queued
    pool = mock_upstream.wait_renders(started=started + 1)
    assert pool["running"] == 1

    # WHEN status checks come for the finished tasks and for the heavy one
    done = poll(client, finished["task_id"])
    hd_done = client.post("/api/check_task_status", data={"user_key": "test-key", "task_id": hd_task}).json()
    running = poll(client, heavy["task_id"])

    # THEN all three are answered, while the heavy render is still in flight
    assert (done["state"], hd_done["status"]) == (1, "Completed")
    assert running["state"] not in (1, -1)
    assert not running["image"]
    pool = mock_upstream.renders()
    assert (pool["running"], pool["started"]) == (1, 1)
    assert mock_upstream.task(heavy["task_id"])["rendered"] is False
    assert mock_upstream.task(heavy["task_id"])["ended_at"] is None  # nothing offered yet

    # AND once released, the render ends the task with its result
    mock_upstream.release_renders()
    mock_upstream.wait_renders(idle=True)
    assert mock_upstream.task(heavy["task_id"])["rendered"] is True
    # polls=3: three checks in all see it running (one was made during the render)
    states = [poll(client, heavy["task_id"])["state"] for _ in range(3)]
    assert states[-1] == 1
    assert 1 not in states[:-1]
    # the control API says when the result was first offered (the chaos bench's deadline test)
    task = mock_upstream.task(heavy["task_id"])
    assert task["ended_at"] is not None
    assert task["ended_at"] >= task["created_at"]


def test_sync_submit_waits_for_a_held_render_and_answers_with_its_result(client, mock_upstream, png):
    mock_upstream.hold_renders()
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(segment(client, png((80, 60)), data={"sync": "1"}))
    )
    worker.start()
    try:
        (task_id,) = mock_upstream.wait_sync_submits(1)
        mock_upstream.wait_renders(started=mock_upstream.renders()["started_total"])
        assert answers == []
    finally:
        mock_upstream.release_renders()
        worker.join(30)
    assert (answers[0]["task_id"], answers[0]["state"]) == (task_id, 1)
    assert answers[0]["image"]


def test_tencent_past_the_cap_is_the_documents_timeout_and_unpaid(tencent, mock_upstream):
    mock_upstream.configure(sync_wait_seconds=0.3)
    mock_upstream.hold_renders()
    try:
        error = tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"})["Error"]
    finally:
        mock_upstream.release_renders()
    assert error == {"Code": "FailedOperation.RequestTimeout", "Message": "后端服务超时。"}
    assert mock_upstream.count(paid=True) == 0
    assert mock_upstream.account()["tencent_balance"] == 1000


def test_a_due_task_whose_render_outlasts_the_wait_answers_running(client, mock_upstream, png):
    mock_upstream.configure(status_render_wait_seconds=0.2)
    mock_upstream.hold_renders()
    task = segment(client, png((64, 64)))
    assert poll(client, task["task_id"])["state"] not in (1, -1)
    mock_upstream.release_renders()
    mock_upstream.wait_renders(idle=True)
    assert poll(client, task["task_id"])["state"] == 1


def test_reset_ends_a_render_left_running(client, mock_upstream, png):
    mock_upstream.hold_renders()
    started = mock_upstream.renders()["started_total"]
    segment(client, heavy_png((1600, 1200)))
    mock_upstream.wait_renders(started=started + 1)

    mock_upstream.reset()

    assert mock_upstream.renders()["running"] == 0
    assert segment(client, png((64, 64)), data={"sync": "1"})["state"] == 1  # the pool works again
