"""Check (statemachine/job.asl.json): read the upstream task once and say when to read it again.

The poll loop costs 2 transitions a read (WaitToCheck, Check), no Choice: while the task runs
Check returns the next wait and the state machine goes on to WaitToCheck; when the task is done
the handler raises :class:`TaskDone`, its message the poll state as JSON, and Check's Catch puts
it at ``$.poll`` and goes to Collect (:func:`done_poll` reads it back). TaskDone is a signal, not
a failure: it is raised once per polled job and never recorded on the job (Lambda's Errors
metric counts it; no alarm watches that metric, the job alarm watches failed executions).

Every wait is a Wait state of the state machine (data it gets back from here): a Lambda never
sleeps while polling, and the execution history shows each status read. A failed read says
nothing about the task, so it is retried until the deadline; a failed task fails the job
(:meth:`~picflow.core.tasks.TaskStatus.raise_for_failure`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.services import Services, services
from picflow.core.deadline import enforce_deadline, wait_within
from picflow.core.errors import DeadlineExceededError, OutcomeUnknownError, RateLimitedError, TransientError
from picflow.core.polling import SUBMIT_GRACE, next_wait, scaled
from picflow.job.steps import records_errors

if TYPE_CHECKING:
    from picflow.core.state import JobMeta, JobState, PollState

__all__ = ["MAX_CHECK_ERRORS", "TaskDone", "check", "done_poll"]

MAX_CHECK_ERRORS = 8


class TaskDone(Exception):  # noqa: N818 - the state machine's name for "done", not an error
    """Raised by the operation handler when Check saw the task done (see the module docstring)."""

    def __init__(self, poll: Mapping[str, Any]) -> None:
        super().__init__(json.dumps(poll, separators=(",", ":")))
        self.poll = dict(poll)


def done_poll(poll: Mapping[str, Any]) -> dict[str, Any]:
    """``$.poll`` as Collect gets it: Check's poll state, also when it came through the TaskDone
    Catch (``{"Error": "TaskDone", "Cause": <Lambda's error JSON>}``)."""
    if poll.get("Error") == TaskDone.__name__ and "Cause" in poll:
        cause = json.loads(str(poll["Cause"]))
        inner = json.loads(str(cause["errorMessage"]))
        if isinstance(inner, dict):
            return inner
    return dict(poll)


@records_errors
def check(operation: str, state: JobState, svc: Services | None = None) -> PollState:
    from picflow.core.catalogue import TaskState, get_operation

    svc = svc or services()
    op = get_operation(operation)
    job_id = str(state["job_id"])
    job_meta = state["job"]
    record = svc.store.get(job_id) or {}
    submitted: Any = state.get("submit") or {}
    task_id = str(record.get("provider_task_id") or submitted.get("Payload", {}).get("task_id") or "")
    now = svc.clock()
    started = float(record.get("submitted_epoch") or now)
    previous: Mapping[str, Any] = state.get("poll") or {}
    errors = int(previous.get("errors", 0))
    # The last read that saw the task running bounds its duration from below: Collect records
    # it for the next job's first wait (picflow.aws.durations).
    elapsed = round(now - started, 3)
    last_pending = float(previous.get("last_pending") or 0.0)
    if not task_id:
        if _awaits_callback(job_meta, record, now):
            # The submit's answer was lost; its callback may still name the task (until the
            # deadline, then the submit's own OutcomeUnknownError): read the record again.
            polls = svc.store.add_polls(job_id, None)
            since = float(record.get("awaiting_task_since") or now)
            if not record.get("awaiting_task_since"):
                svc.store.update(job_id, {"awaiting_task_since": now})
            pause = wait_within(job_meta, now, scaled(next_wait(op.provider, now - since, None)))
            return {"state": "pending", "task_id": None, "wait_seconds": pause, "polls": polls,
                    "errors": errors, "results": [], "progress": None,
                    "elapsed": elapsed, "last_pending": last_pending}  # fmt: skip
        _await_submit(svc, job_id, record, now)
        polls = svc.store.add_polls(job_id, None)
        _enforce_deadline(job_meta, now, polls)
        return {"state": "pending", "task_id": None, "wait_seconds": scaled(op.spec.poll_floor),
                "polls": polls, "errors": errors, "results": [], "progress": None,
                "elapsed": elapsed, "last_pending": last_pending}  # fmt: skip
    late = record.get("callback_poll")
    if isinstance(late, Mapping) and late.get("state") == "done" and late.get("task_id") == task_id:
        # A callback came after the callback wait had ended: its results, no status read.
        return {**late, "wait_seconds": 0, "polls": int(record.get("polls") or 0),  # type: ignore[typeddict-item]
                "errors": errors, "elapsed": elapsed, "last_pending": last_pending}  # fmt: skip
    try:
        # The operation lets a provider name its results (a single background image as IMAGES).
        status = svc.providers.client(op.provider).status(task_id, operation=op.name)
    except (TransientError, RateLimitedError) as exc:
        # A failed status read says nothing about the task: keep polling until the deadline.
        errors += 1
        if errors > MAX_CHECK_ERRORS:
            raise
        polls = svc.store.add_polls(job_id, None)
        retry_after = exc.retry_after
        wait = retry_after if retry_after is not None else next_wait(op.provider, now - started, None)
        _enforce_deadline(job_meta, now, polls)
        left = wait_within(job_meta, now, scaled(wait))
        return {"state": "pending", "task_id": task_id, "wait_seconds": left, "polls": polls,
                "errors": errors, "results": [], "progress": None,
                "elapsed": elapsed, "last_pending": last_pending}  # fmt: skip
    polls = svc.store.add_polls(job_id, status.progress)
    status.raise_for_failure()
    if status.state is TaskState.DONE:
        return {
            **status.poll_state(wait_seconds=0, polls=polls),
            "elapsed": elapsed,
            "last_pending": last_pending,
        }
    _enforce_deadline(job_meta, now, polls)
    wait = wait_within(job_meta, now, scaled(next_wait(op.provider, now - started, status.progress)))
    # It was still running at this read.
    return {**status.poll_state(wait_seconds=wait, polls=polls), "elapsed": elapsed, "last_pending": elapsed}


def _awaits_callback(job_meta: JobMeta, record: Mapping[str, Any], now: float) -> bool:
    """The submit's answer was lost but the provider has the job's callback URL: wait for the
    callback (True) while the deadline allows; at the deadline the submit's error ends the job."""
    error = record.get("last_error") or {}
    if not (record.get("awaiting_callback") and error.get("type") == OutcomeUnknownError.__name__):
        return False
    if now < float(job_meta["deadline_at"]):
        return True
    raise OutcomeUnknownError(
        f"{error.get('message') or 'the submit answer was lost'}; no callback named the task by the deadline",
        provider=error.get("provider"),
        code=error.get("code"),
        http_status=error.get("http_status"),
        request_id=error.get("request_id"),
    )


def _await_submit(svc: Services, job_id: str, record: Mapping[str, Any], now: float) -> None:
    """Check before the submit recorded a task: the callback wait can end while a slow submit runs.

    The job waits for the task (returns), until the submit has surely ended (SUBMIT_GRACE after
    this was first seen). A submit that ended in doubt, or still holds its claim, is
    OutcomeUnknownError (never pay again); one that ended without paying fails the job.
    """
    error = record.get("last_error") or {}
    if record.get("submit_marker") and error.get("type") == OutcomeUnknownError.__name__:
        raise OutcomeUnknownError(
            str(error.get("message") or "the submit's outcome is unknown"),
            provider=error.get("provider"),
            code=error.get("code"),
            http_status=error.get("http_status"),
            request_id=error.get("request_id"),
        )
    since = float(record.get("awaiting_task_since") or 0.0)
    if not since:
        svc.store.update(job_id, {"awaiting_task_since": now})
    elif now - since > SUBMIT_GRACE:
        if record.get("submit_marker"):
            raise OutcomeUnknownError(
                "the submit never reported back; it may have reached the provider", code="SubmitInDoubt"
            )
        raise TransientError(
            f"the submit ended without a task ({error.get('type', 'no error recorded')})", code="NoTask"
        )


def _enforce_deadline(job_meta: JobMeta, now: float, polls: int) -> None:
    enforce_deadline(job_meta, now, waiting_for="the upstream task was still running")
    if polls >= int(job_meta["max_polls"]):
        raise DeadlineExceededError(f"no result after {polls} status checks", code="MaxPolls")
