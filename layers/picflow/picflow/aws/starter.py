"""Starting jobs: the one place that turns a request into a job record and an execution.

The execution name *is* the job id and is derived from the request's idempotency key
(:func:`picflow.core.names.job_id_for`), so a repeated request (a duplicated S3 event, a retried
POST with the same Idempotency-Key) finds the job it already started instead of starting, and
paying for, another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picflow.core import config
from picflow.core.names import DEFAULT_TENANT, EXECUTION_NAME

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from picflow.aws.jobs import JobStore

__all__ = ["StartResult", "start_job"]


@dataclass(frozen=True)
class StartResult:
    job_id: str
    created: bool  # False: the key was seen before; nothing new was started
    execution_arn: str | None
    conflict: bool = False  # the key was seen before with another request: nothing was started


def start_job(
    request: Mapping[str, Any],
    *,
    job_id: str,
    store: JobStore,
    sfn: SFNClient,
    state_machine_arn: str | None = None,
    fingerprint: str | None = None,
) -> StartResult:
    """Create the job and start its execution, once per ``job_id``.

    ``fingerprint`` (a hash of the request) is stored on the job; a later start under the same
    id with another fingerprint is a ``conflict`` and starts nothing.
    """
    if not EXECUTION_NAME.match(job_id):
        raise ValueError(f"job id {job_id!r} is not a valid execution name")
    created = store.create(
        {
            "job_id": job_id,
            "operation": request["operation"],
            "params": request.get("params") or {},
            "input": request.get("input") or {},
            "source": request.get("source", "api"),
            "notify_url": request.get("notify_url"),
            "request_sha256": fingerprint,
            "tenant": request.get("tenant") or DEFAULT_TENANT,
        }
    )
    if not created:
        existing = store.get(job_id) or {}
        if fingerprint is not None and existing.get("request_sha256") != fingerprint:
            # Checked before the restart below: another request must never run under this name.
            arn = existing.get("execution_arn")
            return StartResult(job_id, False, None if arn is None else str(arn), conflict=True)
        if existing.get("execution_arn"):
            return StartResult(job_id, False, str(existing["execution_arn"]))
        # The record exists but its start may have failed: (re)start under the same name,
        # which Step Functions refuses if the first start did go through.
    arn = state_machine_arn or config.env(config.STATE_MACHINE_ARN)
    try:
        out = sfn.start_execution(
            stateMachineArn=arn, name=job_id, input=json.dumps({**request, "job_id": job_id}, default=str)
        )
    except sfn.exceptions.ExecutionAlreadyExists:
        return StartResult(job_id, False, None)
    store.update(job_id, {"execution_arn": out["executionArn"]}, allow_final=True)
    return StartResult(job_id, created, out["executionArn"])
