"""Completion notices: signed POSTs a receiver can verify, and refusal of unsafe notify URLs."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from picflow.net.webhooks import verify
from picflow_cli.local.stack import LOCAL_CREDENTIALS

pytestmark = pytest.mark.e2e


class Receiver:
    """A webhook receiver on loopback that keeps every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                outer.arrived.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/picflow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(system) -> Iterator[Receiver]:
    rec = Receiver()
    # Loopback is refused for user URLs; the test receiver is allow-listed like the local stack's own
    # (in the functions' configuration: their execution environments are built from it).
    allow = os.environ.get("PICFLOW_URL_ALLOWLIST", "")
    with system.stack.function_environment(
        PICFLOW_URL_ALLOWLIST=f"{allow},127.0.0.1:{rec.server.server_port}"
    ):
        yield rec
    rec.server.shutdown()


def test_finished_job_posts_a_notice_the_receiver_can_verify(system, sample, receiver):
    key = system.upload("remove_watermark/in/w.png", sample["image.png"], {}, **{"notify-url": receiver.url})
    execution, job = system.run(key)
    assert execution["status"] == "SUCCEEDED"

    assert receiver.arrived.wait(10)
    [(headers, body)] = receiver.requests
    signing_key = LOCAL_CREDENTIALS["notify_signing_key"].encode()
    assert verify(signing_key, headers, body)
    assert not verify(b"another key", headers, body)
    assert not verify(signing_key, headers, body.replace(b"SUCCEEDED", b"FAILED"))
    notice = json.loads(body)
    assert (notice["job_id"], notice["status"]) == (job["job_id"], "SUCCEEDED")
    assert "task_token" not in notice
    assert "callback_secret_sha256" not in notice
    assert headers["webhook-id"].startswith(job["job_id"])


def test_failed_job_is_notified_too(system, sample, receiver):
    key = system.upload(
        "redraw/in/w.png", sample["image.png"], {"upscale": 20}, **{"notify-url": receiver.url}
    )
    execution, _ = system.run(key)
    assert execution["status"] == "FAILED"
    assert receiver.arrived.wait(10)
    [(_, body)] = receiver.requests
    assert json.loads(body)["error"]["field"] == "upscale"


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "http://10.0.0.8/hook"]
)
def test_unsafe_notify_url_fails_the_job_before_any_upstream_call(system, sample, url):
    key = system.upload("remove_watermark/in/w.png", sample["image.png"], {}, **{"notify-url": url})
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert (job["error"]["type"], job["error"]["field"]) == ("ParamValidationError", "notify_url")
    assert system.mock.count() == 0


def test_the_notice_carries_only_what_the_receiver_should_see(system, sample, receiver):
    import hashlib

    import httpx
    from picflow.core.results import Notice

    # GIVEN a task/pic job: its record holds the provider's balance, the execution, the cache key...
    key = system.upload(
        "segmentation/notice/p.jpg", sample["product.jpg"], {}, **{"notify-url": receiver.url}
    )
    execution, job = system.run(key)
    assert execution["status"] == "SUCCEEDED"
    internals = {
        name: job[name] for name in ("execution_arn", "cache_key", "provider_task_id") if job.get(name)
    }
    assert "execution_arn" in internals  # the record really has what must not leave
    assert receiver.arrived.wait(10)
    [(_, body)] = receiver.requests
    notice = json.loads(body)
    # THEN the notice is the public schema, with none of them
    assert set(notice) == set(Notice.__annotations__)
    text = body.decode()
    for name, value in internals.items():
        assert str(value) not in text, name
    for word in ("balance", "remaining_count", "remaining_money", "request_sha256", "execution_arn"):
        assert word not in text
    assert (notice["job_id"], notice["status"], notice["operation"]) == (
        job["job_id"],
        "SUCCEEDED",
        "segmentation",
    )
    assert notice["cost"] == {"units": 1, "unit": "taskpic.call"}
    # AND each result's presigned URL serves the bytes its sha256 names
    assert notice["results"]
    for result in notice["results"]:
        data = httpx.get(result["url"], timeout=30).content
        assert hashlib.sha256(data).hexdigest() == result["sha256"]
