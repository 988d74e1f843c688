"""Faults of AWS itself, for chaos runs: S3 errors and Lambda crashes in the middle of a step.

Off unless a function's configuration sets them (``LocalStack.function_environment``), read by
each worker process (``lambda_worker.serve``) from its deployed environment:

- ``PICFLOW_LOCAL_S3_FAULT_RATE`` (0..1): that share of the process's S3 requests is answered
  ``503 SlowDown`` without reaching moto, as S3 answers under load. botocore retries them as it
  retries S3's own (its retry handler reads the code), so most never reach picflow's code.
- ``PICFLOW_LOCAL_CRASH_RATE`` (0..1): that share of invocations has its process killed at a
  random moment while the handler runs (``os._exit``), between any two of its calls: the
  invocation fails ``Runtime.ExitError`` as Lambda's does, whatever the step had done so far
  (functions named in ``PICFLOW_LOCAL_FAULTS_EXCEPT`` are spared both faults).

Each process draws from ``random.Random`` seeded with its pid and ``PICFLOW_LOCAL_FAULT_SEED``.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["CRASH_RATE", "FAULTS_EXCEPT", "FAULT_SEED", "S3_FAULT_RATE", "crash_timer", "install_s3_faults"]

S3_FAULT_RATE: Final = "PICFLOW_LOCAL_S3_FAULT_RATE"
CRASH_RATE: Final = "PICFLOW_LOCAL_CRASH_RATE"
# Comma-separated function names spared both faults (e.g. the S3 trigger: moto delivers S3 events
# inline and once, where S3 would retry a failed asynchronous invocation).
FAULTS_EXCEPT: Final = "PICFLOW_LOCAL_FAULTS_EXCEPT"
FAULT_SEED: Final = "PICFLOW_LOCAL_FAULT_SEED"
# A crash comes within this many seconds of the handler's start (most steps take longer).
CRASH_WITHIN: Final = 0.5

_SLOW_DOWN: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


def _rng() -> random.Random:
    return random.Random(f"{os.environ.get(FAULT_SEED, '0')}:{os.getpid()}")


def _rate(name: str) -> float:
    try:
        return min(1.0, max(0.0, float(os.environ.get(name) or 0.0)))
    except ValueError:
        return 0.0


def _spared() -> bool:
    spared = set(filter(None, os.environ.get(FAULTS_EXCEPT, "").split(",")))
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME") in spared


class _Raw:
    """Just enough of urllib3's response for botocore's AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body

    def read(self, *_: Any, **__: Any) -> bytes:
        return self._body


def install_s3_faults() -> Callable[[], None] | None:
    """Answer a share of this process's S3 requests 503 SlowDown; None when the rate is 0."""
    rate = _rate(S3_FAULT_RATE)
    if rate <= 0 or _spared():
        return None
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders
    from botocore.httpsession import URLLib3Session

    rng = _rng()
    original = URLLib3Session.send

    def send(self: URLLib3Session, request: Any) -> Any:
        auth = str(request.headers.get("Authorization") or "")
        if "/s3/aws4_request" in auth and rng.random() < rate:
            headers = HTTPHeaders()
            headers["Content-Type"] = "application/xml"
            headers["Content-Length"] = str(len(_SLOW_DOWN))
            return AWSResponse(request.url, 503, headers, _Raw(_SLOW_DOWN))
        return original(self, request)

    URLLib3Session.send = send  # type: ignore[method-assign]

    def undo() -> None:
        URLLib3Session.send = original  # type: ignore[method-assign]

    return undo


_crash_rng: random.Random | None = None


def crash_timer() -> threading.Timer | None:
    """For one invocation: a started timer that kills the process mid-handler, or None.

    The caller cancels it when the handler returns (a crash never lands after the answer)."""
    global _crash_rng
    rate = _rate(CRASH_RATE)
    if rate <= 0 or _spared():
        return None
    if _crash_rng is None:
        _crash_rng = _rng()
    if _crash_rng.random() >= rate:
        return None
    timer = threading.Timer(_crash_rng.uniform(0.0, CRASH_WITHIN), os._exit, args=(1,))
    timer.daemon = True
    timer.start()
    return timer
