"""picflow.net.http.send: retries only where a paid call cannot pay twice; waits are recorded, never slept."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picflow.core.errors import OutcomeUnknownError, RateLimitedError, TransientError
from picflow.net.http import DEFAULT_TIMEOUT, NO_RETRY, RetryPolicy, build_client, parse_retry_after, send

URL = "https://provider.example/api/submit_task"
Step = httpx.Response | Exception


class Script:
    """A fake upstream: answers each request with the next scripted step; the last one repeats."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        self.responses.append(step)
        return step

    @property
    def attempts(self) -> int:
        return len(self.requests)


def policy(sleeps: list[float], **kwargs: float) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps.append, **kwargs)


def call(script: Script, *, idempotent: bool, retry: RetryPolicy, stream: bool = False) -> httpx.Response:
    client = build_client("https://provider.example", transport=httpx.MockTransport(script))
    request = client.build_request("POST" if not idempotent else "GET", URL)
    return send(client, request, provider="hdredraw", idempotent=idempotent, retry=retry, stream=stream)


def ok() -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


# --- connections that never opened: always safe to retry ---------------------------------------


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_send_connect_failure_on_paid_post_is_retried(exc: type[Exception]) -> None:
    sleeps: list[float] = []
    script = Script(exc("refused"), ok())
    response = call(script, idempotent=False, retry=policy(sleeps))
    assert response.status_code == 200
    assert script.attempts == 2
    assert len(sleeps) == 1


def test_send_connect_failure_every_time_raises_transient_after_the_attempts() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as info:
        call(script, idempotent=False, retry=policy(sleeps, attempts=3))
    assert script.attempts == 3
    assert len(sleeps) == 2
    assert info.value.code == "ConnectFailed"
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_send_transport_error_text_with_a_secret_stays_out_of_the_error() -> None:
    secret = "uk-SECRET-42"
    script = Script(httpx.ConnectError(f"cannot connect to {URL}?user_key={secret}"))
    with pytest.raises(TransientError) as info:
        call(script, idempotent=True, retry=NO_RETRY)
    assert secret not in str(info.value)
    assert secret not in repr(info.value)


# --- lost answers: a paid request may have gone through --------------------------------------


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteTimeout]
)
def test_send_lost_answer_on_paid_post_raises_outcome_unknown_after_one_attempt(exc: type[Exception]) -> None:
    sleeps: list[float] = []
    script = Script(exc("lost"), ok())
    with pytest.raises(OutcomeUnknownError) as info:
        call(script, idempotent=False, retry=policy(sleeps))
    assert script.attempts == 1
    assert sleeps == []
    assert info.value.code == "NoAnswer"
    assert info.value.provider == "hdredraw"
    assert not info.value.retryable


def test_send_read_timeout_on_idempotent_get_is_retried() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ReadTimeout("slow"), ok())
    assert call(script, idempotent=True, retry=policy(sleeps)).status_code == 200
    assert script.attempts == 2


def test_send_read_timeout_every_time_on_idempotent_get_raises_transient() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError) as info:
        call(script, idempotent=True, retry=policy(sleeps, attempts=2))
    assert script.attempts == 2
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


# --- 429 / 5xx answers -------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_send_idempotent_retryable_status_then_success_returns_the_success(status: int) -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(status), ok())
    assert call(script, idempotent=True, retry=policy(sleeps)).status_code == 200
    assert script.attempts == 2
    # No Retry-After: full jitter, capped by the policy.
    assert 0 <= sleeps[0] <= min(2.0, 0.2 * 2)


@pytest.mark.parametrize("status", [503, 429])
def test_send_retry_after_seconds_is_the_wait(status: int) -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(status, headers={"Retry-After": "1.5"}), ok())
    call(script, idempotent=True, retry=policy(sleeps))
    assert sleeps == [1.5]


def test_send_persistent_503_raises_transient_with_the_status() -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(503, headers={"Retry-After": "1"}))
    with pytest.raises(TransientError) as info:
        call(script, idempotent=True, retry=policy(sleeps, attempts=3))
    assert script.attempts == 3
    assert sleeps == [1.0, 1.0]
    assert (info.value.code, info.value.http_status) == (503, 503)
    assert type(info.value) is TransientError


def test_send_persistent_429_raises_rate_limited_with_retry_after() -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(429, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimitedError) as info:
        call(script, idempotent=True, retry=policy(sleeps, attempts=3))
    assert script.attempts == 3
    assert sleeps == [2.0, 2.0]
    assert info.value.retry_after == 2.0
    assert info.value.http_status == 429


def test_send_stops_when_the_next_wait_would_exceed_the_budget() -> None:
    # GIVEN a budget of 5 s and a provider asking for 3 s each time
    sleeps: list[float] = []
    script = Script(httpx.Response(503, headers={"Retry-After": "3"}))
    # WHEN it keeps answering 503
    with pytest.raises(TransientError):
        call(script, idempotent=True, retry=policy(sleeps, attempts=10, budget=5.0))
    # THEN one wait fits (3 s), a second would not (6 s): two attempts in all
    assert sleeps == [3.0]
    assert script.attempts == 2


def test_send_retry_after_longer_than_the_budget_raises_at_once() -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(429, headers={"Retry-After": "120"}), ok())
    with pytest.raises(RateLimitedError) as info:
        call(script, idempotent=True, retry=policy(sleeps))
    assert script.attempts == 1
    assert sleeps == []
    assert info.value.retry_after == 120.0  # Step Functions waits the rest, not the Lambda


@pytest.mark.parametrize("status", [500, 503, 429])
def test_send_paid_post_error_status_is_returned_not_retried(status: int) -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(status), ok())
    assert call(script, idempotent=False, retry=policy(sleeps)).status_code == status
    assert script.attempts == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_send_client_error_status_is_returned_not_retried(status: int) -> None:
    script = Script(httpx.Response(status), ok())
    assert call(script, idempotent=True, retry=policy([])).status_code == status
    assert script.attempts == 1


def test_send_no_retry_policy_makes_one_attempt() -> None:
    script = Script(httpx.Response(503), ok())
    with pytest.raises(TransientError):
        call(script, idempotent=True, retry=NO_RETRY)
    assert script.attempts == 1


def test_send_streamed_retry_closes_the_abandoned_response() -> None:
    script = Script(httpx.Response(503, content=b"busy"), httpx.Response(200, content=b"image-bytes"))
    response = call(script, idempotent=True, retry=policy([]), stream=True)
    assert response.read() == b"image-bytes"
    assert script.responses[0].is_closed


@settings(deadline=None)
@given(attempt=st.integers(1, 12), base=st.floats(0.01, 1.0), cap=st.floats(0.1, 5.0))
def test_retry_policy_delay_full_jitter_stays_within_the_cap(attempt: int, base: float, cap: float) -> None:
    delay = RetryPolicy(base_delay=base, max_delay=cap).delay(attempt, None)
    assert 0 <= delay <= min(cap, base * 2**attempt)


@settings(deadline=None)
@given(st.floats(0, 3600, allow_nan=False))
def test_retry_policy_delay_honours_retry_after_exactly(retry_after: float) -> None:
    assert RetryPolicy().delay(1, retry_after) == retry_after


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), (None, None), ("", None), ("soon", None)],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_future_is_seconds_from_now() -> None:
    when = datetime.fromtimestamp(time.time() + 30, tz=UTC)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None
    assert 28.0 < seconds <= 30.0  # the date has whole seconds


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


# --- the client --------------------------------------------------------------------------


def test_build_client_has_explicit_timeouts_and_no_redirects() -> None:
    script = Script(httpx.Response(302, headers={"Location": "https://elsewhere.example/"}))
    client = build_client(
        "https://provider.example", transport=httpx.MockTransport(script), headers={"X-A": "1"}
    )
    assert client.timeout == DEFAULT_TIMEOUT
    assert all(v is not None for v in (client.timeout.connect, client.timeout.read, client.timeout.write))
    response = client.get("/a")
    assert response.status_code == 302  # not followed
    assert script.attempts == 1
    assert script.requests[0].headers["X-A"] == "1"
    assert script.requests[0].headers["User-Agent"].startswith("picflow/")


def test_httpx_never_logs_request_urls_even_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    # Presigned URLs carry signatures: importing picflow.net.http keeps httpx's loggers quiet.
    import logging

    import picflow.net.http  # noqa: F401

    secret_url = "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=deadbeef"
    with caplog.at_level(logging.DEBUG):
        transport = httpx.MockTransport(lambda r: httpx.Response(200))
        client = build_client("https://example.test", transport=transport)
        client.get(secret_url)
    assert "deadbeef" not in caplog.text
