"""What every step of the job state machine shares: a failure is written onto the job first, and
typed from the error tree (picflow.core.errors).

Handlers in ``functions/`` only parse the event and call a step; a step's state is typed
(:mod:`picflow.core.state`) and its services default to the container's (:func:`services`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from typing import Any

from picflow.aws.services import services
from picflow.core.errors import InternalError, PicflowError, TransientError

__all__ = ["records_errors", "typed_error"]

# AWS error codes that say "try again" (throttling, a service's own trouble), as botocore's
# retry handler reads them; any 5xx too.
_AWS_TRANSIENT = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def typed_error(exc: Exception) -> PicflowError:
    """The error tree's class for an exception a step did not type: an AWS error that says try
    again is TransientError (the state machine retries it), anything else InternalError."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, PicflowError):
        return exc
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = f"{exc.operation_name}: {code} {error.get('Message') or ''}".strip()
        if code in _AWS_TRANSIENT or (isinstance(status, int) and status >= 500):
            return TransientError(message, code=code, http_status=status)
        return InternalError(message, code=code, http_status=status)
    from boto3.exceptions import RetriesExceededError, S3TransferFailedError, S3UploadFailedError

    if isinstance(exc, S3UploadFailedError | S3TransferFailedError | RetriesExceededError):
        # boto3's transfer manager wraps S3's errors (SlowDown, 5xx past botocore's retries) in
        # its own classes: a try again, as the ClientError would be (a chaos run's Collect lost
        # a paid result to one typed InternalError).
        return TransientError(f"{type(exc).__name__}: {exc}"[:500], code=type(exc).__name__)
    if isinstance(exc, BotoCoreError):  # connection and read failures before any answer
        return TransientError(f"{type(exc).__name__}: {exc}", code=type(exc).__name__)
    # A bug: its class name only (a message may carry data the job must not record).
    return InternalError(f"{type(exc).__name__} in a job step", code=type(exc).__name__)


def records_errors[**P, R](step: Callable[P, R]) -> Callable[P, R]:
    """Write a step's failure onto the job, typed, before re-raising it for Step Functions' Catch."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return step(*args, **kwargs)
        except PicflowError as exc:
            _record_error(args, kwargs, exc.to_dict())
            raise
        except Exception as exc:
            typed = typed_error(exc)
            _record_error(args, kwargs, typed.to_dict())
            raise typed from exc

    return wrapper


def _record_error(args: Any, kwargs: Any, error: dict[str, Any]) -> None:
    state = kwargs.get("state") or next((a for a in args if isinstance(a, Mapping)), None)
    svc = kwargs.get("svc") or services()
    if isinstance(state, Mapping) and state.get("job_id"):
        # The original error matters more than this write: never mask it.
        with contextlib.suppress(Exception):
            svc.store.update(str(state["job_id"]), {"last_error": error})
