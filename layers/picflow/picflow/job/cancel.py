"""Cancelling a job from outside its execution (``DELETE /jobs/{id}``, a stopped batch).

A stopped execution runs no Catch, so what the failure path would do is done here: the record
CANCELLED (conditionally: a job that finished meanwhile stays finished), the execution stopped,
the provider slot given back and the result-cache claim released for a waiting twin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from picflow.aws.jobs import FINAL, JobStatus, now_iso
from picflow.aws.services import Services
from picflow.core.catalogue import OPERATIONS

__all__ = ["Cancelled", "cancel_job"]


@dataclass(frozen=True)
class Cancelled:
    job_id: str
    execution_stopped: bool
    slot_released: bool


def cancel_job(svc: Services, job: Mapping[str, Any]) -> Cancelled | None:
    """Cancel ``job`` (its record); None when it had already finished (nothing is stopped)."""
    job_id = str(job["job_id"])
    # Marked first, conditionally: the running execution's later writes are refused once it is final.
    updated = None
    if JobStatus(job["status"]) not in FINAL:
        error = {"type": "Cancelled", "message": "cancelled through the API"}
        updated = svc.store.update(
            job_id, {"status": JobStatus.CANCELLED.value, "error": error, "completed_at": now_iso()}
        )
    if updated is None:
        return None
    stopped = False
    arn = job.get("execution_arn") or job.get("execution_id")
    if arn:
        try:
            svc.sfn.stop_execution(
                executionArn=str(arn), error="Cancelled", cause="cancelled through the API"
            )
            stopped = True
        except svc.sfn.exceptions.ExecutionDoesNotExist:
            stopped = False
    op = OPERATIONS.get(str(job.get("operation")))
    provider = job.get("provider") or (op.provider.value if op else None)
    released = bool(provider) and svc.semaphore.release(str(provider), job_id)
    if job.get("cache_key"):
        # An identical job may be waiting on this one's results: let it go on.
        svc.cache.release(str(job["cache_key"]), job_id)
    return Cancelled(job_id, stopped, released)
