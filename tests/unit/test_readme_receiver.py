"""The README's notice receiver (section "Verifying a notice") run against picflow's own notices."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow.net.http import RetryPolicy
from picflow.net.webhooks import post_notice

ROOT = Path(__file__).resolve().parents[2]
KEY = b"whsec-readme-0123456789"
NOTICE = {"job_id": "job-9", "status": "SUCCEEDED", "operation": "redraw", "results": [], "error": None}


@pytest.fixture(scope="module")
def verify_notice() -> Callable[[bytes, Any, bytes], dict[str, Any]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Verifying a notice", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    assert len(code.strip().splitlines()) <= 11  # the README promises a short receiver
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    receiver: Callable[[bytes, Any, bytes], dict[str, Any]] = scope["verify_notice"]
    return receiver


def sent(notice: dict[str, Any] = NOTICE) -> httpx.Request:
    """What picflow POSTs (post_notice), captured."""
    requests: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: requests.append(r) or httpx.Response(204))
    with httpx.Client(transport=transport) as http:
        post_notice(http, "https://hooks.example/n", KEY, notice, retry=RetryPolicy(attempts=1))
    (request,) = requests
    return request


def test_readme_receiver_accepts_picflows_notice(verify_notice: Callable[..., dict[str, Any]]) -> None:
    request = sent()
    assert verify_notice(KEY, request.headers, request.content) == json.loads(request.content)
    assert verify_notice(KEY, request.headers, request.content)["job_id"] == "job-9"


def test_readme_receiver_refuses_a_tampered_body_a_wrong_key_and_a_stale_one(
    verify_notice: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = sent()
    with pytest.raises(ValueError, match="bad signature"):
        verify_notice(KEY, request.headers, request.content.replace(b"SUCCEEDED", b"FAILED"))
    with pytest.raises(ValueError, match="bad signature"):
        verify_notice(b"another key", request.headers, request.content)
    signed_at = int(request.headers["webhook-timestamp"])
    monkeypatch.setattr(time, "time", lambda: signed_at + 301.0)
    with pytest.raises(ValueError, match="stale"):
        verify_notice(KEY, request.headers, request.content)
