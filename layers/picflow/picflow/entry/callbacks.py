"""Provider callbacks: authenticate, record, and hand the result to the waiting execution.

The task/pic API POSTs a finished task to the ``callback_url`` picflow gave it:
``{base}/callbacks/{job_id}/{secret}``. The secret is 32 random bytes per job; only its
sha256 is stored, and it is compared in constant time. An unknown job and a wrong secret get
the same 403 ``rejected`` and leave no trace on any job (the handler counts them in the metric
``ProviderCallbacks``, dimension ``verdict``), so the route tells no one which job ids exist and
a flood of guesses cannot grow a record. A callback for a job that has already had one (a
duplicate or a replay) is refused and recorded, never forwarded twice. Every authenticated
attempt lands in the job's ``callbacks`` log (without the secret).

Nothing a provider may still deliver is lost (issue 15, finding 4): a callback that comes after
the execution stopped waiting for it (the wait timed out, the job polls) leaves its results on the
record (``callback_poll``) and the job's next Check collects them; a callback for a job whose
submit answer was lost names the task, which the job adopts (``provider_task_id``) and follows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import FINAL, JobStatus, now_iso
from picflow.core.catalogue import TaskState, get_operation

if TYPE_CHECKING:
    from picflow.aws.services import Services

__all__ = ["CallbackOutcome", "body_of", "handle_callback"]

MAX_LOG = 20
# Compared against when there is no job or no secret: a digest no secret hashes to.
_NO_SECRET = "0" * 64


@dataclass(frozen=True)
class CallbackOutcome:
    status_code: int
    # accepted | rejected | duplicate | malformed | unsafe_url | wrong_task | progress
    verdict: str


# An unknown job or a wrong secret: one answer for both.
REJECTED = CallbackOutcome(403, "rejected")


def _log(svc: Services, job_id: str, job: dict[str, Any], verdict: str) -> None:
    entries = list(job.get("callbacks") or [])[-(MAX_LOG - 1) :]
    entries.append({"at": now_iso(svc.clock()), "verdict": verdict})
    svc.store.update(job_id, {"callbacks": entries}, allow_final=True)


def handle_callback(job_id: str, secret: str, body: bytes, svc: Services) -> CallbackOutcome:
    from picflow.net.urls import UnsafeUrlError, check_result_url
    from picflow.providers.registry import callback_parser

    job = svc.store.get(job_id)
    # An unknown job and a wrong secret answer alike (no oracle for job ids), cost alike (the
    # hash and the comparison run either way) and write nothing: the handler counts them.
    expected = str((job or {}).get("callback_secret_sha256") or "")
    given = hashlib.sha256(secret.encode()).hexdigest()
    if not hmac.compare_digest(expected or _NO_SECRET, given) or job is None or not expected:
        return REJECTED
    if job.get("callback_received_at") or JobStatus(job["status"]) in FINAL:
        _log(svc, job_id, job, "duplicate")
        return CallbackOutcome(409, "duplicate")
    try:
        # The job's provider reads its own callbacks; the operation names a background task's
        # single ``image`` as IMAGES, as a poll does.
        op = get_operation(str(job.get("operation") or ""))
        status = callback_parser(op.provider).parse_callback(body, operation=op.name)
    except Exception:
        _log(svc, job_id, job, "malformed")
        return CallbackOutcome(400, "malformed")
    try:
        # A result URL off the provider's result hosts is never handed on: the job keeps
        # waiting (and polling), so a forged callback can neither inject nor fail a result.
        for ref in status.results:
            if ref.url is not None:
                check_result_url(ref.url, op.spec)
    except UnsafeUrlError:
        _log(svc, job_id, job, "unsafe_url")
        return CallbackOutcome(422, "unsafe_url")
    expected_task = str(job.get("provider_task_id") or "")
    if expected_task and status.task_id != expected_task:
        # The right secret with another task's result: never hand that to the execution.
        _log(svc, job_id, job, "wrong_task")
        return CallbackOutcome(409, "wrong_task")
    if status.state is TaskState.PENDING:
        # A progress notice: the execution keeps waiting (and polling as a fallback).
        _log(svc, job_id, job, "progress")
        return CallbackOutcome(202, "progress")
    fields: dict[str, Any] = {"callback_received_at": now_iso(svc.clock())}
    if not expected_task and job.get("submit_marker") and status.task_id:
        # The submit was sent but its answer is lost (or still on its way): the callback names
        # the task, and the job follows it instead of failing OutcomeUnknownError.
        fields |= {"provider_task_id": status.task_id, "status": JobStatus.RUNNING.value}
    error = status.failure()
    output = status.poll_state(wait_seconds=0, polls=int(job.get("polls") or 0))
    if error is None and status.state is TaskState.DONE:
        # Kept for a job whose callback wait has already timed out: its next Check collects
        # these results without another status read (picflow.job.check).
        fields["callback_poll"] = output
    updated = svc.store.update(job_id, fields)
    _log(svc, job_id, updated or job, "accepted")
    token = str(job.get("task_token") or "")
    if not token:
        return CallbackOutcome(202, "accepted")
    from botocore.exceptions import ClientError

    try:
        if error is not None:
            svc.store.update(job_id, {"last_error": error.to_dict()})
            svc.sfn.send_task_failure(
                taskToken=token, error=type(error).__name__, cause=f"{error.code}: {error.message}"[:256]
            )
        else:
            svc.sfn.send_task_success(taskToken=token, output=json.dumps(output))
    except ClientError as exc:
        # The wait already timed out and the job fell back to polling: its next Check takes the
        # results kept above (a failure it reads from the provider itself).
        if exc.response["Error"]["Code"] not in ("TaskTimedOut", "InvalidToken", "TaskDoesNotExist"):
            raise
    return CallbackOutcome(200, "accepted")


def body_of(event: Mapping[str, Any]) -> bytes:
    """The raw body of an API Gateway proxy event."""
    import base64

    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(raw)
    return str(raw).encode()
