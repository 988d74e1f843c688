"""The steps of the job state machine (statemachine/job.asl.json), one function per state.

Handlers in ``functions/`` only parse the event and call these. The state carries S3 keys
and small metadata only (Step Functions' 256 KiB limit): image bytes never pass through it.

State shape, built up as the execution runs::

    {job_id, operation, params, input{bucket,key,version_id}, notify_url, mode, out_prefix,
     job{provider, style, function, deadline_at, callback_timeout, heartbeat, slot_ttl},
     cache{hit, key, entry?}, slot{acquired, wait_seconds}, submit{Payload{...}}, poll{...},
     result{...}, error{...}}
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.cache import cache_key
from picflow.aws.jobs import JobStatus, JobStore, now_iso
from picflow.aws.semaphore import Semaphore
from picflow.core import config
from picflow.core.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    OutcomeUnknownError,
    ParamValidationError,
    PicflowError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)

# The catalogue (pydantic models), the provider clients (httpx) and images (Pillow) are imported
# where they are used, so the Slot, Finalize and Notify functions never load them
# (bench/coldstart.py); the handlers that need them on every invocation import them at init.
if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from picflow.aws.cache import ResultCache
    from picflow.aws.durations import DurationHistory
    from picflow.core.catalogue import Operation, Provider, Style
    from picflow.providers.base import ResultRef, TaskStatus
    from picflow.providers.registry import Registry

__all__ = [
    "Services",
    "acquire_slot",
    "await_twin",
    "check",
    "collect",
    "first_wait",
    "next_wait",
    "notify",
    "record_failure",
    "release_slot",
    "reuse",
    "services",
    "state_from_event",
    "submit",
    "task_duration",
    "validate",
]

# Polling schedule (bench/polling.py measures it). A task that ends at t should be noticed
# within max(2 s, 10 % of t): after a read at t the next comes at most that much later
# (times POLL_MARGIN), and never sooner than the provider's floor (HD redraw caches status
# for 3 s: polling faster buys nothing) nor later than POLL_CEILING (long tasks are noticed
# sooner than by a fixed 30 s poll). The first read waits for what the operation's recent
# tasks took (picflow.aws.durations), so short and long tasks alike cost a few reads.
POLL_FLOOR: dict[str, float] = {"taskpic": 1.0, "hdredraw": 3.0, "tencent": 1.0}  # by Provider
POLL_MIN_DELAY = 2.0
POLL_RATIO = 0.1
POLL_MARGIN = 0.95
POLL_CEILING = 15.0
POLL_SPREAD = 0.9
# Where in the last gap between reads a polled task is taken to have ended (task_duration):
# past the middle would let a task at the quick end of the gap be noticed too late.
POLL_INTERPOLATE = 0.5
SLOT_WAIT = 2.0
MAX_CHECK_ERRORS = 8
# Longer than an operation function may run (its Timeout in template.yaml, 90 s): a submit still
# without a task this long after Check first looked for one has ended.
SUBMIT_GRACE = 120.0


class Services:
    """What the steps talk to; built lazily once per container, replaceable in tests."""

    def __init__(
        self,
        *,
        store: JobStore | None = None,
        s3: S3Client | None = None,
        semaphore: Semaphore | None = None,
        providers: Registry | None = None,
        durations: DurationHistory | None = None,
        cache: ResultCache | None = None,
        coordination: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._coordination = coordination
        self._cache = cache
        self._s3 = s3
        self._semaphore = semaphore
        self._durations = durations
        self._sfn: SFNClient | None = None
        self._events: EventBridgeClient | None = None
        self._dynamodb: Any = None
        self._providers = providers
        self.clock = clock

    @property
    def providers(self) -> Registry:
        if self._providers is None:
            from picflow.providers.registry import registry

            self._providers = registry()
        return self._providers

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore(self._table(config.JOBS_TABLE))
        return self._store

    @property
    def cache(self) -> ResultCache:
        if self._cache is None:
            from picflow.aws.cache import ResultCache

            self._cache = ResultCache(self._table(config.RESULT_CACHE_TABLE))
        return self._cache

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def sfn(self) -> SFNClient:
        if self._sfn is None:
            import boto3

            self._sfn = boto3.client("stepfunctions")
        return self._sfn

    @property
    def events(self) -> EventBridgeClient:
        if self._events is None:
            import boto3

            self._events = boto3.client("events")
        return self._events

    @property
    def durations(self) -> DurationHistory:
        if self._durations is None:
            from picflow.aws.durations import DynamoDurationHistory

            self._durations = DynamoDurationHistory(self._coordination_table())
        return self._durations

    def _table(self, name_variable: str) -> Any:
        # One DynamoDB resource for the jobs, cache and coordination tables: each resource is a
        # client of its own (~7 ms of CPU to build, and its own connections).
        if self._dynamodb is None:
            import boto3

            self._dynamodb = boto3.resource("dynamodb")
        return self._dynamodb.Table(config.env(name_variable))

    def _coordination_table(self) -> Any:
        if self._coordination is None:
            self._coordination = self._table(config.SEMAPHORE_TABLE)
        return self._coordination

    @property
    def coordination_table(self) -> Table:
        """The table of provider slots, durations and batch pause flags."""
        table: Table = self._coordination_table()
        return table

    @property
    def semaphore(self) -> Semaphore:
        if self._semaphore is None:
            self._semaphore = Semaphore(self._coordination_table(), clock=self.clock)
        return self._semaphore


@functools.cache
def services() -> Services:
    return Services()


def _records_errors[**P, R](step: Callable[P, R]) -> Callable[P, R]:
    """Write a step's failure onto the job before re-raising it for Step Functions' Catch."""

    @functools.wraps(step)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return step(*args, **kwargs)
        except PicflowError as exc:
            _record_error(args, kwargs, exc.to_dict())
            raise
        except Exception as exc:
            _record_error(args, kwargs, {"type": "InternalError", "message": type(exc).__name__})
            raise

    return wrapper


def _record_error(args: Any, kwargs: Any, error: dict[str, Any]) -> None:
    state = kwargs.get("state") or next((a for a in args if isinstance(a, Mapping)), None)
    svc = kwargs.get("svc") or services()
    if isinstance(state, Mapping) and state.get("job_id"):
        # The original error matters more than this write: never mask it.
        with contextlib.suppress(Exception):
            svc.store.update(str(state["job_id"]), {"last_error": error})


# --- Validate ----------------------------------------------------------------------------


def _style(op: Operation, mode: str) -> Style:
    from picflow.core.catalogue import Style

    if mode != "auto":
        style = Style(mode)
        if style not in op.styles:
            raise ParamValidationError(
                f"{op.name} cannot run in {mode} mode",
                field="mode",
                rule="one of " + ", ".join(sorted(s.value for s in op.styles)),
            )
        return style
    if Style.SYNC in op.styles and len(op.styles) == 1:
        return Style.SYNC
    if Style.CALLBACK in op.styles and config.optional(config.CALLBACK_BASE_URL):
        return Style.CALLBACK
    return Style.POLL


def _inspect_input(
    op: Operation, bucket: str, key: str, version_id: str | None, s3: S3Client
) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    from picflow.core.images import inspect_image

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        head = s3.head_object(**kwargs)
    except ClientError as exc:
        raise InvalidRequestError(f"input s3://{bucket}/{key} is not readable", code="InputNotFound") from exc
    size = int(head["ContentLength"])
    if size > op.input.max_bytes:
        raise ParamValidationError(
            f"the image is {size} bytes; the limit is {op.input.max_bytes}",
            field="image",
            rule=f"at most {op.input.max_bytes} bytes",
        )
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as tmp:
        body = s3.get_object(**kwargs)["Body"]
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
            tmp.write(chunk)
        info = inspect_image(tmp, op.input)
    return {
        "bucket": bucket,
        "key": key,
        "version_id": version_id or head.get("VersionId"),
        "size": info.size_bytes,
        "format": info.format,
        "width": info.width,
        "height": info.height,
        "content_type": info.content_type,
        "sha256": digest.hexdigest(),
    }


def state_from_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Validate task's payload: the execution input plus the execution's name and id.

    The job id is the execution name, so a caller that names executions after an
    idempotency key (API, S3 trigger, a parent state machine) gets one job per key.
    """
    request = dict(event.get("request") or {})
    request.setdefault("job_id", event.get("execution_name"))
    request["execution_id"] = event.get("execution_id")
    return request


@_records_errors
def validate(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    """Check everything that can be checked before money is spent; create/refresh the job."""
    from picflow.core.catalogue import get_operation, validate_params

    svc = svc or services()
    job_id = str(state["job_id"])
    source = state.get("input") or {}
    # The record exists before anything can fail, so every failure is a recorded FAILED job.
    svc.store.create(
        {
            "job_id": job_id,
            "operation": str(state.get("operation", "")),
            "params": state.get("params") or {},
            "input": source,
            "source": state.get("source", "sfn"),
            "execution_id": state.get("execution_id"),
            "batch_id": state.get("batch_id"),
        }
    )
    if state.get("batch_id") and state.get("pausable", True) is not False:
        paused = _paused(svc, job_id, str(state["batch_id"]))
        if paused is not None:
            return paused
    op = get_operation(str(state.get("operation", "")))
    if state.get("params_error"):
        raise ParamValidationError(str(state["params_error"]), field="params", rule="a JSON object")
    params = validate_params(op, state.get("params") or {})
    style = _style(op, str(state.get("mode") or "auto"))
    if not source.get("bucket") or not source.get("key"):
        raise ParamValidationError("input needs bucket and key", field="input", rule="an S3 object")
    if state.get("notify_url"):
        from picflow.net.urls import UnsafeUrlError, check_public_url

        try:
            check_public_url(str(state["notify_url"]))
        except UnsafeUrlError as exc:
            raise ParamValidationError(
                f"notify_url: {exc.message}", field="notify_url", rule=exc.rule
            ) from None
    info = _inspect_input(op, str(source["bucket"]), str(source["key"]), source.get("version_id"), svc.s3)
    now = svc.clock()
    deadline = config.env_int(config.JOB_DEADLINE, 1800)
    callback_timeout = config.env_int(config.CALLBACK_TIMEOUT, 600)
    meta = {
        "provider": op.provider.value,
        "style": style.value,
        "function": config.operation_function(op.name),
        "deadline_at": now + deadline,
        "max_polls": config.env_int(config.MAX_POLLS, 200),
        # The wait's heartbeat is the callback window; the submit restarts it once the provider
        # has the task. The hard timeout only adds room for the submit itself.
        "callback_timeout": callback_timeout + round(SUBMIT_GRACE),
        "heartbeat": callback_timeout,
        "first_wait": _scaled(first_wait(op.provider, svc.durations.recent(op.name))),
        "slot_ttl": deadline + 300,
        "cost_units": op.cost.units(params),
        "cost_unit": op.cost.unit,
    }
    clean_params = params.model_dump(mode="json", exclude_none=True)
    key = cache_key(op.name, info["sha256"], clean_params)
    meta["cache_key"] = key
    out_prefix = state.get("out_prefix") or f"jobs/{job_id}/"
    svc.store.update(
        job_id,
        {
            "operation": op.name,
            "provider": op.provider.value,
            "style": style.value,
            "params": clean_params,
            "input": info,
            "out_prefix": out_prefix,
            "cost_units": meta["cost_units"],
            "cost_unit": op.cost.unit,
            "cache_key": key,
            "validated_at": now_iso(now),
        },
    )
    out = {
        "job_id": job_id,
        "execution_id": state.get("execution_id"),
        "operation": op.name,
        "params": clean_params,
        "input": {k: info[k] for k in ("bucket", "key", "version_id")},
        "notify_url": state.get("notify_url"),
        "out_prefix": out_prefix,
        "job": meta,
        "reuse": state.get("reuse", True) is not False,
    }
    return {**out, **_cache_or_slot(out, svc)}


def _paused(svc: Services, job_id: str, batch_id: str) -> dict[str, Any] | None:
    """A job of a paused batch that has not started ends here, before the result cache, the
    claim and the slot: nothing is paid. Its record is CANCELLED (a BatchPaused error); its
    execution goes on to succeed (Route's Paused), so the map counts no failure. One GetItem."""
    from picflow.batch.batches import PAUSED_ERROR, paused_at

    when = paused_at(svc.coordination_table, batch_id)
    if when is None:
        return None
    error = {
        "type": PAUSED_ERROR,
        "message": f"batch {batch_id} was paused at {when} before this item started; resume it to run it",
    }
    svc.store.update(
        job_id, {"status": JobStatus.CANCELLED.value, "error": error, "completed_at": now_iso(svc.clock())}
    )
    return {"job_id": job_id, "batch_id": batch_id, "paused": True, "error": error}


def _cache_or_slot(state: Mapping[str, Any], svc: Services) -> dict[str, Any]:
    """Reuse earlier results, wait for an identical job already paying, or take a provider slot.

    The first try for the slot happens here, not in a state of its own: one transition less
    per job, and AcquireSlot runs only while the provider is full.
    """
    meta = state["job"]
    key = str(meta["cache_key"])
    cache = _cache_lookup(svc, key, enabled=bool(state["reuse"]))
    if not cache["hit"] and state["reuse"]:
        job_id = str(state["job_id"])
        found = svc.cache.claim(key, job_id, float(meta["slot_ttl"]), stale=cache.get("stale"))
        if found is not None and found.get("pending_owner") not in (None, job_id):
            # An identical job is paying right now: wait for its results instead of paying.
            elapsed = svc.clock() - float(found.get("claimed_at") or svc.clock())
            from picflow.core.catalogue import Provider

            wait = _scaled(next_wait(Provider(str(meta["provider"])), max(0.0, elapsed), None))
            return {"cache": {**cache, "twin": found["pending_owner"], "wait_seconds": wait}, "slot": None}
        if found is not None and found.get("outputs"):
            cache = _cache_lookup(svc, key, enabled=True)  # finished just now
    if cache["hit"]:
        return {"cache": cache, "slot": None}
    return {"cache": cache, "slot": acquire_slot(state, svc)}


@_records_errors
def await_twin(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    """After a wait: the identical job's results, or its claim gone (take over), or wait again."""
    svc = svc or services()
    return {**state, **_cache_or_slot(state, svc)}


def _cache_lookup(svc: Services, key: str, *, enabled: bool) -> dict[str, Any]:
    """A hit is an entry whose every output still exists (objects can be deleted or expire)."""
    from botocore.exceptions import ClientError

    entry = svc.cache.get(key) if enabled else None
    if entry is None or entry.get("pending_owner"):  # nothing, or a job still paying for it
        return {"hit": False, "key": key}
    try:
        for output in entry.get("outputs") or []:
            svc.s3.head_object(Bucket=str(entry["bucket"]), Key=str(output["key"]))
    except ClientError:
        return {"hit": False, "key": key, "stale": str(entry.get("stored_at") or "")}
    kept = ("job_id", "bucket", "manifest_key", "outputs", "texts")
    return {"hit": True, "key": key, "entry": {k: entry.get(k) for k in kept}}


# --- provider slot -----------------------------------------------------------------------


def _scaled(seconds: float) -> int:
    return max(0, round(seconds * config.env_float(config.WAIT_SCALE, 1.0)))


def acquire_slot(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    svc = svc or services()
    provider = str(state["job"]["provider"])
    cap = config.concurrency_caps().get(provider, 1)
    got = svc.semaphore.acquire(provider, str(state["job_id"]), cap, float(state["job"]["slot_ttl"]))
    return {"acquired": got.acquired, "holders": got.holders, "cap": cap, "wait_seconds": _scaled(SLOT_WAIT)}


def release_slot(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    svc = svc or services()
    job = state.get("job") or {}
    if not job.get("provider"):
        return {"released": False}
    return {"released": svc.semaphore.release(str(job["provider"]), str(state["job_id"]))}


# --- Submit ------------------------------------------------------------------------------


def _presigned_input(svc: Services, source: Mapping[str, Any], seconds: int = 3600) -> str:
    params: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
    if source.get("version_id"):
        params["VersionId"] = source["version_id"]
    return svc.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=seconds)


def _callback_url(job_id: str, secret: str) -> str:
    base = config.env(config.CALLBACK_BASE_URL).rstrip("/")
    return f"{base}/callbacks/{job_id}/{secret}"


def _refs_to_state(refs: tuple[ResultRef, ...]) -> list[dict[str, Any]]:
    return [
        {"kind": r.kind.value, "url": r.url, "text": r.text, "index": r.index} for r in refs if r.path is None
    ]


def _refs_from_state(raw: list[Mapping[str, Any]]) -> list[ResultRef]:
    from picflow.core.catalogue import ResultKind
    from picflow.providers.base import ResultRef

    return [
        ResultRef(
            kind=ResultKind(r["kind"]), url=r.get("url"), text=r.get("text"), index=int(r.get("index", 0))
        )
        for r in raw
    ]


def _status_out(status: TaskStatus, wait: float, polls: int) -> dict[str, Any]:
    return {
        "state": status.state.value,
        "task_id": status.task_id,
        "progress": status.progress,
        "results": _refs_to_state(status.results),
        "wait_seconds": _scaled(wait),
        "polls": polls,
    }


def _raise_if_failed(status: TaskStatus) -> None:
    from picflow.providers.base import TaskState

    if status.state is TaskState.FAILED:
        raise UpstreamTaskFailedError(
            status.error_message or status.detail or "upstream task failed",
            provider=status.provider.value,
            code=status.error_code,
        )


@_records_errors
def submit(
    operation: str, state: Mapping[str, Any], task_token: str | None = None, svc: Services | None = None
) -> dict[str, Any]:
    """Make the one paid call of a job (never twice; see JobStore.claim_submit)."""
    from picflow.core.catalogue import Style, get_operation, validate_params
    from picflow.providers.base import TaskState

    svc = svc or services()
    op = get_operation(operation)
    job_id = str(state["job_id"])
    params = validate_params(op, state.get("params") or {})
    style = Style(state["job"]["style"])
    store = svc.store
    if task_token is not None:
        store.update(job_id, {"task_token": task_token})
    claim = store.claim_submit(job_id)
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
        return {
            "state": "pending",
            "task_id": claim.task_id,
            "wait_seconds": _scaled(POLL_FLOOR[op.provider]),
        }
    submitted_at = svc.clock()
    try:
        submission = _call_provider(op, params, style, state, svc)
    except (TransientError, RateLimitedError) as exc:
        # These mean the provider did not take the task: a later attempt may pay.
        store.release_submit(job_id)
        if isinstance(exc, RateLimitedError):
            wait = exc.retry_after if exc.retry_after is not None else SLOT_WAIT
            out = {"state": "throttled", "wait_seconds": _scaled(wait), "reason": type(exc).__name__}
            if task_token is not None:
                # The execution waits on this token: hand the verdict over through it.
                svc.sfn.send_task_success(taskToken=task_token, output=json.dumps(out))
            return out
        raise
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
    if status is not None and status.state is not TaskState.PENDING:
        _raise_if_failed(status)
        # Sync answers are collected in this invocation: base64 results live only here.
        out = {"state": "collected", "task_id": task_id, **_collect(op, state, status.results, svc)}
    else:
        # Validate worked out the first wait from how long this operation's tasks take.
        first = state["job"].get("first_wait", _scaled(POLL_FLOOR[op.provider]))
        out = {"state": "pending", "task_id": task_id, "wait_seconds": first}
        if task_token is not None:
            _callback_window_starts(svc, task_token)
    return {**out, "balance": balance} if balance else out


def _callback_window_starts(svc: Services, task_token: str) -> None:
    """The provider has the task: restart the wait's heartbeat clock, so the callback gets its
    whole window (``callback_timeout``) counted from now, not from before a slow submit."""
    from botocore.exceptions import ClientError

    # A refusal means the callback came first or the wait already ended (the job then polls):
    # either way nothing is lost.
    with contextlib.suppress(ClientError):
        svc.sfn.send_task_heartbeat(taskToken=task_token)


def _call_provider(op: Operation, params: Any, style: Style, state: Mapping[str, Any], svc: Services) -> Any:
    from picflow.core.catalogue import Provider, Style
    from picflow.providers.base import ImageInput

    source = state["input"]
    if op.provider is Provider.TENCENT:
        return svc.providers.tencent().replace_background(
            params, _presigned_input(svc, source), workdir=tempfile.gettempdir()
        )
    if op.provider is Provider.TASKPIC:
        callback_url = None
        if style is Style.CALLBACK:
            secret = secrets.token_urlsafe(32)
            svc.store.update(
                str(state["job_id"]), {"callback_secret_sha256": hashlib.sha256(secret.encode()).hexdigest()}
            )
            callback_url = _callback_url(str(state["job_id"]), secret)
        return svc.providers.taskpic().submit(
            op.name,
            params,
            ImageInput(url=_presigned_input(svc, source)),
            sync=style is Style.SYNC,
            callback_url=callback_url,
        )
    kwargs: dict[str, Any] = {"Bucket": source["bucket"], "Key": source["key"]}
    if source.get("version_id"):
        kwargs["VersionId"] = source["version_id"]
    with tempfile.TemporaryFile() as tmp:
        # Spooled to /tmp so httpx can send a Content-Length (the vendor checks the 16 MB limit).
        for chunk in svc.s3.get_object(**kwargs)["Body"].iter_chunks(1024 * 1024):
            tmp.write(chunk)
        tmp.seek(0)
        name = str(source["key"]).rsplit("/", 1)[-1] or "image"
        return svc.providers.hdredraw().submit(op.name, params, ImageInput(file=tmp, filename=name))


# --- Check -------------------------------------------------------------------------------


def _allowed_delay(elapsed: float) -> float:
    return POLL_MARGIN * max(POLL_MIN_DELAY, POLL_RATIO * elapsed)


def next_wait(provider: Provider, elapsed: float, progress: int | None) -> float:
    """Seconds until the next status check (unscaled)."""
    floor = POLL_FLOOR[provider]
    wait = max(floor, min(POLL_CEILING, _allowed_delay(elapsed)))
    if progress and 0 < progress < 100 and elapsed > 0:
        # The provider's progress gives a direct estimate of the time left.
        remaining = elapsed * (100 - progress) / progress
        wait = min(wait, max(floor, remaining))
    return wait


def task_duration(poll: Mapping[str, Any], since_submit: float) -> float | None:
    """How long the upstream task took, or None when nothing can be said.

    Polled: it ended between the last read that saw it running and the read that saw it done;
    the figure is POLL_INTERPOLATE of the way into that gap. The bare lower bound would be
    safe but wastes reads: a blind first job reads at 1, 3, 5 s and would teach "3 s" for a
    5 s task. When the very first read already saw it done there is no gap, and nothing is
    learned. Called back: the provider called as it finished, so the time since submit is
    close to exact.
    """
    if "elapsed" not in poll:
        return since_submit
    lower = float(poll.get("last_pending") or 0.0)
    if lower <= 0:
        return None
    upper = max(lower, float(poll["elapsed"]))
    return round(lower + POLL_INTERPOLATE * (upper - lower), 3)


def first_wait(provider: Provider, recent: list[float]) -> float:
    """Seconds from submit to the first status check (unscaled), from recent task durations."""
    floor = POLL_FLOOR[provider]
    if not recent:
        return floor
    # Allow for a task somewhat quicker than any seen, and read just past it.
    quickest = POLL_SPREAD * min(recent)
    return max(floor, quickest + min(POLL_CEILING, _allowed_delay(quickest)))


@_records_errors
def check(operation: str, state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    from picflow.core.catalogue import get_operation
    from picflow.providers.base import TaskState

    svc = svc or services()
    op = get_operation(operation)
    job_id = str(state["job_id"])
    job_meta = state["job"]
    record = svc.store.get(job_id) or {}
    task_id = str(
        record.get("provider_task_id") or (state.get("submit") or {}).get("Payload", {}).get("task_id") or ""
    )
    # Every wait is a Wait state of the state machine (data it gets back from here): a Lambda
    # never sleeps while polling, and the execution history shows each status read.
    now = svc.clock()
    started = float(record.get("submitted_epoch") or now)
    previous = state.get("poll") or {}
    errors = int(previous.get("errors", 0))
    # The last read that saw the task running bounds its duration from below: Collect records
    # it for the next job's first wait (picflow.aws.durations).
    seen = {"elapsed": round(now - started, 3), "last_pending": float(previous.get("last_pending") or 0.0)}
    if not task_id:
        _await_submit(svc, job_id, record, now)
        polls = svc.store.add_polls(job_id, None)
        _enforce_deadline(job_meta, now, polls)
        return {"state": "pending", "task_id": None, "wait_seconds": _scaled(POLL_FLOOR[op.provider]),
                "polls": polls, "errors": errors, "results": [], "progress": None, **seen}  # fmt: skip
    try:
        status = _read_status(svc, op, task_id)
    except (TransientError, RateLimitedError) as exc:
        # A failed status read says nothing about the task: keep polling until the deadline.
        errors += 1
        if errors > MAX_CHECK_ERRORS:
            raise
        polls = svc.store.add_polls(job_id, None)
        retry_after = exc.retry_after
        wait = retry_after if retry_after is not None else next_wait(op.provider, now - started, None)
        _enforce_deadline(job_meta, now, polls)
        return {"state": "pending", "task_id": task_id, "wait_seconds": _scaled(wait), "polls": polls,
                "errors": errors, "results": [], "progress": None, **seen}  # fmt: skip
    polls = svc.store.add_polls(job_id, status.progress)
    _raise_if_failed(status)
    if status.state is TaskState.DONE:
        return {**_status_out(status, 0, polls), "errors": 0, **seen}
    _enforce_deadline(job_meta, now, polls)
    seen["last_pending"] = seen["elapsed"]  # it was still running at this read
    wait = next_wait(op.provider, now - started, status.progress)
    return {**_status_out(status, wait, polls), "errors": 0, **seen}


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


def _read_status(svc: Services, op: Operation, task_id: str) -> TaskStatus:
    from picflow.core.catalogue import Provider

    if op.provider is Provider.TASKPIC:
        # The operation lets a single-image background answer be labelled as "images".
        return svc.providers.taskpic().status(task_id, operation=op.name)
    return svc.providers.hdredraw().status(task_id)


def _enforce_deadline(job_meta: Mapping[str, Any], now: float, polls: int) -> None:
    if now >= float(job_meta["deadline_at"]):
        raise DeadlineExceededError("the upstream task outlived the job's deadline", code="Deadline")
    if polls >= int(job_meta["max_polls"]):
        raise DeadlineExceededError(f"no result after {polls} status checks", code="MaxPolls")


# --- Collect -----------------------------------------------------------------------------


def _collect(op: Operation, state: Mapping[str, Any], refs: Any, svc: Services) -> dict[str, Any]:
    from picflow.job.results import collect_results

    job_id = str(state["job_id"])
    # The upstream task is over: free the provider slot before the download, which can take a
    # while and needs no slot (a failure later releases again, harmlessly).
    release_slot(state, svc)
    record = svc.store.get(job_id) or {}
    manifest = collect_results(
        refs,
        http=svc.providers.downloads(),
        s3=svc.s3,
        bucket=config.env(config.OUTPUT_BUCKET),
        prefix=str(state.get("out_prefix") or f"jobs/{job_id}/"),
        provider=op.provider.value,
        job={**record, "job_id": job_id, "operation": op.name},
    )
    now = svc.clock()
    svc.store.update(
        job_id,
        {
            "status": JobStatus.SUCCEEDED.value,
            "manifest": {
                "key": manifest["manifest_key"],
                "bucket": manifest["bucket"],
                "outputs": manifest["outputs"],
                "texts": manifest["texts"],
            },
            "completed_at": now_iso(now),
            "duration_seconds": round(now - float(record.get("submitted_epoch") or now), 3),
        },
    )
    if (state.get("job") or {}).get("style") != "sync":
        # Statistics must never fail a job whose results are safely stored.
        duration = task_duration(state.get("poll") or {}, now - float(record.get("submitted_epoch") or now))
        if duration is not None:
            with contextlib.suppress(Exception):
                svc.durations.record(op.name, duration)
    key = (state.get("job") or {}).get("cache_key")
    if key:
        # The next job with this input, operation and params reuses these results. A lost
        # entry costs one paid call later, never this job.
        entry = {k: manifest[k] for k in ("job_id", "operation", "bucket", "outputs", "texts")}
        with contextlib.suppress(Exception):
            svc.cache.put(str(key), {**entry, "manifest_key": manifest["manifest_key"]})
    return _result(manifest, reused=False)


def _result(manifest: Mapping[str, Any], *, reused: bool) -> dict[str, Any]:
    images = [o for o in manifest["outputs"] if str(o["content_type"]).startswith("image/")]
    return {
        "manifest_key": manifest["manifest_key"],
        "primary_key": images[0]["key"] if images else None,
        "outputs": len(manifest["outputs"]),
        "reused": reused,
    }


@_records_errors
def reuse(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    """A result-cache hit: copy the earlier job's outputs; the job succeeds without a paid call."""
    from picflow.job.results import reuse_results

    svc = svc or services()
    job_id = str(state["job_id"])
    earlier = (state.get("cache") or {})["entry"]
    record = svc.store.get(job_id) or {}
    manifest = reuse_results(
        earlier,
        s3=svc.s3,
        bucket=config.env(config.OUTPUT_BUCKET),
        prefix=str(state.get("out_prefix") or f"jobs/{job_id}/"),
        provider=str(state["job"]["provider"]),
        job={**record, "job_id": job_id, "operation": state["operation"]},
    )
    now = svc.clock()
    svc.store.update(
        job_id,
        {
            "status": JobStatus.SUCCEEDED.value,
            "manifest": {k: manifest[k] for k in ("bucket", "outputs", "texts")}
            | {"key": manifest["manifest_key"]},
            "reused": True,
            "reused_from": earlier.get("job_id"),
            "cost_units": 0,
            "completed_at": now_iso(now),
            "duration_seconds": 0,
        },
    )
    return _result(manifest, reused=True)


@_records_errors
def collect(state: Mapping[str, Any], svc: Services | None = None) -> dict[str, Any]:
    """Copy the results named by the last Check (or callback) into S3; mark the job SUCCEEDED."""
    from picflow.core.catalogue import get_operation

    svc = svc or services()
    op = get_operation(str(state["operation"]))
    outcome = state.get("poll") or {}
    refs = _refs_from_state(list(outcome.get("results") or []))
    if not refs:
        raise UpstreamTaskFailedError("the provider reported success with no results", code="NoResults")
    return _collect(op, state, refs, svc)


# --- failure -----------------------------------------------------------------------------


def record_failure(
    state: Mapping[str, Any], execution_name: str | None = None, svc: Services | None = None
) -> dict[str, Any]:
    """Mark the job FAILED with the most specific error known (the step's own record first)."""
    svc = svc or services()
    job_id = str(state.get("job_id") or execution_name)
    # A job that failed before Validate could record it still gets its FAILED record.
    svc.store.create({"job_id": job_id, "operation": str(state.get("operation", "")), "input": {}})
    record = svc.store.get(job_id) or {}
    caught = state.get("error") or {}
    error: dict[str, Any] = dict(record.get("last_error") or {})
    if not error or (caught.get("Error") and caught.get("Error") != error.get("type")):
        message = str(caught.get("Cause", ""))
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(message).get("errorMessage", message))
        error = {"type": caught.get("Error", "Unknown"), "message": message[:2000]}
    svc.store.update(
        job_id, {"status": JobStatus.FAILED.value, "error": error, "completed_at": now_iso(svc.clock())}
    )
    key = (state.get("job") or {}).get("cache_key")
    if key:
        # An identical job may be waiting on this one's results: let it go on (and pay).
        svc.cache.release(str(key), job_id)
    return {"error": error}


# --- Notify ------------------------------------------------------------------------------


def notify(
    state: Mapping[str, Any], execution_name: str | None = None, svc: Services | None = None
) -> dict[str, Any]:
    """Tell the world the job ended: an EventBridge event, and a signed POST to notify_url.

    Returns the job's outcome from its record (``job_output``): the last state of a successful
    execution, so this is what a parent execution (startExecution.sync:2) receives.
    """
    svc = svc or services()
    job_id = str(state.get("job_id") or execution_name)
    job = svc.store.get(job_id) or {"job_id": job_id, "status": "UNKNOWN"}
    try:
        notified = _publish(svc, job)
    except Exception as exc:
        notified = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return {**job_output(job), "notified": notified}


def job_output(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a finished job hands on: where its outputs are, and the primary image to chain from."""
    manifest = job.get("manifest") or {}
    outputs = list(manifest.get("outputs") or [])
    return {
        "job_id": job.get("job_id"),
        "operation": job.get("operation"),
        "status": job.get("status"),
        "output_bucket": manifest.get("bucket") or config.optional(config.OUTPUT_BUCKET),
        # A pipeline reads it to end an item a batch pause stopped (statemachine/pipeline.asl.json).
        "paused": False,
        **_result({"manifest_key": manifest.get("key"), "outputs": outputs}, reused=bool(job.get("reused"))),
    }


def _publish(svc: Services, job: Mapping[str, Any]) -> dict[str, Any]:
    from picflow.net.webhooks import job_event, post_notice

    out: dict[str, Any] = {"event": False, "posted": None}
    bus = config.optional(config.EVENT_BUS_NAME)
    if bus:
        svc.events.put_events(
            Entries=[
                {
                    "Source": "picflow",
                    "DetailType": f"Job {job.get('status')}",
                    "Detail": json.dumps(job_event(job), default=str),
                    "EventBusName": bus,
                }
            ]
        )
        out["event"] = True
    url = job.get("notify_url")
    if url:
        from picflow.providers.registry import load_credentials

        key = load_credentials().notify_signing_key
        if key is None:
            out["posted"] = "no signing key configured"
        else:
            from picflow.net.urls import safe_client

            # A user-given URL: connect-time address checks, no redirects (no SSRF, no rebinding).
            with safe_client() as http:
                out["posted"] = post_notice(http, str(url), key.reveal().encode(), job)
    return out
