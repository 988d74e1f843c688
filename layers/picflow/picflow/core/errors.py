"""One error hierarchy for every provider, translated at one boundary.

The class names are the Step Functions contract: a Lambda's ``errorType`` is the class
name, and the state machine's ``Retry``/``Catch`` match on it. Rename one and a retry
silently stops firing, so ``tests/unit/test_errors.py`` pins the names.

    PicflowError
    ├── InvalidRequestError          never retried: the documents say it will fail
    │   └── ParamValidationError     ours, raised before any network call (field + rule)
    ├── AuthError                    bad token / user_key / signature
    ├── QuotaExhaustedError          balance, credits or billing state
    ├── RateLimitedError             retry later; ``retry_after`` when the provider said
    │   └── ConcurrencyLimitedError  the provider's concurrent-job cap (Tencent JobNumExceed)
    ├── TransientError               5xx, connect failures, malformed answers to reads: retry
    ├── OutcomeUnknownError          a paid request was sent but no usable answer came back:
    │                                retrying could pay twice, so it is not retried
    ├── UpstreamTaskFailedError      the provider ran the task and it failed (carries its code)
    ├── ResultUnavailableError       a result URL expired, vanished or served corrupt bytes
    ├── DeadlineExceededError        the job outlived its deadline or its maximum number of polls
    └── InternalError                picflow's own failure (an AWS call refused, a bug): never
                                     retried; a step's untyped exception becomes one
                                     (picflow.job.steps), so no ValueError or ClientError
                                     reaches a job record

Every error keeps the provider's raw ``code`` and ``message`` and the ``request_id``
where the provider gives one. Secrets never enter an error: messages are built from
provider answers and our own rules only.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "AuthError",
    "ConcurrencyLimitedError",
    "DeadlineExceededError",
    "InternalError",
    "InvalidRequestError",
    "OutcomeUnknownError",
    "ParamValidationError",
    "PicflowError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "ResultUnavailableError",
    "TransientError",
    "UpstreamTaskFailedError",
]


# Presigned URLs (an input picflow handed a provider, echoed in its error text) carry
# signatures and session tokens in their query: an error keeps only scheme, host and path.
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)[?#][^\s\"'<>]*")


def _without_url_queries(text: str) -> str:
    return _URL_QUERY.sub(r"\1?…", text)


class PicflowError(Exception):
    """Base of every error picflow raises on purpose."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        code: str | int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = _without_url_queries(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        if self.provider:
            parts.append(f"provider={self.provider}")
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http_status={self.http_status}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, code={self.code!r})"

    def to_dict(self) -> dict[str, Any]:
        """The shape recorded on a FAILED job and returned by the API."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "provider": self.provider,
            "code": self.code,
            "http_status": self.http_status,
            "request_id": self.request_id,
            "retryable": self.retryable,
        }


class InvalidRequestError(PicflowError):
    """The request breaks a documented rule; sending it again cannot succeed."""


class ParamValidationError(InvalidRequestError):
    """Raised by the catalogue before any network call; names the field and the rule."""

    def __init__(self, message: str, *, field: str, rule: str, operation: str | None = None) -> None:
        super().__init__(message, code="ParamValidation")
        self.field = field
        self.rule = rule
        self.operation = operation

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field, "rule": self.rule, "operation": self.operation}


class AuthError(PicflowError):
    """Credentials were refused (token, user_key, SecretId or signature)."""


class QuotaExhaustedError(PicflowError):
    """The account has no balance, credits or service left."""


class RateLimitedError(PicflowError):
    """Too many requests; try again after ``retry_after`` seconds when given."""

    retryable = True


class ConcurrencyLimitedError(RateLimitedError):
    """The provider's cap on concurrent jobs is reached."""


class TransientError(PicflowError):
    """A failure that says nothing about the request itself; safe to retry."""

    retryable = True


class OutcomeUnknownError(PicflowError):
    """A paid request reached the provider but its answer was lost or unreadable.

    Not retried: the provider may have started (and billed) the task.
    """


class UpstreamTaskFailedError(PicflowError):
    """The provider accepted the task and reports that it failed."""


class ResultUnavailableError(PicflowError):
    """A result could not be fetched: expired (403), missing (404) or corrupt."""


class DeadlineExceededError(PicflowError):
    """The upstream task did not finish within the job's deadline or poll budget."""


class InternalError(PicflowError):
    """picflow's own failure: an AWS call it makes was refused, or a bug. Carries the original's
    class name (``code``) and, for an AWS error, its error code and status."""
