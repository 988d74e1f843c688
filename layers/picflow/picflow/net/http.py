"""The one way picflow builds httpx clients and maps transport failures to its errors.

Provider clients take an ``httpx.Client`` (the test seam: tests inject a ``MockTransport``,
respx, or a client pointed at mock_upstream) and send through :func:`send`, so timeouts,
retries and the translation of httpx exceptions live here and nowhere else.

Retry rules, chosen so that a paid call is never made twice:
- a connection that was never established (connect error/timeout, pool timeout) is retried:
  the request provably never reached the provider;
- any other transport failure (read timeout, reset mid-answer) is retried only for
  idempotent requests; for a paid submit it becomes :class:`OutcomeUnknownError`;
- HTTP 429/5xx answers are retried for idempotent requests, within a short total budget so
  the retries fit inside a Lambda invocation; longer waits are left to Step Functions.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httpx

from picflow.core.errors import OutcomeUnknownError, PicflowError, RateLimitedError, TransientError

__all__ = [
    "CORRELATION_HEADER",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "RetryPolicy",
    "build_client",
    "correlated",
    "parse_retry_after",
    "send",
    "ssl_context",
]

# httpx logs every request's full URL at INFO (httpcore its headers at DEBUG): presigned input
# URLs carry a signature and session token, so these loggers stay quiet whatever level the
# function's root logger runs at. picflow logs its own requests, redacted.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Uploads of up to 16 MB need a generous write timeout; reads of JSON answers do not.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=30.0, write=60.0, pool=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30.0)
USER_AGENT = "picflow/0.1 (+https://github.com/picflow)"
# Every upstream request made for a job carries its id, so a provider's logs (and the mock's
# journal) tie each call, retry and download to one job.
CORRELATION_HEADER = "X-Correlation-Id"
_job: ContextVar[str | None] = ContextVar("picflow_job", default=None)


@functools.cache
def ssl_context(*, trust_env: bool = True) -> ssl.SSLContext:
    """The TLS context every picflow client shares (certifi's CA bundle, or ``SSL_CERT_FILE``).

    Loading the CA bundle is ~35 ms of CPU: once per container, not once per client (every
    ``httpx.Client`` builds its own unless given one), nor per notice or fetched URL.
    """
    return httpx.create_ssl_context(trust_env=trust_env)


@contextmanager
def correlated(job_id: str) -> Iterator[None]:
    """Tag the upstream requests made inside with ``X-Correlation-Id: <job_id>``."""
    token = _job.set(job_id)
    try:
        yield
    finally:
        _job.reset(token)


def _tag(request: httpx.Request) -> None:
    job_id = _job.get()
    if job_id is not None:
        request.headers.setdefault(CORRELATION_HEADER, job_id)


def build_client(
    base_url: str,
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """A pooled client with explicit timeouts; ``transport`` is the test seam."""
    return httpx.Client(
        base_url=base_url,
        transport=transport,
        timeout=timeout,
        limits=DEFAULT_LIMITS,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        verify=ssl_context(),
        follow_redirects=False,
        event_hooks={"request": [_tag]},
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries that fit inside a Lambda: a few attempts, short waits, a total cap."""

    attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0
    budget: float = 5.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        # Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter").
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


NO_RETRY = RetryPolicy(attempts=1)
DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def send(
    client: httpx.Client,
    request: httpx.Request,
    *,
    provider: str,
    idempotent: bool,
    retry: RetryPolicy = DEFAULT_RETRY,
    stream: bool = False,
) -> httpx.Response:
    """Send ``request``, retrying only where that cannot pay twice.

    Returns the response of the last attempt whatever its status: the provider client
    decides what a status means. Raises :class:`TransientError`,
    :class:`OutcomeUnknownError` or :class:`RateLimitedError` for transport failures and
    for 429/5xx answers that outlived the retries.
    """
    spent = 0.0
    attempt = 0
    while True:
        try:
            response = client.send(request, stream=stream)
        except _NEVER_SENT as exc:
            error: PicflowError = TransientError(
                f"could not connect: {type(exc).__name__}", provider=provider, code="ConnectFailed"
            )
            retry_after: float | None = None
            cause: BaseException = exc
        except httpx.TransportError as exc:
            if not idempotent:
                raise OutcomeUnknownError(
                    f"request sent but no answer: {type(exc).__name__}",
                    provider=provider,
                    code="NoAnswer",
                ) from exc
            error = TransientError(
                f"transport failure: {type(exc).__name__}", provider=provider, code="NoAnswer"
            )
            retry_after = None
            cause = exc
        else:
            status = response.status_code
            if not (status == 429 or status >= 500) or not idempotent:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429:
                error = RateLimitedError(
                    "rate limited", provider=provider, code=429, http_status=429, retry_after=retry_after
                )
            else:
                error = TransientError(
                    f"server error {status}", provider=provider, code=status, http_status=status
                )
            cause = error
            if stream:
                response.close()
        attempt += 1
        wait = retry.delay(attempt, retry_after)
        if attempt >= retry.attempts or spent + wait > retry.budget:
            if cause is error:
                raise error
            raise error from cause
        retry.sleep(wait)
        spent += wait
