"""Completion notices: a signed POST to the job's ``notify_url`` and an EventBridge event.

Signing follows the scheme Replicate and Standard Webhooks use: the receiver gets
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">``; it recomputes the HMAC with the shared key, compares in
constant time and refuses timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.core.errors import PicflowError

if TYPE_CHECKING:
    import httpx

    from picflow.net.http import RetryPolicy

__all__ = ["SIGNATURE_TOLERANCE", "job_event", "post_notice", "sign", "verify"]

SIGNATURE_TOLERANCE = 300
# The notice's retries (picflow.net.http.RetryPolicy's arguments). httpx and picflow.net.http are
# imported when a notice is sent: the API reads job_event only, and an httpx import is ~25 ms of
# its cold start.
NOTIFY_RETRY = {"attempts": 4, "base_delay": 0.5, "max_delay": 4.0, "budget": 10.0}


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify(key: bytes, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does; picflow's tests use it to check the notices it sends."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        given = headers["webhook-signature"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > SIGNATURE_TOLERANCE:
        return False
    expected = sign(key, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in given.split())


def job_event(job: Mapping[str, Any]) -> dict[str, Any]:
    """The public face of a finished job: no secrets, tokens or internal markers."""
    hidden = {"task_token", "callback_secret_sha256", "submit_marker", "ttl", "last_error", "callbacks"}
    return {k: v for k, v in job.items() if k not in hidden}


def post_notice(
    http: httpx.Client, url: str, key: bytes, job: Mapping[str, Any], *, retry: RetryPolicy | None = None
) -> int:
    """POST ``job`` (the notice body, :func:`picflow.job.finish.notice`) signed; returns the
    receiver's status. Retries 429/5xx and lost answers (``retry``: :data:`NOTIFY_RETRY`)."""
    from picflow.net.http import RetryPolicy, send

    body = json.dumps(job_event(job), separators=(",", ":"), default=str).encode()
    msg_id = f"{job['job_id']}-{job.get('status', '')}"
    timestamp = int(time.time())
    request = http.build_request(
        "POST",
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body),
        },
    )
    # A notice may arrive twice (webhook-id lets the receiver dedupe); never zero times.
    policy = retry or RetryPolicy(**NOTIFY_RETRY)  # type: ignore[arg-type]  # its fields' types
    response = send(http, request, provider="notify", idempotent=True, retry=policy)
    if response.status_code >= 400:
        raise PicflowError(f"notify_url answered {response.status_code}", code=response.status_code)
    return response.status_code
