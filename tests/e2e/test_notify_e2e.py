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
