"""picflow.net.webhooks: signed completion notices (Standard Webhooks scheme) and the public job view."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picflow.core.errors import PicflowError
from picflow.net.http import RetryPolicy
from picflow.net.webhooks import SIGNATURE_TOLERANCE, job_event, post_notice, sign, verify

KEY = b"whsec-test-key-0123456789"
NOW = 1_700_000_000
HIDDEN = {"task_token": "TOKEN-x", "callback_secret_sha256": "f" * 64, "submit_marker": "m-1"}
JOB = {"job_id": "job-1", "status": "SUCCEEDED", "operation": "redraw", "manifest": {"key": "k"}, **HIDDEN}


def headers_for(
    body: bytes, *, key: bytes = KEY, msg_id: str = "job-1-SUCCEEDED", ts: int = NOW
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, msg_id, ts, body),
    }


# --- sign / verify ---------------------------------------------------------------------------


@settings(deadline=None)
@given(body=st.binary(max_size=512), msg_id=st.text(min_size=1, max_size=40), skew=st.integers(-300, 300))
def test_verify_accepts_what_sign_produced(body: bytes, msg_id: str, skew: int) -> None:
    assert verify(KEY, headers_for(body, msg_id=msg_id), body, now=NOW + skew)


def test_sign_has_the_v1_base64_form() -> None:
    signature = sign(KEY, "id", NOW, b"{}")
    assert signature.startswith("v1,")
    assert len(signature) == len("v1,") + 44  # base64 of a 32-byte HMAC-SHA256


def test_verify_tampered_body_is_refused() -> None:
    headers = headers_for(b'{"status":"SUCCEEDED"}')
    assert not verify(KEY, headers, b'{"status":"FAILED"}', now=NOW)


def test_verify_tampered_id_is_refused() -> None:
    headers = {**headers_for(b"{}"), "webhook-id": "job-2-SUCCEEDED"}
    assert not verify(KEY, headers, b"{}", now=NOW)


def test_verify_wrong_key_is_refused() -> None:
    assert not verify(b"another-key", headers_for(b"{}"), b"{}", now=NOW)


@pytest.mark.parametrize("age", [SIGNATURE_TOLERANCE + 1, -(SIGNATURE_TOLERANCE + 1), 86_400])
def test_verify_timestamp_outside_the_tolerance_is_refused(age: int) -> None:
    assert not verify(KEY, headers_for(b"{}"), b"{}", now=NOW + age)


def test_verify_any_of_several_signatures_may_match() -> None:
    # Key rotation: the sender lists signatures with old and new keys.
    headers = headers_for(b"{}")
    headers["webhook-signature"] = (
        f"{sign(b'old', 'job-1-SUCCEEDED', NOW, b'{}')} {headers['webhook-signature']}"
    )
    assert verify(KEY, headers, b"{}", now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_missing_header_is_refused(missing: str) -> None:
    headers = headers_for(b"{}")
    del headers[missing]
    assert not verify(KEY, headers, b"{}", now=NOW)


def test_verify_non_numeric_timestamp_is_refused() -> None:
    assert not verify(KEY, {**headers_for(b"{}"), "webhook-timestamp": "yesterday"}, b"{}", now=NOW)


# --- the public job view -------------------------------------------------------------------


def test_job_event_hides_tokens_secrets_and_markers() -> None:
    event = job_event({**JOB, "ttl": 1, "last_error": {"type": "X"}, "callbacks": [{"verdict": "rejected"}]})
    assert not set(HIDDEN) & set(event)
    assert not {"ttl", "last_error", "callbacks"} & set(event)
    assert event == {
        "job_id": "job-1",
        "status": "SUCCEEDED",
        "operation": "redraw",
        "manifest": {"key": "k"},
    }


def test_job_event_keeps_the_recorded_error() -> None:
    assert job_event({**JOB, "status": "FAILED", "error": {"type": "AuthError"}})["error"] == {
        "type": "AuthError"
    }


# --- posting -------------------------------------------------------------------------------


class Receiver:
    """A fake notify_url: answers with the scripted statuses in turn, keeps what it got."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status)


def post(receiver: Receiver, sleeps: list[float], job: dict[str, Any] = JOB) -> int:
    http = httpx.Client(transport=httpx.MockTransport(receiver))
    retry = RetryPolicy(attempts=4, budget=10.0, sleep=sleeps.append)
    return post_notice(http, "https://hooks.example/picflow", KEY, job, retry=retry)


def test_post_notice_sends_a_signed_body_the_receiver_can_verify() -> None:
    receiver = Receiver(204)
    assert post(receiver, []) == 204
    (request,) = receiver.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == "job-1-SUCCEEDED"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    assert verify(KEY, dict(request.headers), request.content)
    body = json.loads(request.content)
    assert body["job_id"] == "job-1"
    assert not set(HIDDEN) & set(body)
    assert all(secret not in request.content.decode() for secret in HIDDEN.values())


def test_post_notice_retries_a_503_then_succeeds() -> None:
    receiver = Receiver(503, 200)
    sleeps: list[float] = []
    assert post(receiver, sleeps) == 200
    assert len(receiver.requests) == 2
    assert len(sleeps) == 1
    # The retry is the same notice: same id, so the receiver can dedupe.
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]


def test_post_notice_refused_by_the_receiver_raises_with_its_status() -> None:
    receiver = Receiver(410)
    with pytest.raises(PicflowError) as info:
        post(receiver, [])
    assert info.value.code == 410
    assert len(receiver.requests) == 1  # a 4xx is an answer, not a reason to retry


def test_post_notice_serialises_non_json_values() -> None:
    receiver = Receiver(200)
    post(receiver, [], {**JOB, "completed_at": datetime.date(2025, 1, 2)})
    assert json.loads(receiver.requests[0].content)["completed_at"] == "2025-01-02"
