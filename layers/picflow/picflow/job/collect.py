"""Collect and Reuse (statemachine/job.asl.json): the results into the output bucket, the job
SUCCEEDED; and what a finished job hands on (:func:`job_result`).

Collect frees the provider slot first (the task is over), stores the results
(:mod:`picflow.job.results`), records the task's duration for the next job's first wait and the
result-cache entry for the next identical job. Reuse copies a cache hit's outputs instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import JobStatus, now_iso
from picflow.aws.services import Services, services
from picflow.core import config
from picflow.core.errors import (
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.names import DEFAULT_TENANT, job_prefix
from picflow.job.slot import release_slot
from picflow.job.steps import records_errors

if TYPE_CHECKING:
    from picflow.core.catalogue import Operation
    from picflow.core.state import JobResult, JobState
    from picflow.core.tasks import ResultRef

__all__ = ["COST_METRIC", "collect", "count_cost", "job_result", "reuse", "store_recovering", "store_results"]

# What each tenant spent: one data point per succeeded job, its cost units (0 when reused), with
# the dimensions tenant and unit (each provider bills in its own unit).
COST_METRIC = "CostUnits"


def count_cost(state: JobState, units: int) -> None:
    """Count a succeeded job's cost for its tenant (``CostUnits``, dimensions tenant and unit)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    namespace = config.optional("POWERTOOLS_METRICS_NAMESPACE", "picflow")
    with single_metric(name=COST_METRIC, unit=MetricUnit.Count, value=units, namespace=namespace) as metric:
        metric.add_dimension(name="tenant", value=str(state.get("tenant") or DEFAULT_TENANT))
        metric.add_dimension(name="unit", value=str(state["job"].get("cost_unit") or "units"))


def store_results(op: Operation, state: JobState, refs: Iterable[ResultRef], svc: Services) -> JobResult:
    """Store ``refs`` under the job's prefix and mark the job SUCCEEDED (Collect, a sync Submit)."""
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
        prefix=str(state.get("out_prefix") or job_prefix(job_id)),
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
    if state["job"].get("style") != "sync":
        from picflow.aws.durations import record_for
        from picflow.core.polling import task_duration

        # Statistics must never fail a job whose results are safely stored.
        duration = task_duration(state.get("poll") or {}, now - float(record.get("submitted_epoch") or now))
        if duration is not None:
            with contextlib.suppress(Exception):
                record_for(svc.durations, op.name, state["job"].get("params_key"), duration)
    key = state["job"].get("cache_key")
    if key:
        # The next job with this input, operation and params reuses these results. A lost
        # entry costs one paid call later, never this job.
        entry = {k: manifest[k] for k in ("job_id", "operation", "bucket", "outputs", "texts")}
        with contextlib.suppress(Exception):
            svc.cache.put(str(key), {**entry, "manifest_key": manifest["manifest_key"]})
    with contextlib.suppress(Exception):
        count_cost(state, int(state["job"].get("cost_units") or 0))
    return job_result(manifest["manifest_key"], manifest["outputs"], reused=False)


def job_result(manifest_key: str | None, outputs: list[Mapping[str, Any]], *, reused: bool) -> JobResult:
    """Where a finished job's outputs are, and the primary image to chain from (its first image)."""
    images = [o for o in outputs if str(o["content_type"]).startswith("image/")]
    return {
        "manifest_key": manifest_key,
        "primary_key": images[0]["key"] if images else None,
        "outputs": len(outputs),
        "reused": reused,
    }


@records_errors
def reuse(state: JobState, svc: Services | None = None) -> JobResult:
    """A result-cache hit: copy the earlier job's outputs; the job succeeds without a paid call."""
    from picflow.job.results import reuse_results

    svc = svc or services()
    job_id = str(state["job_id"])
    earlier = state["cache"]["entry"]
    record = svc.store.get(job_id) or {}
    manifest = reuse_results(
        earlier,
        s3=svc.s3,
        bucket=config.env(config.OUTPUT_BUCKET),
        prefix=str(state.get("out_prefix") or job_prefix(job_id)),
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
    with contextlib.suppress(Exception):
        count_cost(state, 0)
    return job_result(manifest["manifest_key"], manifest["outputs"], reused=True)


# Fresh status reads Collect tries after a refused or cut download (each followed by a download),
# RECOVERY_PAUSE seconds more apart each time (at most 2 s): the chaos bench's 30 % faults on
# result hosts still lost 2 of 1,000 paid results to three tries.
RECOVERY_READS = 8
RECOVERY_PAUSE = 0.25


@records_errors
def collect(state: JobState, svc: Services | None = None) -> JobResult:
    """Copy the results named by the last Check (or callback) into S3; mark the job SUCCEEDED."""
    from picflow.core.catalogue import get_operation
    from picflow.core.tasks import ResultRef
    from picflow.job.check import done_poll

    svc = svc or services()
    op = get_operation(str(state["operation"]))
    poll = done_poll(state.get("poll") or {})  # Check's TaskDone comes through its Catch
    state = {**state, "poll": poll}  # type: ignore[typeddict-item]
    refs = [ResultRef.from_state(r) for r in poll.get("results") or []]
    if not refs:
        raise UpstreamTaskFailedError("the provider reported success with no results", code="NoResults")
    return store_recovering(op, state, refs, svc)


def store_recovering(op: Operation, state: JobState, refs: Iterable[ResultRef], svc: Services) -> JobResult:
    """:func:`store_results`, and after a refused or cut download the results of fresh status
    reads of the job's task (Collect's, and a sync answer's whose provider keeps the task)."""
    try:
        return store_results(op, state, refs, svc)
    except (ResultUnavailableError, TransientError) as refused:
        # A result URL refused (expired, 403/404) or a download cut: the task is paid and done,
        # so a fresh status read may name fresh URLs (issue 15: 37 of 500 chaos jobs were lost
        # so), up to RECOVERY_READS times (a failed read or download is tried again: the chaos
        # bench's 30 % faults lost about one in a hundred paid results to a single try). No task to
        # read again (a sync answer, a task no longer done), or every try failed: the original.
        for attempt in range(RECOVERY_READS):
            if attempt:
                time.sleep(min(2.0, RECOVERY_PAUSE * attempt))
            fresh = _fresh_results(op, state, svc)
            if fresh is None:
                raise
            if not fresh:
                continue
            try:
                return store_results(op, state, fresh, svc)
            except (ResultUnavailableError, TransientError):
                continue
        raise refused from None


def _fresh_results(op: Operation, state: JobState, svc: Services) -> list[ResultRef] | None:
    """The results of one more status read of the job's task: None when there is nothing to read
    (no task, a sync answer, a task no longer done), [] when the read failed."""
    from picflow.core.catalogue import Style, TaskState

    task_id = str((svc.store.get(str(state["job_id"])) or {}).get("provider_task_id") or "")
    if not task_id or op.styles == {Style.SYNC}:
        return None
    try:
        status = svc.providers.client(op.provider).status(task_id, operation=op.name)
    except (TransientError, RateLimitedError):
        return []
    return list(status.results) if status.state is TaskState.DONE and status.results else None
