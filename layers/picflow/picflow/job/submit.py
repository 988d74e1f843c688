"""Submit (statemachine/job.asl.json): the one paid call of a job, never made twice.

Generic over providers: the operation's spec says how the provider takes the image (a presigned
URL, or the bytes spooled to /tmp and uploaded), which styles it offers and whether there is a
task to follow; the client is the registry's for the operation's provider. A synchronous answer is
collected in this invocation (its base64 results live only here).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import now_iso
from picflow.aws.services import Services, services
from picflow.core import config
from picflow.core.deadline import enforce_deadline, wait_within
from picflow.core.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    OutcomeUnknownError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
)
from picflow.core.polling import SLOT_WAIT, scaled
from picflow.job.collect import store_recovering
from picflow.job.steps import records_errors

if TYPE_CHECKING:
    from picflow.core.catalogue import CheckedParams, Operation, Style
    from picflow.core.state import InputRef, JobState, SubmitOut
    from picflow.core.tasks import Submission
    from picflow.providers.base import ImageInput

__all__ = ["submit"]


@records_errors
def submit(
    operation: str, state: JobState, task_token: str | None = None, svc: Services | None = None
) -> SubmitOut:
    """Make the one paid call of a job (never twice; see JobStore.claim_submit)."""
    from picflow.core.catalogue import CheckedParams, Style, TaskState, get_operation

    svc = svc or services()
    op = get_operation(operation)
    job_id = str(state["job_id"])
    # Validate checked them against the operation's model and handed on its dump: the client sends
    # them as they are (building the model again is pydantic's ~65 ms in a cold submit).
    params = CheckedParams(op.name, state.get("params") or {})
    style = Style(state["job"]["style"])
    store = svc.store
    if task_token is not None:
        store.update(job_id, {"task_token": task_token})
    try:
        claim = store.claim_submit(job_id)
    except OutcomeUnknownError as doubt:
        # An earlier attempt (a crashed or retried invocation) may have paid: with its callback
        # URL sent, the callback can still name the task.
        if not (store.get(job_id) or {}).get("callback_secret_sha256"):
            raise
        return _await_callback(svc, state, task_token, doubt)
    if claim.task_id is not None:
        if op.styles == {Style.SYNC}:
            # A sync-only provider has no task to read again: the paid answer of the earlier
            # attempt (its results lived only in that invocation) is lost. Never pay again.
            raise ResultUnavailableError(
                "the paid answer was lost before its results were stored (a sync call has no task"
                " to read again)",
                provider=op.provider.value,
                code="SyncResultLost",
            )
        # An earlier attempt submitted already: follow that task, pay nothing.
        return {"state": "pending", "task_id": claim.task_id, "wait_seconds": scaled(op.spec.poll_floor)}
    submitted_at = svc.clock()
    try:
        # The throttled-submit loop (WaitThrottled, WaitThrottledCallback) ends here at the deadline.
        enforce_deadline(state["job"], submitted_at, waiting_for="the provider kept refusing the submit")
    except DeadlineExceededError:
        store.release_submit(job_id)  # nothing was sent
        raise
    try:
        submission = _call_provider(op, params, style, state, svc)
    except (TransientError, RateLimitedError) as exc:
        # These mean the provider did not take the task: a later attempt may pay.
        store.release_submit(job_id)
        if isinstance(exc, RateLimitedError):
            wait = exc.retry_after if exc.retry_after is not None else SLOT_WAIT
            throttled: SubmitOut = {
                "state": "throttled",
                "wait_seconds": wait_within(state["job"], submitted_at, scaled(wait)),
                "reason": type(exc).__name__,
            }
            if task_token is not None:
                # The execution waits on this token: hand the verdict over through it.
                svc.sfn.send_task_success(taskToken=task_token, output=json.dumps(throttled))
            return throttled
        raise
    except OutcomeUnknownError as lost:
        if not _calls_back(op, style):
            raise  # no callback URL went out: nothing can name the task
        return _await_callback(svc, state, task_token, lost)
    task_id = submission.task_id or submission.request_id or f"sync-{job_id}"
    fields: dict[str, Any] = {"submitted_at": now_iso(submitted_at), "submitted_epoch": submitted_at}
    if submission.balance is not None:
        fields["balance"] = {
            "remaining_count": submission.balance.remaining_count,
            "remaining_money": submission.balance.remaining_money,
        }
    store.record_submitted(job_id, task_id, fields)
    balance = fields.get("balance")
    status = submission.status
    out: SubmitOut
    if status is not None and status.state is not TaskState.PENDING:
        status.raise_for_failure()
        # Sync answers are collected in this invocation: base64 results live only here. A refused
        # or cut download is recovered from the task's status where the provider keeps one.
        stored = store_recovering(op, state, status.results, svc)
        out = {
            "state": "collected",
            "task_id": task_id,
            "manifest_key": stored["manifest_key"],
            "primary_key": stored["primary_key"],
            "outputs": stored["outputs"],
            "reused": stored["reused"],
        }
    else:
        # Validate worked out the first wait from how long this operation's tasks take.
        first = state["job"].get("first_wait", scaled(op.spec.poll_floor))
        first = wait_within(state["job"], svc.clock(), first)
        out = {"state": "pending", "task_id": task_id, "wait_seconds": first}
        if task_token is not None:
            _callback_window_starts(svc, task_token)
    if balance:
        out["balance"] = balance
    return out


def _await_callback(
    svc: Services, state: JobState, task_token: str | None, lost: OutcomeUnknownError
) -> SubmitOut:
    """The paid call's answer was lost, but the provider has this job's callback URL: if it took
    the task it calls back naming it (picflow.entry.callbacks adopts the task id). A callback job
    keeps waiting on its token, a polled one goes on to its poll loop; either way Check waits for
    the callback until the deadline (picflow.job.check), then the job fails with this error."""
    svc.store.update(str(state["job_id"]), {"last_error": lost.to_dict(), "awaiting_callback": True})
    if task_token is None:
        first = wait_within(state["job"], svc.clock(), state["job"].get("first_wait", scaled(SLOT_WAIT)))
        return {"state": "pending", "task_id": None, "wait_seconds": first}
    _callback_window_starts(svc, task_token)
    return {"state": "awaiting_callback", "task_id": None, "reason": type(lost).__name__}


def _callback_window_starts(svc: Services, task_token: str) -> None:
    """The provider has the task: restart the wait's heartbeat clock, so the callback gets its
    whole window (``callback_timeout``) counted from now, not from before a slow submit."""
    from botocore.exceptions import ClientError

    # A refusal means the callback came first or the wait already ended (the job then polls):
    # either way nothing is lost.
    with contextlib.suppress(ClientError):
        svc.sfn.send_task_heartbeat(taskToken=task_token)


def _presigned_input(svc: Services, source: InputRef, seconds: int = 3600) -> str:
    params: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
    if source.get("version_id"):
        params["VersionId"] = source["version_id"]
    return svc.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)


def _callback_url(svc: Services, job_id: str) -> str:
    """A per-job callback URL whose secret only the job record's sha256 can check."""
    secret = secrets.token_urlsafe(32)
    svc.store.update(job_id, {"callback_secret_sha256": hashlib.sha256(secret.encode()).hexdigest()})
    base = config.env(config.CALLBACK_BASE_URL).rstrip("/")
    return f"{base}/callbacks/{job_id}/{secret}"


@contextlib.contextmanager
def _image(op: Operation, source: InputRef, svc: Services) -> Iterator[ImageInput]:
    """The source image the way the operation's provider takes it (its spec's ``input.source``)."""
    from picflow.providers.base import ImageInput

    if not op.input.takes_file:
        yield ImageInput(url=_presigned_input(svc, source))
        return
    kwargs: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
    if source.get("version_id"):
        kwargs["VersionId"] = source["version_id"]
    with tempfile.TemporaryFile() as tmp:
        # Spooled to /tmp so httpx can send a Content-Length (the provider checks its size limit).
        for chunk in _input_body(svc, kwargs).iter_chunks(1024 * 1024):
            tmp.write(chunk)
        tmp.seek(0)
        yield ImageInput(file=tmp, filename=str(source["key"]).rsplit("/", 1)[-1] or "image")


def _input_body(svc: Services, kwargs: dict[str, Any]) -> Any:
    """The input's bytes; an input deleted since Validate is InputNotFound (nothing is paid)."""
    from botocore.exceptions import ClientError

    try:
        return svc.s3.get_object(**kwargs)["Body"]
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
        raise InvalidRequestError(
            f"input s3://{kwargs['Bucket']}/{kwargs['Key']} is gone", code="InputNotFound"
        ) from exc


def _calls_back(op: Operation, style: Style) -> bool:
    """Callback jobs, and polled jobs whose provider can call back when callbacks are configured:
    if the submit's answer is lost, the callback still names the paid task (issue 15); when it
    comes first, Check collects it without a status read."""
    from picflow.core.catalogue import Style

    if style is Style.CALLBACK:
        return True
    configured = bool(config.optional(config.CALLBACK_BASE_URL))
    return style is Style.POLL and Style.CALLBACK in op.styles and configured


def _call_provider(
    op: Operation, params: CheckedParams, style: Style, state: JobState, svc: Services
) -> Submission:
    from picflow.core.catalogue import Style

    job_id = str(state["job_id"])
    with contextlib.ExitStack() as held:
        try:
            callback_url = _callback_url(svc, job_id) if _calls_back(op, style) else None
            client = svc.providers.client(op.provider)
            image = held.enter_context(_image(op, state["input"], svc))
        except Exception:
            # Nothing was sent (an S3 read of the input failed, say): a retry may submit. Kept,
            # the claim made the retry refuse as in doubt (the chaos bench's S3 faults showed it).
            svc.store.release_submit(job_id)
            raise
        return client.submit(op.name, params, image, sync=style is Style.SYNC, callback_url=callback_url)
