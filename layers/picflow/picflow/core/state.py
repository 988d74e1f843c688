"""The state the job state machine carries (statemachine/job.asl.json), as TypedDicts.

Plain dicts at run time (no cost at a cold start, JSON as Step Functions passes it), checked by
mypy between the ASL's states and the step functions in :mod:`picflow.job`. The state carries S3
keys and small metadata only (Step Functions' 256 KiB limit): image bytes never pass through it.

Built up as an execution runs::

    JobRequest                      the execution's input (API, S3 trigger, a parent state machine)
    └─ Validate  → JobState         {job_id, operation, params, input, out_prefix, job: JobMeta,
                                     cache: CacheState, slot: SlotState | None, ...}
       Submit    → $.submit.Payload  SubmitOut
       Check / a callback → $.poll   PollState (its results: ResultState)
       Collect / Reuse → $.result    JobResult
       a Catch   → $.error           CaughtError
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, Required, TypedDict

__all__ = [
    "CacheEntry",
    "CacheState",
    "CaughtError",
    "InputRef",
    "JobMeta",
    "JobRequest",
    "JobResult",
    "JobState",
    "PollState",
    "ResultState",
    "SlotState",
    "SubmitOut",
]


class InputRef(TypedDict):
    """An S3 object, pinned to its version where the bucket has versions."""

    bucket: str
    key: str
    version_id: NotRequired[str | None]


class JobRequest(TypedDict, total=False):
    """What starts a job: the execution's input, plus (Validate adds them) its name and id."""

    job_id: Required[str]
    execution_id: str | None
    operation: str
    params: dict[str, Any]
    input: InputRef
    mode: str  # auto | sync | poll | callback
    notify_url: str | None
    source: str  # api | s3 | sfn | batch | pipeline
    out_prefix: str
    reuse: bool
    batch_id: str
    pausable: bool  # False: a pipeline's later steps, which a batch pause never stops
    params_error: str  # the S3 trigger could not read the params: Validate fails the job with it
    tenant: str  # who owns the job (core.names.DEFAULT_TENANT when absent)


class JobMeta(TypedDict):
    """What Validate decided (``$.job``): the rest of the job reads it, never works it out again."""

    provider: str
    style: str
    function: str  # the Lambda function of the operation (Submit and Check invoke it)
    deadline_at: float
    max_polls: int
    callback_timeout: int
    heartbeat: int
    first_wait: int
    slot_ttl: int
    cost_units: int
    cost_unit: str
    cache_key: str
    # The params' duration history key (Params.duration_key): Collect records the task's duration
    # under it too. Absent in states from before it, and when no param changes the duration.
    params_key: NotRequired[str | None]


class CacheEntry(TypedDict):
    """A result-cache hit: the earlier job's outputs, where they are."""

    job_id: str
    bucket: str
    manifest_key: str
    outputs: list[dict[str, Any]]
    texts: dict[str, str]


class CacheState(TypedDict):
    hit: bool
    key: str
    entry: NotRequired[CacheEntry]
    stale: NotRequired[str]  # a finished entry whose outputs are gone: may be claimed over
    twin: NotRequired[str]  # an identical job paying right now: wait for it
    wait_seconds: NotRequired[int]


class SlotState(TypedDict, total=False):
    acquired: bool
    holders: int
    cap: int
    wait_seconds: int
    tries: int  # the tries for a slot so far: the wait before the next one backs off
    released: bool


class ResultState(TypedDict):
    """One result as the state carries it: a URL or a text (a file never leaves its invocation)."""

    kind: str
    url: str | None
    text: str | None
    index: int


class PollState(TypedDict, total=False):
    """``$.poll``: what the last status read (Check, or a callback) saw."""

    state: Required[str]  # pending | done | throttled
    task_id: str | None
    progress: int | None
    results: list[ResultState]
    wait_seconds: int
    polls: int
    errors: int
    elapsed: float  # seconds since submit at this read
    last_pending: float  # elapsed at the last read that saw the task running


class JobResult(TypedDict):
    """Where a finished job's outputs are (Collect, Reuse, a sync Submit)."""

    manifest_key: str | None
    primary_key: str | None
    outputs: int
    reused: bool


class SubmitOut(TypedDict, total=False):
    """``$.submit.Payload``: pending (wait, then Check), throttled (wait, then Submit again) or
    collected (a sync answer, stored in the same invocation: JobResult's keys too)."""

    state: Required[str]  # pending | throttled | collected | awaiting_callback (answer lost)
    task_id: str | None
    wait_seconds: int
    reason: str
    balance: dict[str, Any]
    manifest_key: str | None
    primary_key: str | None
    outputs: int
    reused: bool


class CaughtError(TypedDict, total=False):
    """``$.error``: what a Catch put there (Step Functions' names)."""

    Error: str
    Cause: str


class JobState(TypedDict, total=False):
    """The job's state after Validate, as every later step receives it."""

    job_id: Required[str]
    execution_id: str | None
    operation: Required[str]
    params: Required[dict[str, Any]]
    input: Required[InputRef]
    notify_url: str | None
    out_prefix: str
    job: Required[JobMeta]
    reuse: bool
    cache: CacheState
    slot: SlotState | None
    submit: dict[Literal["Payload"], SubmitOut]
    poll: PollState
    result: JobResult
    error: CaughtError
    batch_id: str
    paused: bool
    tenant: str
