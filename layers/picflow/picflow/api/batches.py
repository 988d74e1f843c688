"""``/batches``: run an operation (or the pipeline) over a prefix or a manifest, read its progress,
stop, pause and resume it. The planning and starting are :mod:`picflow.batch`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from picflow.api.common import (
    CANCEL_NOTE,
    JOB_ID,
    RESULT_URL_TTL_DEFAULT,
    bad_cursor,
    conflict,
    idempotency_header,
    owner,
    presign,
    request_fingerprint,
    responses,
    start_responses,
    tenant_of,
)
from picflow.api.errors import ApiError
from picflow.api.models import (
    BatchCreated,
    BatchList,
    BatchPaused,
    BatchRequest,
    BatchStopped,
    BatchSummary,
    BatchView,
    CostView,
)
from picflow.aws.jobs import FINAL, JobStatus, now_iso
from picflow.aws.services import Services, services
from picflow.core import config, names
from picflow.core.catalogue import SPECS, get_operation
from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    from picflow.core.catalogue import Operation

# Only a batch route uses picflow.batch (planning, reports), picflow.aws.pause and a job's cancel:
# each route imports what it needs, so the API's cold start (a job request first, most often)
# does not pay for them (~3 ms of CPU with the jobs routes' own, bench/coldstart.py).

__all__ = ["create_batch", "get_batch", "list_batches", "pause_batch", "resume_batch", "stop_batch"]

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated


def _batch_arn(batch_id: str) -> str:
    machine = config.env(config.BATCH_STATE_MACHINE_ARN)
    return machine.replace(":stateMachine:", ":execution:") + f":{batch_id}"


def _batch_execution(svc: Services, batch_id: str) -> dict[str, Any] | None:
    try:
        execution: dict[str, Any] = dict(svc.sfn.describe_execution(executionArn=_batch_arn(batch_id)))
    except svc.sfn.exceptions.ExecutionDoesNotExist:
        return None
    return execution


def _batch_created(batch_id: str, request: Mapping[str, Any], *, created: bool) -> Response[BatchCreated]:
    body = BatchCreated(
        batch_id=batch_id,
        status="RUNNING" if created else str(request.get("status", "RUNNING")),
        created=created,
        total=int(request["total"]),
        max_concurrency=int(request["max_concurrency"]),
        resumed_from=request.get("resumed_from"),
        links={"self": f"/batches/{batch_id}"},
    )
    return Response(
        status_code=202 if created else 200, content_type=content_types.APPLICATION_JSON, body=body
    )


def _replay(svc: Services, batch_id: str, fingerprint: str) -> Response[BatchCreated] | None:
    execution = _batch_execution(svc, batch_id)
    if execution is None:
        return None
    request = json.loads(execution.get("input") or "{}")
    if request.get("request_sha256") != fingerprint:
        raise conflict()
    return _batch_created(batch_id, {**request, "status": execution["status"]}, created=False)


@router.post(
    "/batches",
    summary="Run one operation or the pipeline over a prefix or manifest of images",
    description="One job (or pipeline) per image, as a Distributed Map: at most max_concurrency in "
    "flight, the batch fails once more than tolerated_failure_percentage of its items fail, and items "
    "already done "
    "(same image, operation and params) reuse their results without paying again.",
    responses=start_responses("batch", BatchCreated),
    tags=["batches"],
)
def create_batch(
    body: BatchRequest, idempotency_key: Annotated[str | None, idempotency_header("batch")] = None
) -> Response[BatchCreated]:
    from botocore.exceptions import ClientError

    from picflow.api.inputs import not_found
    from picflow.batch.pipeline import PIPELINE, PIPELINE_STEPS
    from picflow.batch.plan import batch_id_for, list_prefix, plan_items, read_manifest, start_batch
    from picflow.core.names import key_tenant
    from picflow.net import urls

    svc = services()
    tenant = tenant_of(router.current_event)
    pipeline = body.operation == PIPELINE
    names = [name for _, name in PIPELINE_STEPS] if pipeline else [body.operation]
    try:
        providers = {get_operation(name).provider for name in names}
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, "operation") from None
    op: Operation | str = PIPELINE if pipeline else get_operation(body.operation)
    fingerprint = request_fingerprint(body)
    batch_id = batch_id_for(idempotency_key, tenant)
    if idempotency_key is not None and (replay := _replay(svc, batch_id, fingerprint)) is not None:
        return replay
    bucket = config.env(config.INPUT_BUCKET)
    if body.manifest is not None:
        # Another tenant's manifest answers as one that does not exist.
        if key_tenant(body.manifest) != tenant:
            raise not_found(body.manifest, "manifest")
        try:
            rows = read_manifest(svc.s3, bucket, body.manifest)
        except ClientError:
            raise not_found(body.manifest, "manifest") from None
    else:
        rows = list_prefix(svc.s3, bucket, str(body.prefix), tenant)
    try:
        items = plan_items(op, body.params, rows, bucket, batch_id, tenant)
    except urls.UnsafeUrlError as exc:
        raise ApiError.invalid(exc, exc.field or "manifest") from None
    # A pipeline item holds a slot of each step's provider in turn: the smallest cap bounds it.
    cap = min(SPECS[provider].concurrency_cap for provider in providers)
    request = {
        "operation": body.operation,
        "params": body.params,
        "source": {"prefix": str(body.prefix)} if body.manifest is None else {"manifest": body.manifest},
        "max_concurrency": body.max_concurrency or cap,
        "tolerated_failure_percentage": body.tolerated_failure_percentage,
        "reuse": body.reuse,
        "pipeline": pipeline,
        "request_sha256": fingerprint,
        "tenant": tenant,
    }
    started = start_batch(svc, batch_id, items, request)
    if started is None:
        # Two requests with one key raced: the other one started it.
        replay = _replay(svc, batch_id, fingerprint)
        if replay is not None:
            return replay
        raise ApiError(409, "BatchExists", f"batch {batch_id} exists already", field="Idempotency-Key")
    return _batch_created(batch_id, started, created=True)


def _batch_final(batch_id: str, status: str) -> ApiError:
    return ApiError(
        409,
        "BatchFinal",
        f"batch {batch_id} is already {status}",
        field="batch_id",
        rule="a batch that has not finished",
    )


def _batch_or_404(svc: Services, batch_id: str) -> dict[str, Any]:
    """The caller's batch (its execution); another tenant's answers as one that does not exist."""
    execution = _batch_execution(svc, batch_id)
    tenant = tenant_of(router.current_event)
    if execution is None or owner(json.loads(execution.get("input") or "{}")) != tenant:
        raise ApiError(404, "NotFound", f"no batch {batch_id}", field="batch_id", rule="an existing batch")
    return execution


@router.get(
    "/batches",
    summary="List batches, newest first",
    description="The caller's batches only. A page may hold fewer than limit batches (another tenant's "
    "are skipped) while cursor goes on.",
    responses=responses(200, "A page of batches"),
    tags=["batches"],
)
def list_batches(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> BatchList:
    svc = services()
    tenant = tenant_of(router.current_event)
    machine = config.env(config.BATCH_STATE_MACHINE_ARN)
    kwargs: dict[str, Any] = {"stateMachineArn": machine, "maxResults": limit}
    if cursor:
        kwargs["nextToken"] = cursor
    try:
        page = svc.sfn.list_executions(**kwargs)
    except (svc.sfn.exceptions.InvalidToken, svc.sfn.exceptions.InvalidArn):
        raise bad_cursor() from None
    batches = []
    for listed in page.get("executions", []):
        # The tenant is in the execution's input (one DescribeExecution a batch listed).
        execution = _batch_execution(svc, listed["name"])
        request = json.loads((execution or {}).get("input") or "{}")
        if execution is None or owner(request) != tenant:
            continue
        batches.append(
            BatchSummary(
                batch_id=listed["name"],
                tenant=tenant,
                status=str(execution["status"]),
                operation=str(request.get("operation", "")),
                total=int(request.get("total") or 0),
                created_at=request.get("created_at"),
                resumed_from=request.get("resumed_from"),
                links={"self": f"/batches/{listed['name']}"},
            )
        )
    return BatchList(batches=batches, cursor=page.get("nextToken"))


@router.get(
    "/batches/<batch_id>",
    summary="A batch's progress, cost and results",
    responses=responses(200, "The batch", 404),
    tags=["batches"],
)
def get_batch(batch_id: Annotated[str, Path(pattern=JOB_ID)]) -> BatchView:
    from botocore.exceptions import ClientError

    from picflow.aws import pause
    from picflow.batch.report import PROGRESS_INDEX, finished_summary, group_pipeline, item_records, summarise

    svc = services()
    execution = _batch_or_404(svc, batch_id)
    request = json.loads(execution.get("input") or "{}")
    bucket = config.env(config.OUTPUT_BUCKET)
    results_key: str | None = names.results_key(batch_id)
    try:
        metadata = svc.s3.head_object(Bucket=bucket, Key=str(results_key)).get("Metadata") or {}
    except ClientError:
        results_key, metadata = None, {}
    # An ended batch: the Report's summary, which settled items whose execution ended outside
    # their jobs (the live records would still say RUNNING for those).
    summary = finished_summary(execution, metadata)
    if summary is None:
        records = list(item_records(svc.store.table, batch_id, index=PROGRESS_INDEX))
        if request.get("pipeline"):
            records = list(group_pipeline(records).values())
        summary = summarise(records, int(request["total"]))
    ttl = config.env_int(config.RESULT_URL_TTL, RESULT_URL_TTL_DEFAULT)
    error = None
    if execution.get("error") or execution.get("cause"):
        error = {"type": execution.get("error"), "message": execution.get("cause")}
    paused_at = pause.paused_at(svc.coordination_table, batch_id)
    return BatchView(
        batch_id=batch_id,
        tenant=owner(request),
        status=str(execution["status"]),
        operation=str(request["operation"]),
        params=dict(request.get("params") or {}),
        source={k: str(v) for k, v in (request.get("source") or {}).items()},
        total=summary["total"],
        counts=summary["counts"],
        done=summary["done"],
        progress=summary["progress"],
        reused=summary["reused"],
        cost=CostView(**summary["cost"]),
        max_concurrency=int(request["max_concurrency"]),
        tolerated_failure_percentage=float(request["tolerated_failure_percentage"]),
        results_key=results_key,
        results_bucket=None if results_key is None else bucket,
        results_url=None if results_key is None else presign(bucket, results_key, ttl),
        error=error,
        paused=paused_at is not None,
        paused_at=paused_at,
        resumed_from=request.get("resumed_from"),
        links={"self": f"/batches/{batch_id}"},
    )


@router.delete(
    "/batches/<batch_id>",
    summary="Stop a batch",
    description="Stops the batch (no new items start) and cancels its unfinished jobs. " + CANCEL_NOTE,
    responses=responses(200, "Stopped", 404, 409),
    tags=["batches"],
)
def stop_batch(batch_id: Annotated[str, Path(pattern=JOB_ID)]) -> BatchStopped:
    from picflow.api.jobs import cancel
    from picflow.batch.report import PROGRESS_INDEX, item_records

    svc = services()
    execution = _batch_or_404(svc, batch_id)
    if execution["status"] != "RUNNING":
        raise _batch_final(batch_id, str(execution["status"]))
    svc.sfn.stop_execution(
        executionArn=_batch_arn(batch_id), error="Cancelled", cause="stopped through the API"
    )
    cancelled = 0
    for item in item_records(svc.store.table, batch_id, index=PROGRESS_INDEX):
        if JobStatus(item["status"]) in FINAL:
            continue
        # The index has no execution, provider or operation: cancelling needs the whole record.
        job = svc.store.get(str(item["job_id"]))
        if job is None:
            continue
        try:
            cancel(svc, job)
            cancelled += 1
        except ApiError:
            pass  # it finished meanwhile
    return BatchStopped(
        batch_id=batch_id,
        status="ABORTED",
        execution_stopped=True,
        jobs_cancelled=cancelled,
        note=CANCEL_NOTE,
    )


_PAUSE_NOTE = (
    "Items that had not started end CANCELLED (error BatchPaused) without paying; items already "
    "past their job's validation finish and their results are kept. Resume the batch once it has ended."
)


@router.post(
    "/batches/<batch_id>/pause",
    summary="Pause a batch (drain)",
    description="No item that has not started yet runs or pays: each ends CANCELLED with a BatchPaused "
    "error; items already started finish normally and their results are collected. The batch then "
    "ends; POST /batches/{batch_id}/resume runs the rest. Pausing again is a no-op (200).",
    responses=responses(200, "Paused (or already paused)", 404, 409),
    tags=["batches"],
)
def pause_batch(batch_id: Annotated[str, Path(pattern=JOB_ID)]) -> BatchPaused:
    from picflow.aws import pause

    svc = services()
    execution = _batch_or_404(svc, batch_id)
    table = svc.coordination_table
    # Idempotent first: a batch paused before stays paused, whether or not it has drained since.
    when = pause.paused_at(table, batch_id)
    if when is None:
        if execution["status"] != "RUNNING":
            raise _batch_final(batch_id, str(execution["status"]))
        when, _ = pause.pause(table, batch_id, now_iso())
    return BatchPaused(
        batch_id=batch_id, status=str(execution["status"]), paused=True, paused_at=when, note=_PAUSE_NOTE
    )


@router.post(
    "/batches/<batch_id>/resume",
    summary="Resume a batch that has ended",
    description="Starts a new batch (<batch_id>-r1, then -r2...) of the items that did not succeed, with "
    "the same operation, params, per-item params, concurrency and tolerated failures, reusing results: "
    "items that succeeded never run again. 409 while the batch runs (pause it first) or when every item "
    "succeeded; a second resume returns the batch the first one started (200).",
    responses=responses(
        202,
        "Resumed",
        404,
        409,
        also={200: {"description": "Already resumed: the batch that resume started"}},
    ),
    tags=["batches"],
)
def resume_batch(batch_id: Annotated[str, Path(pattern=JOB_ID)]) -> Response[BatchCreated]:
    from picflow.batch.plan import resumed_id, start_batch, unfinished_items

    svc = services()
    execution = _batch_or_404(svc, batch_id)
    if execution["status"] == "RUNNING":
        raise ApiError(
            409,
            "BatchRunning",
            f"batch {batch_id} is still running; pause it and resume it once it has ended",
            field="batch_id",
            rule="a batch that has ended",
        )
    original = json.loads(execution.get("input") or "{}")
    new_id = resumed_id(batch_id)
    existing = _batch_execution(svc, new_id)
    if existing is not None:
        return _batch_created(
            new_id, {**json.loads(existing.get("input") or "{}"), "status": existing["status"]}, created=False
        )
    items = unfinished_items(svc.s3, svc.store.table, original)
    if not items:
        raise ApiError(
            409,
            "NothingToResume",
            f"every item of batch {batch_id} succeeded",
            field="batch_id",
            rule="a batch with items that did not succeed",
        )
    request = {
        **{k: original[k] for k in _RESUMED_KEYS if k in original},
        # Whatever the original said: what it paid for is answered from the result cache.
        "reuse": True,
        "resumed_from": batch_id,
    }
    started = start_batch(svc, new_id, items, request)
    if started is None:
        # Two resumes raced: the other one started it.
        return resume_batch(batch_id)
    return _batch_created(new_id, started, created=True)


# What a resume keeps of the original request (items, reuse and ids are its own).
_RESUMED_KEYS = (
    "operation",
    "params",
    "source",
    "max_concurrency",
    "tolerated_failure_percentage",
    "pipeline",
    "request_sha256",
    "tenant",
)
