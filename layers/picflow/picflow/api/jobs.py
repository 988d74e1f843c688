"""``/jobs``: start a job (Idempotency-Key), read one, list them, cancel one.

Idempotency lives on the job record, not in a separate table: the job id is a hash of the
Idempotency-Key, the record's conditional create is the atomic claim, and the record keeps a
sha256 of the request, so a replay (same key, same body) returns the job and a different body
is a 409 for as long as the job exists (powertools' idempotency records expire much sooner
and would then let a second body through silently).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

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
    CancelResult,
    CostView,
    CreateJobRequest,
    JobCreated,
    JobList,
    JobSummary,
    JobView,
    Timings,
)
from picflow.aws.jobs import JobStatus, now_iso
from picflow.aws.services import Services, services
from picflow.core import config
from picflow.core.catalogue import (
    Style,
    get_operation,
    validate_params,
)
from picflow.core.errors import ParamValidationError
from picflow.core.names import tenant_job_id
from picflow.core.results import ResultView, result_view
from picflow.net import urls
from picflow.net.webhooks import job_event

# POST /jobs alone starts jobs and fetches inputs (picflow.aws.starter, picflow.api.inputs), DELETE
# alone cancels (picflow.job.cancel): those routes import them, so a cold start on a read does not.

__all__ = ["cancel", "cancel_job", "create_job", "get_job", "list_jobs", "status_of"]

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated


_CURSOR_KEYS = frozenset({"job_id", "status", "operation", "created_at"})


def _created(job_id: str, status: str, *, created: bool) -> Response[JobCreated]:
    body = JobCreated(job_id=job_id, status=status, created=created, links={"self": f"/jobs/{job_id}"})
    return Response(
        status_code=202 if created else 200, content_type=content_types.APPLICATION_JSON, body=body
    )


@router.post(
    "/jobs",
    summary="Start a job",
    description="202 for a new job; 200 with created=false when an Idempotency-Key is replayed "
    "with the same body; 409 when it is reused with another body.",
    responses=start_responses("job", JobCreated),
    tags=["jobs"],
)
def create_job(
    body: CreateJobRequest, idempotency_key: Annotated[str | None, idempotency_header("job")] = None
) -> Response[JobCreated]:
    from picflow.api.inputs import s3_input, upload_input, url_input
    from picflow.aws.starter import start_job

    svc = services()
    tenant = tenant_of(router.current_event)
    try:
        op = get_operation(body.operation)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, "operation") from None
    try:
        params = validate_params(op, body.params)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, f"params.{exc.field}") from None
    try:
        urls.check_param_urls(params)
    except urls.UnsafeUrlError as exc:
        raise ApiError.invalid(exc, f"params.{exc.field}") from None
    if body.mode != "auto" and Style(body.mode) not in op.styles:
        styles = ", ".join(sorted(s.value for s in op.styles))
        raise ApiError(
            422,
            "ParamValidationError",
            f"{op.name} cannot run in {body.mode} mode",
            field="mode",
            rule=f"one of auto, {styles}",
        )
    if body.notify_url is not None:
        try:
            urls.check_public_url(body.notify_url, where="notify_url")
        except urls.UnsafeUrlError as exc:
            raise ApiError.invalid(exc, "notify_url") from None

    fingerprint = request_fingerprint(body)
    if idempotency_key is None:
        job_id = f"api-{uuid.uuid4().hex}"
    else:
        job_id = tenant_job_id("api", tenant, idempotency_key)
        existing = svc.store.get(job_id)
        # Answer a replay before fetching anything; a record without an execution falls
        # through so start_job can finish a start that failed half way.
        if existing is not None and existing.get("execution_arn"):
            if existing.get("request_sha256") != fingerprint:
                raise conflict()
            return _created(job_id, str(existing["status"]), created=False)

    source = body.input
    if source.upload_id is not None:
        job_input = upload_input(svc, op, source.upload_id, tenant)
    elif source.key is not None:
        job_input = s3_input(svc, op, source.key, "input.key", tenant)
    else:
        job_input = url_input(svc, op, str(source.url), job_id, tenant)
    request = {
        "operation": op.name,
        "params": body.params,
        "input": job_input,
        "notify_url": body.notify_url,
        "mode": body.mode,
        "source": "api",
        "tenant": tenant,
    }
    started = start_job(request, job_id=job_id, store=svc.store, sfn=svc.sfn, fingerprint=fingerprint)
    if started.conflict:
        raise conflict()
    return _created(
        job_id,
        JobStatus.QUEUED.value if started.created else status_of(svc, job_id),
        created=started.created,
    )


def status_of(svc: Services, job_id: str) -> str:
    return str((svc.store.get(job_id) or {}).get("status", JobStatus.QUEUED.value))


def _job_or_404(svc: Services, job_id: str, tenant: str) -> dict[str, Any]:
    job = svc.store.get(job_id)
    # Another tenant's job answers exactly as a job that does not exist.
    if job is None or owner(job) != tenant:
        raise ApiError(404, "NotFound", f"no job {job_id}", field="job_id", rule="an existing job")
    return job


def _job_view(raw: Mapping[str, Any]) -> JobView:
    job = job_event(raw)  # drops task_token, callback_secret_sha256, submit_marker
    ttl = config.env_int(config.RESULT_URL_TTL, RESULT_URL_TTL_DEFAULT)
    manifest = job.get("manifest") or {}
    bucket = str(manifest.get("bucket") or config.optional(config.OUTPUT_BUCKET))
    results: list[ResultView] = [
        result_view(o, url=presign(bucket, str(o["key"]), ttl), expires_in=ttl)
        for o in manifest.get("outputs") or []
    ]
    job_id = str(job["job_id"])
    error = job.get("error")
    return JobView(
        job_id=job_id,
        status=str(job.get("status", "")),
        operation=str(job.get("operation", "")),
        source=job.get("source"),
        tenant=owner(job),
        provider=job.get("provider"),
        style=job.get("style"),
        params=dict(job.get("params") or {}),
        progress=job.get("progress"),
        polls=int(job.get("polls") or 0),
        timings=Timings(
            created_at=job.get("created_at"),
            submitted_at=job.get("submitted_at"),
            completed_at=job.get("completed_at"),
            duration_seconds=job.get("duration_seconds"),
        ),
        cost=CostView(units=job.get("cost_units"), unit=job.get("cost_unit")),
        error=dict(error) if isinstance(error, Mapping) else None,
        results=results,
        texts={str(k): str(v) for k, v in (manifest.get("texts") or {}).items()},
        manifest_url=presign(bucket, str(manifest["key"]), ttl) if manifest.get("key") else None,
        links={"self": f"/jobs/{job_id}"},
    )


@router.get(
    "/jobs/<job_id>",
    summary="A job's status and results",
    responses=responses(200, "The job", 404),
    tags=["jobs"],
)
def get_job(job_id: Annotated[str, Path(pattern=JOB_ID)]) -> JobView:
    svc = services()
    return _job_view(_job_or_404(svc, job_id, tenant_of(router.current_event)))


def _since(value: str) -> str:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            422,
            "RequestValidationError",
            "since must be an ISO 8601 date or time",
            field="since",
            rule="ISO 8601",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now_iso(when.timestamp())


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raw = None
    ok = isinstance(raw, dict) and raw and set(raw) <= _CURSOR_KEYS
    if not ok or not all(isinstance(v, str) for v in raw.values()):
        raise bad_cursor()
    return dict(raw)


def _encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(dict(key), sort_keys=True).encode()).decode().rstrip("=")


@router.get(
    "/jobs", summary="List jobs, newest first", responses=responses(200, "A page of jobs"), tags=["jobs"]
)
def list_jobs(
    status: Annotated[JobStatus | None, Query()] = None,
    operation: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601; jobs created since.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> JobList:
    from botocore.exceptions import ClientError

    svc = services()
    if operation is not None:
        try:
            get_operation(operation)
        except ParamValidationError as exc:
            raise ApiError.invalid(exc, "operation") from None
    try:
        items, last = svc.store.list(
            status=None if status is None else status.value,
            operation=operation,
            since=None if since is None else _since(since),
            limit=limit,
            cursor=None if cursor is None else _decode_cursor(cursor),
            tenant=tenant_of(router.current_event),
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ValidationException":
            raise
        # A well-formed cursor from another filter (index) is still the caller's mistake.
        raise ApiError(
            422,
            "RequestValidationError",
            "cursor does not fit this filter",
            field="cursor",
            rule="a cursor from the same filter",
        ) from None
    jobs = [
        JobSummary(
            job_id=str(i["job_id"]),
            status=str(i.get("status", "")),
            operation=str(i.get("operation", "")),
            source=i.get("source"),
            tenant=owner(i),
            cost=CostView(units=i.get("cost_units"), unit=i.get("cost_unit")),
            created_at=i.get("created_at"),
            completed_at=i.get("completed_at"),
        )
        for i in items
    ]
    return JobList(jobs=jobs, cursor=_encode_cursor(last))


@router.delete(
    "/jobs/<job_id>",
    summary="Cancel a job",
    description=CANCEL_NOTE,
    responses=responses(200, "Cancelled", 404, 409),
    tags=["jobs"],
)
def cancel_job(job_id: Annotated[str, Path(pattern=JOB_ID)]) -> CancelResult:
    svc = services()
    return cancel(svc, _job_or_404(svc, job_id, tenant_of(router.current_event)))


def cancel(svc: Services, job: Mapping[str, Any]) -> CancelResult:
    """Cancel ``job`` (:func:`picflow.job.cancel.cancel_job`), or a 409 when it had finished."""
    from picflow.job.cancel import cancel_job as cancel_record

    job_id = str(job["job_id"])
    done = cancel_record(svc, job)
    if done is None:
        raise ApiError(
            409,
            "JobFinal",
            f"job {job_id} is already {status_of(svc, job_id)}",
            field="job_id",
            rule="a job that has not finished",
        )
    return CancelResult(
        job_id=job_id,
        status=JobStatus.CANCELLED.value,
        execution_stopped=done.execution_stopped,
        slot_released=done.slot_released,
        note=CANCEL_NOTE,
    )
