"""Mock upstream throughput over loopback: status checks/s and submits/s with one server worker.

Starts the mock on a background thread (one uvicorn worker), then hammers it from a few client
threads with keep-alive connections. Goal: >= 1,000 status checks/s, so the mock never limits a
load test. The last line is the summary; the exit code is non-zero if the goal is missed.
"""

from __future__ import annotations

import io
import sys
import threading
import time

import httpx
from PIL import Image

from mock_upstream.server import ThreadedServer
from mock_upstream.testing import MockUpstream

GOAL_STATUS_PER_S = 1000.0
DURATION_S = 2.0
THREADS = 4


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def hammer(base_url: str, make_request, duration: float) -> float:
    """Requests/s summed over THREADS keep-alive clients during `duration` seconds."""
    counts = [0] * THREADS
    start = threading.Barrier(THREADS + 1)

    def worker(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
            start.wait()
            deadline = time.perf_counter() + duration
            while time.perf_counter() < deadline:
                response = make_request(client)
                assert response.status_code == 200, response.text
                counts[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def main() -> int:
    image = small_png()
    with ThreadedServer() as server:
        control = MockUpstream(server.base_url)
        control.configure(hd_status_cache_seconds=0)  # measure real status work, not the cache
        with httpx.Client(base_url=server.base_url, timeout=10.0, trust_env=False) as client:
            hd_task = client.post(
                "/api/submit_face_enhance_task",
                data={"user_key": "test-key"},
                files={"input_image": ("b.png", image, "image/png")},
            ).json()["task_id"]
            pic_task = client.post(
                "/task/pic/segmentation",
                headers={"Authorization": "Bearer sk-xxxx"},
                files={"image_file": ("b.png", image, "image/png")},
            ).json()["data"]["task_id"]
        control.set_account("default", hd_remaining_count=10**9, taskpic_balance=10**9)

        hd_status = hammer(
            server.base_url,
            lambda c: c.post("/api/check_task_status", data={"user_key": "test-key", "task_id": hd_task}),
            DURATION_S,
        )
        pic_status = hammer(
            server.base_url,
            lambda c: c.get(f"/task/{pic_task}", headers={"Authorization": "Bearer sk-xxxx"}),
            DURATION_S,
        )
        submits = hammer(
            server.base_url,
            lambda c: c.post(
                "/api/submit_face_enhance_task",
                data={"user_key": "test-key"},
                files={"input_image": ("b.png", image, "image/png")},
            ),
            DURATION_S,
        )
        control.reset()  # drop the journal and tasks the run piled up
        control.close()
    status = min(hd_status, pic_status)
    print(f"HD check_task_status: {hd_status:,.0f}/s")
    print(f"task/pic poll:        {pic_status:,.0f}/s")
    print(f"HD submits (32x32):   {submits:,.0f}/s")
    ok = status >= GOAL_STATUS_PER_S
    verdict = "OK" if ok else "MISSED"
    goal = f"goal {GOAL_STATUS_PER_S:,.0f}/s {verdict}"
    print(f"summary: status checks {status:,.0f}/s, submits {submits:,.0f}/s, {goal}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
