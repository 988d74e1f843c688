"""Helpers shared by the contract tests (fixtures live in conftest.py)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow.core.errors import OutcomeUnknownError, PicflowError, RateLimitedError, TransientError
from PIL import Image

from mock_upstream.testing import MockUpstream

SAMPLES = Path(__file__).resolve().parents[2] / "mock_upstream" / "samples"
BUCKET = "contract-results"
# short_http gives up reading after READ_TIMEOUT; a fault of BEYOND_READ outlasts it. Wide
# margins both ways: an undelayed answer on a loaded CI box must still come within the timeout.
READ_TIMEOUT = 1.0
BEYOND_READ = 2.0

# Faults on a paid submit, the same for every provider: (kind, params, the error the client
# raises, whether the mock charged). Faults before the provider runs (429, 5xx, reset, empty)
# cost nothing; faults after it ran damage only its answer, so the task was made and billed.
SUBMIT_FAULTS = [
    pytest.param("rate_limit", {"retry_after": 7}, RateLimitedError, False, id="429"),
    pytest.param("http_status", {"status": 503}, TransientError, False, id="503"),
    pytest.param("http_status", {"status": 500}, TransientError, False, id="500"),
    pytest.param("reset", {}, OutcomeUnknownError, False, id="reset"),
    pytest.param("empty", {}, OutcomeUnknownError, False, id="empty"),
    pytest.param("truncated", {}, OutcomeUnknownError, True, id="truncated"),
    pytest.param("truncated_body", {}, OutcomeUnknownError, True, id="truncated_body"),
    pytest.param("malformed_json", {}, OutcomeUnknownError, True, id="malformed_json"),
    pytest.param("corrupt_body", {}, OutcomeUnknownError, True, id="corrupt_body"),
    pytest.param("wrong_content_type", {}, OutcomeUnknownError, True, id="wrong_content_type"),
]
# One fault on a status read that a retry gets past.
STATUS_RECOVERABLE = [
    pytest.param("http_status", {"status": 503}, id="503"),
    pytest.param("reset", {}, id="reset"),
    pytest.param("empty", {}, id="empty"),
    pytest.param("truncated", {}, id="truncated"),
]
# A status answer that arrives but cannot be read: transient, left to the workflow's next poll.
UNREADABLE = ["malformed_json", "truncated_body", "corrupt_body", "wrong_content_type"]


def assert_paid_once(
    mock_upstream: MockUpstream, error: PicflowError, *, route: str, charged: bool, sleeps: list[float]
) -> None:
    """The paid request went out once, unretried; a retryable error never follows a charge."""
    assert mock_upstream.count(route=route) == 1
    assert sleeps == []
    assert mock_upstream.count(paid=True) == int(charged)
    # The workflow submits again after a retryable error: that must not pay twice.
    assert not (error.retryable and charged)


def sample(name: str) -> io.BytesIO:
    return io.BytesIO((SAMPLES / name).read_bytes())


def sample_size(name: str) -> tuple[int, int]:
    with Image.open(SAMPLES / name) as image:
        return image.size


@dataclass(frozen=True)
class Fetched:
    content: bytes
    content_type: str
    format: str
    size: tuple[int, int]
    mode: str


def fetch_image(url: str) -> Fetched:
    """GET a result URL and decode it fully (a truncated or corrupt file raises)."""
    response = httpx.get(url, timeout=10.0, trust_env=False)
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as image:
        image.load()
        return Fetched(
            response.content, response.headers["content-type"], image.format or "", image.size, image.mode
        )


def drain(mock_upstream: MockUpstream, seconds: float) -> None:
    """Return once a request the mock delayed by ``seconds`` (real time) has been answered.

    A client that timed out leaves its request running on the mock. A request sent after it
    with the same delay is answered after it (the event loop fires timers in deadline order,
    and the delayed work runs without yielding), so its answer proves the first is journaled.
    """
    mock_upstream.inject_fault("latency", route="/files/drain/*", seconds=seconds)
    assert httpx.get(mock_upstream.url("/files/drain/x"), timeout=10.0, trust_env=False).status_code == 404


def stored(s3: Any, key: str) -> bytes:
    body: bytes = s3.objects[BUCKET, key]["Body"]
    return body
