"""Validate and Twin (statemachine/job.asl.json): everything checkable is checked before money is
spent, then the result cache, an identical job already paying, or a provider slot.

Validate creates (or refreshes) the job record first, so every failure is a recorded FAILED job.
It decides what the rest of the job reads (:class:`~picflow.core.state.JobMeta`): the style, the
operation's function, deadlines, the first wait, the cost and the result-cache key.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.cache import cache_key
from picflow.aws.durations import recent_for
from picflow.aws.jobs import JobStatus, now_iso
from picflow.aws.pause import PAUSED_ERROR, paused_at
from picflow.aws.services import Services, services
from picflow.core import config
from picflow.core.deadline import enforce_deadline, wait_within
from picflow.core.errors import InvalidRequestError, ParamValidationError
from picflow.core.names import DEFAULT_TENANT, job_prefix
from picflow.core.polling import SUBMIT_GRACE, callback_window, first_wait, next_wait, scaled
from picflow.job.slot import acquire_slot
from picflow.job.steps import records_errors

# The catalogue's params models (pydantic) and images (Pillow) are imported where they are used;
# the Validate handler imports them at init, as every invocation needs them.
if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from picflow.core.catalogue import Operation
    from picflow.core.state import CacheState, InputRef, JobMeta, JobRequest, JobState

__all__ = ["await_twin", "state_from_event", "validate"]


def state_from_event(event: Mapping[str, Any]) -> JobRequest:
    """The Validate task's payload: the execution input plus the execution's name and id.

    The job id is the execution name, so a caller that names executions after an
    idempotency key (API, S3 trigger, a parent state machine) gets one job per key.
    """
    request: Any = dict(event.get("request") or {})
    request.setdefault("job_id", event.get("execution_name"))
    request["execution_id"] = event.get("execution_id")
    typed: JobRequest = request
    return typed


def _inspect_input(op: Operation, source: InputRef, s3: S3Client) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    from picflow.core.images import inspect_image

    bucket, key, version_id = source["bucket"], source["key"], source.get("version_id")
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        head = s3.head_object(**kwargs)
    except ClientError as exc:
        raise InvalidRequestError(f"input s3://{bucket}/{key} is not readable", code="InputNotFound") from exc
    op.input.check_size(int(head["ContentLength"]), what=op.name)
    digest = hashlib.sha256()
    with tempfile.TemporaryFile() as tmp:
        try:
            body = s3.get_object(**kwargs)["Body"]
        except ClientError as exc:  # deleted between the two reads
            raise InvalidRequestError(
                f"input s3://{bucket}/{key} is not readable", code="InputNotFound"
            ) from exc
        for chunk in body.iter_chunks(1024 * 1024):
            digest.update(chunk)
            tmp.write(chunk)
        info = inspect_image(tmp, op.input, what=op.name)
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


@records_errors
def validate(state: JobRequest, svc: Services | None = None) -> dict[str, Any]:
    """Check everything that can be checked before money is spent; create/refresh the job.

    Returns the :class:`~picflow.core.state.JobState` (or, for an item of a paused batch, what
    the state machine's Paused state reads).
    """
    from picflow.core.catalogue import choose_style, get_operation, validate_params

    svc = svc or services()
    job_id = str(state["job_id"])
    source: Any = state.get("input") or {}
    # Whoever started it (the API, the S3 trigger, a batch, a pipeline) names the tenant.
    tenant = str(state.get("tenant") or DEFAULT_TENANT)
    # The record exists before anything can fail, so every failure is a recorded FAILED job.
    svc.store.create(
        {
            "tenant": tenant,
            "job_id": job_id,
            "operation": str(state.get("operation", "")),
            "params": state.get("params") or {},
            "input": source,
            "source": state.get("source", "sfn"),
            "execution_id": state.get("execution_id"),
            "batch_id": state.get("batch_id"),
        }
    )
    batch_id = state.get("batch_id")
    if batch_id and state.get("pausable", True) is not False:
        paused = _paused(svc, job_id, str(batch_id))
        if paused is not None:
            return paused
    op = get_operation(str(state.get("operation", "")))
    if state.get("params_error"):
        raise ParamValidationError(str(state.get("params_error")), field="params", rule="a JSON object")
    params = validate_params(op, state.get("params") or {})
    from picflow.net.urls import check_param_urls

    # Every way in (an S3 upload's metadata, a parent state machine) meets the API's URL rules.
    check_param_urls(params)
    callbacks = bool(config.optional(config.CALLBACK_BASE_URL))
    style = choose_style(op, str(state.get("mode") or "auto"), callbacks=callbacks)
    if not source.get("bucket") or not source.get("key"):
        raise ParamValidationError("input needs bucket and key", field="input", rule="an S3 object")
    notify_url = state.get("notify_url")
    if notify_url:
        from picflow.net.urls import UnsafeUrlError, check_public_url

        try:
            check_public_url(str(notify_url), where="notify_url")
        except UnsafeUrlError as exc:
            raise ParamValidationError(
                f"notify_url: {exc.message}", field="notify_url", rule=exc.rule
            ) from None
    info = _inspect_input(op, source, svc.s3)
    now = svc.clock()
    deadline = config.env_int(config.JOB_DEADLINE, 1800)
    callback_timeout = config.env_int(config.CALLBACK_TIMEOUT, 600)
    clean_params = params.model_dump(mode="json", exclude_none=True)
    params_key = params.duration_key()
    # Durations of this operation with these params (the operation's while they are too few).
    recent = recent_for(svc.durations, op.name, params_key)
    # Per tenant: two tenants never share a paid result, a twin or its outputs.
    key = cache_key(op.name, info["sha256"], clean_params, tenant)
    meta: JobMeta = {
        "provider": op.provider.value,
        "style": style.value,
        "function": config.operation_function(op.name),
        "deadline_at": now + deadline,
        "max_polls": config.env_int(config.MAX_POLLS, 200),
        # The wait's heartbeat is the callback window (shorter when the operation's recent
        # durations say a callback is overdue); the submit restarts it once the provider has the
        # task. The hard timeout only adds room for the submit itself.
        "callback_timeout": callback_timeout + round(SUBMIT_GRACE),
        "heartbeat": callback_window(op.provider, recent, callback_timeout),
        "first_wait": scaled(first_wait(op.provider, recent)),
        "slot_ttl": deadline + 300,
        "cost_units": op.cost.units(params),
        "cost_unit": op.cost.unit,
        "cache_key": key,
        "params_key": params_key,
    }
    # Each job's results under a prefix of its own: two uploads of x/same.png (or x/same.png and
    # x/same.jpg) never overwrite each other's results, and a FAILED job's leftovers can be removed.
    base = state.get("out_prefix")
    out_prefix = f"{base}{job_id}/" if base else job_prefix(job_id, tenant)
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
    out: JobState = {
        "job_id": job_id,
        "execution_id": state.get("execution_id"),
        "operation": op.name,
        "params": clean_params,
        "input": {"bucket": info["bucket"], "key": info["key"], "version_id": info["version_id"]},
        "notify_url": notify_url,
        "out_prefix": out_prefix,
        "job": meta,
        "reuse": state.get("reuse", True) is not False,
        "tenant": tenant,
    }
    cache, slot = _cache_or_slot(out, svc)
    return {**out, "cache": cache, "slot": slot}


def _paused(svc: Services, job_id: str, batch_id: str) -> dict[str, Any] | None:
    """A job of a paused batch that has not started ends here, before the result cache, the
    claim and the slot: nothing is paid. Its record is CANCELLED (a BatchPaused error); its
    execution goes on to succeed (Route's Paused), so the map counts no failure. One GetItem."""
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


def _cache_or_slot(state: JobState, svc: Services) -> tuple[CacheState, dict[str, Any] | None]:
    """Reuse earlier results, wait for an identical job already paying, or take a provider slot.

    The first try for the slot happens here, not in a state of its own: one transition less
    per job, and AcquireSlot runs only while the provider is full.
    """
    from picflow.core.catalogue import Provider

    meta = state["job"]
    key = str(meta["cache_key"])
    reuse = bool(state.get("reuse"))
    cache = _cache_lookup(svc, key, enabled=reuse)
    if not cache["hit"] and reuse:
        job_id = str(state["job_id"])
        found = svc.cache.claim(key, job_id, float(meta["slot_ttl"]), stale=cache.get("stale"))
        if found is not None and found.get("pending_owner") not in (None, job_id):
            # An identical job is paying right now: wait for its results instead of paying.
            now = svc.clock()
            elapsed = now - float(found.get("claimed_at") or now)
            wait = next_wait(Provider(str(meta["provider"])), max(0.0, elapsed), None)
            wait = wait_within(meta, now, scaled(wait))
            return {**cache, "twin": str(found["pending_owner"]), "wait_seconds": wait}, None
        if found is not None and found.get("outputs"):
            cache = _cache_lookup(svc, key, enabled=True)  # finished just now
    if cache["hit"]:
        return cache, None
    return cache, dict(acquire_slot(state, svc))


@records_errors
def await_twin(state: JobState, svc: Services | None = None) -> dict[str, Any]:
    """After a wait: the identical job's results, or its claim gone (take over), or wait again;
    at the deadline DeadlineExceededError (an identical job that never ends cannot hold this one)."""
    svc = svc or services()
    enforce_deadline(state["job"], svc.clock(), waiting_for="waiting for an identical job's results")
    cache, slot = _cache_or_slot(state, svc)
    return {**state, "cache": cache, "slot": slot}


def _cache_lookup(svc: Services, key: str, *, enabled: bool) -> CacheState:
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
    kept: Any = {k: entry.get(k) for k in ("job_id", "bucket", "manifest_key", "outputs", "texts")}
    return {"hit": True, "key": key, "entry": kept}
