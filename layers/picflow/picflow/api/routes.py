"""The jobs API (API Gateway REST, API key + usage plan): routes, request/response models, errors.

    POST   /uploads          presigned PUT for an input            201 | 4xx
    POST   /jobs             start a job (Idempotency-Key header)  202 new, 200 replay | 409 | 4xx
    GET    /jobs             list (status, operation, since, cursor) 200 | 422
    GET    /jobs/{job_id}    status, timings, cost, results (presigned GETs) 200 | 404
    DELETE /jobs/{job_id}    cancel: mark CANCELLED, stop execution, free slot 200 | 404 | 409
    POST   /batches          a prefix or manifest through an operation or the pipeline  202 | 200 | 409 | 4xx
    GET    /batches/{id}     counts by status, progress, reuse, cost, results manifest 200 | 404
    DELETE /batches/{id}     stop the batch and cancel its unfinished jobs 200 | 404 | 409
    POST   /batches/{id}/pause   drain: items not started end unpaid, started ones finish 200 | 404 | 409
    POST   /batches/{id}/resume  once ended, a batch of the items that did not succeed  202 | 200 | 404 | 409
    GET    /operations       the catalogue, and the pipeline batches run  200

Every refusal is ``{"error": {"type", "message", "field", "rule"}}``: 400 for a body that is
not JSON, 415 for one that is not ``application/json``, 422 for any field that breaks a rule
(request models and the catalogue alike), 404 for unknown ids and routes, 409 for conflicts.
Validation happens before anything is written or started.

Idempotency lives on the job record, not in a separate table: the job id is a hash of the
Idempotency-Key, the record's conditional create is the atomic claim, and the record keeps a
sha256 of the request, so a replay (same key, same body) returns the job and a different body
is a 409 for as long as the job exists (powertools' idempotency records expire much sooner
and would then let a second body through silently).

``python -m picflow.api.routes [path]`` writes the OpenAPI 3.0 document (see :func:`openapi_document`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from picflow.aws.jobs import FINAL, JobStatus, now_iso
from picflow.aws.starter import job_id_for, start_job
from picflow.batch import batches
from picflow.core import config
from picflow.core.catalogue import (
    OPERATIONS,
    Operation,
    Style,
    _rule_of,
    describe_catalogue,
    get_operation,
    validate_params,
)
from picflow.core.errors import ParamValidationError
from picflow.entry.s3events import UPLOADS_PREFIX
from picflow.net import urls
from picflow.net.webhooks import job_event

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_s3 import S3Client

    from picflow.job.workflow import Services

__all__ = ["ApiError", "app", "openapi_document", "reset_clients", "write_openapi"]

UPLOAD_URL_TTL = 900
RESULT_URL_TTL_DEFAULT = 900
UploadContentType = Literal["image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff"]
# A batch manifest goes up the same way (``picflow batch run --manifest file.csv``); uploads/
# starts nothing and a job's Validate sniffs the bytes, so a manifest can never run as an image.
ManifestContentType = Literal["text/csv", "application/x-ndjson"]
API_KEY_SCHEME = "api_key"
_JOB_ID = r"^[A-Za-z0-9_-]{1,80}$"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
_CURSOR_KEYS = frozenset({"job_id", "status", "operation", "created_at"})
_CANCEL_NOTE = (
    "No provider offers an upstream cancel: a task already submitted may still run and be billed; "
    "its result is not collected."
)


class ApiError(Exception):
    """A refusal with its HTTP status; rendered as the one error shape."""

    def __init__(
        self, status: int, kind: str, message: str, *, field: str | None = None, rule: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.field, self.rule = status, kind, message, field, rule

    @classmethod
    def invalid(cls, exc: ParamValidationError | urls.UnsafeUrlError, field: str) -> ApiError:
        rule = exc.rule
        return cls(422, type(exc).__name__, exc.message, field=field, rule=rule)


# --- models ------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Model):
    type: str = Field(description="Error class, e.g. ParamValidationError, RequestValidationError, NotFound.")
    message: str
    field: str | None = Field(None, description="The offending field, dotted (params.batch_size).")
    rule: str | None = Field(None, description="The rule it breaks.")


class ErrorResponse(_Model):
    error: ErrorDetail


class UploadRequest(_Model):
    filename: str = Field(min_length=1, max_length=255, description="Original file name (sanitised).")
    content_type: Literal[UploadContentType, ManifestContentType] = Field(
        description="The Content-Type the PUT must send: an image's, or a batch manifest's (CSV, JSON Lines)."
    )


class UploadResponse(_Model):
    upload_id: str
    key: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_in: int


class JobInput(_Model):
    """Exactly one source: an upload of ours, an object in the input bucket, or a public URL."""

    upload_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="From POST /uploads.")
    key: str | None = Field(None, min_length=1, max_length=1024, description="A key in the input bucket.")
    url: str | None = Field(None, min_length=1, max_length=2048, description="A public http(s) URL.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("upload_id", "key", "url") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ParamValidationError(
                f"input needs exactly one of upload_id, key, url (got {', '.join(given) or 'none'})",
                field="input",
                rule="exactly one of upload_id, key, url",
            )
        return self


class CreateJobRequest(_Model):
    operation: str = Field(min_length=1, max_length=64, description="A name from GET /operations.")
    params: dict[str, Any] = Field(default_factory=dict, description="The operation's parameters.")
    input: JobInput
    notify_url: str | None = Field(
        None, min_length=1, max_length=2048, description="Public https URL for the signed completion POST."
    )
    mode: Literal["auto", "sync", "poll", "callback"] = Field(
        "auto", description="Interaction style; auto picks the best the operation supports."
    )


class JobCreated(_Model):
    job_id: str
    status: str
    created: bool = Field(description="False when an Idempotency-Key replay returned an existing job.")
    links: dict[str, str]


class Timings(_Model):
    created_at: str | None = None
    submitted_at: str | None = None
    completed_at: str | None = None
    duration_seconds: float | None = None


class CostView(_Model):
    units: int | None = None
    unit: str | None = None


class ResultView(_Model):
    kind: str
    index: int
    key: str
    content_type: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    url: str = Field(description="Presigned GET, valid for expires_in seconds.")
    expires_in: int


class _JobHead(_Model):
    job_id: str
    status: str
    operation: str
    source: str | None = Field(None, description="api, s3 or sfn (another state machine).")


class JobView(_JobHead):
    provider: str | None = None
    style: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    progress: int | None = None
    polls: int = 0
    timings: Timings
    cost: CostView
    error: dict[str, Any] | None = None
    results: list[ResultView] = Field(default_factory=list)
    texts: dict[str, str] = Field(default_factory=dict)
    manifest_url: str | None = None
    links: dict[str, str]


class JobSummary(_JobHead):
    created_at: str | None = None
    completed_at: str | None = None


class JobList(_Model):
    jobs: list[JobSummary]
    cursor: str | None = Field(None, description="Pass back as ?cursor= for the next page.")


class CancelResult(_Model):
    job_id: str
    status: str
    execution_stopped: bool
    slot_released: bool
    upstream_cancelled: bool = False
    note: str


class OperationList(_Model):
    operations: list[dict[str, Any]]
    # Not a job operation (POST /jobs refuses it): what POST /batches runs per item as "pipeline".
    pipelines: list[dict[str, Any]]


class BatchRequest(_Model):
    """Exactly one source of items: a prefix of the input bucket or a manifest in it."""

    operation: str = Field(
        min_length=1,
        max_length=64,
        description="A name from GET /operations, or pipeline (segmentation -> background -> redraw per "
        "item; params: prompt, upscale).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Every item's parameters.")
    prefix: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Every image under this key prefix of the input bucket.",
    )
    manifest: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Key of a CSV (header: key or url, params) or JSON Lines ({key or url, params}) file in "
        "the input bucket; an item's params override the batch's; URLs must be public http(s).",
    )
    max_concurrency: int | None = Field(
        None, ge=1, le=1000, description="Items in flight; default: the provider's concurrency cap."
    )
    tolerated_failure_percentage: float = Field(
        5, ge=0, le=100, description="The batch fails (and stops) once more than this share of items fail."
    )
    reuse: bool = Field(True, description="Reuse earlier results of the same image, operation and params.")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name in ("prefix", "manifest") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ParamValidationError(
                f"a batch needs exactly one of prefix, manifest (got {', '.join(given) or 'none'})",
                field="prefix",
                rule="exactly one of prefix, manifest",
            )
        return self


class BatchCreated(_Model):
    batch_id: str
    status: str
    created: bool = Field(
        description="False when an Idempotency-Key replay (or a second resume) returned an existing batch."
    )
    total: int = Field(description="Items in the batch.")
    max_concurrency: int
    resumed_from: str | None = Field(None, description="The batch this one resumes (POST .../resume).")
    links: dict[str, str]


class BatchView(_Model):
    batch_id: str
    status: str = Field(description="RUNNING, SUCCEEDED, FAILED (too many items failed), ABORTED (stopped).")
    operation: str
    params: dict[str, Any]
    source: dict[str, str]
    total: int
    counts: dict[str, int] = Field(description="Items by job status; NOT_STARTED: no job yet.")
    done: int
    progress: float = Field(description="Finished items / total, 0..1.")
    reused: int = Field(description="Items answered from the result cache (nothing paid).")
    cost: CostView = Field(description="What the provider was paid for so far.")
    max_concurrency: int
    tolerated_failure_percentage: float
    results_key: str | None = Field(
        None, description="The results manifest (JSON Lines), once the batch ends."
    )
    results_bucket: str | None = Field(None, description="The bucket results_key is in (the output bucket).")
    results_url: str | None = None
    error: dict[str, Any] | None = None
    paused: bool = Field(
        False,
        description="Paused (POST .../pause): items that had not started end CANCELLED with a BatchPaused "
        "error (counted under CANCELLED), started ones finish.",
    )
    paused_at: str | None = None
    resumed_from: str | None = Field(None, description="The batch this one resumes, if it is a resume.")
    links: dict[str, str]


class BatchPaused(_Model):
    batch_id: str
    status: str = Field(description="The batch's execution: RUNNING while started items drain.")
    paused: bool
    paused_at: str
    note: str


class BatchStopped(_Model):
    batch_id: str
    status: str
    execution_stopped: bool
    jobs_cancelled: int
    note: str


# --- the resolver ------------------------------------------------------------------------

app = APIGatewayRestResolver(enable_validation=True)
logger = Logger(child=True)


def _services() -> Services:
    from picflow.job.workflow import services

    return services()


@functools.cache
def _fetch_client() -> httpx.Client:
    return urls.safe_client()


@functools.cache
def _presigner() -> S3Client:
    """S3 client for presigned URLs: SigV4 always (boto3 may still pick SigV2 for S3 here)."""
    import boto3
    from botocore.config import Config

    client: S3Client = boto3.client("s3", config=Config(signature_version="s3v4"))
    return client


def reset_clients() -> None:
    """Forget cached clients (tests start a new moto mock per test)."""
    _fetch_client.cache_clear()
    _presigner.cache_clear()


def _error_response(status: int, detail: ErrorDetail) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorResponse(error=detail).model_dump_json(),
    )


def _responses(ok: int, description: str, *errors: int, also: dict[int, Any] | None = None) -> dict[int, Any]:
    """OpenAPI responses of one route; built per call because powertools edits them in place."""
    out: dict[int, Any] = {ok: {"description": description}, **(also or {})}
    reasons = {
        400: "Body is not JSON",
        403: "No valid API key (API Gateway's answer, in the same shape)",
        404: "Not found",
        409: "Conflict",
        415: "Body is not application/json",
        422: "A field breaks a rule",
    }
    for code in (*errors, 403, 422):
        out[code] = {
            "description": reasons[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}},
        }
    return out


def _handles[E: Exception](
    exc: type[E],
) -> Callable[[Callable[[E], Response[str]]], Callable[[E], Response[str]]]:
    """``app.exception_handler``, typed (powertools leaves its return type out)."""
    register: Callable[[Callable[[E], Response[str]]], Callable[[E], Response[str]]] = app.exception_handler(
        exc
    )
    return register


@_handles(ApiError)
def _api_error(exc: ApiError) -> Response[str]:
    return _error_response(
        exc.status, ErrorDetail(type=exc.kind, message=exc.message, field=exc.field, rule=exc.rule)
    )


@_handles(ParamValidationError)
def _param_error(exc: ParamValidationError) -> Response[str]:
    # Raised by model validators (JobInput) while powertools parses the body.
    return _error_response(
        422, ErrorDetail(type=type(exc).__name__, message=exc.message, field=exc.field, rule=exc.rule)
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    where, *path = loc or ("body",)
    if where == "header":
        return "Idempotency-Key" if path == ["idempotency-key"] else ".".join(map(str, path))
    return ".".join(str(p) for p in path) or str(where)


@_handles(RequestValidationError)
def _request_error(exc: RequestValidationError) -> Response[str]:
    first = dict(exc.errors()[0])
    if first.get("type") == "json_invalid":
        detail = ErrorDetail(
            type="InvalidJson", message="the body is not valid JSON", field="body", rule="a JSON object"
        )
        return _error_response(400, detail)
    field = _field_of(tuple(first.get("loc") or ()))
    # pydantic's message is safe to echo: it names the rule, never the input value.
    message = f"{field}: {first.get('msg', 'invalid')}"
    return _error_response(
        422, ErrorDetail(type="RequestValidationError", message=message, field=field, rule=_rule_of(first))
    )


@_handles(UnicodeDecodeError)
def _not_utf8(exc: UnicodeDecodeError) -> Response[str]:
    # powertools decodes the body as UTF-8 before parsing it: bytes that are not are not JSON.
    try:
        app.current_event.decoded_body  # noqa: B018 - the same decode, to tell bad input from a bug
    except UnicodeDecodeError:
        pass
    else:
        raise exc
    detail = ErrorDetail(
        type="InvalidJson", message="the body is not UTF-8 JSON", field="body", rule="a JSON object"
    )
    return _error_response(400, detail)


@_handles(NotImplementedError)
def _unsupported_body(exc: NotImplementedError) -> Response[str]:
    # powertools raises NotImplementedError for a body that is neither JSON nor a form.
    if app.current_event.headers.get("content-type", "").startswith(content_types.APPLICATION_JSON):
        raise exc
    detail = ErrorDetail(
        type="UnsupportedMediaType",
        message="send the body as application/json",
        field="Content-Type",
        rule="application/json",
    )
    return _error_response(415, detail)


@_handles(Exception)
def _internal_error(exc: Exception) -> Response[str]:
    # A bug, not bad input: log it whole, answer without internals (they can carry URLs and keys).
    logger.exception("unhandled error in the jobs API")
    detail = ErrorDetail(type="InternalError", message="internal error; the request id is in the logs")
    return _error_response(500, detail)


@app.not_found
def _no_route(_: Exception) -> Response[str]:
    event = app.current_event
    message = f"no route {event.http_method} {event.path}"
    return _error_response(404, ErrorDetail(type="NotFound", message=message))


# --- POST /uploads -----------------------------------------------------------------------


def _safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_FILENAME.sub("_", base).lstrip("._")[:100]
    if not cleaned:
        raise ApiError(
            422,
            "RequestValidationError",
            "filename has no usable characters",
            field="filename",
            rule="letters, digits, . _ -",
        )
    return cleaned


@app.post(
    "/uploads",
    summary="Presigned PUT for an input image",
    responses=_responses(201, "Upload URL created", 400, 415),
    tags=["uploads"],
)
def create_upload(body: UploadRequest) -> Response[UploadResponse]:
    upload_id = uuid.uuid4().hex
    key = f"{UPLOADS_PREFIX}{upload_id}/{_safe_filename(body.filename)}"
    url = _presigner().generate_presigned_url(
        "put_object",
        Params={"Bucket": config.env(config.INPUT_BUCKET), "Key": key, "ContentType": body.content_type},
        ExpiresIn=UPLOAD_URL_TTL,
    )
    out = UploadResponse(
        upload_id=upload_id,
        key=key,
        url=url,
        headers={"Content-Type": body.content_type},
        expires_in=UPLOAD_URL_TTL,
    )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=out)


# --- POST /jobs --------------------------------------------------------------------------


def _idempotency_key(what: str) -> Any:
    return Header(
        alias="idempotency-key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=f"Retry-safe key: the same key and body return the same {what}.",
    )


def _start_responses(what: str, model: type[BaseModel]) -> dict[int, Any]:
    replay = {
        "description": f"Idempotency-Key replay: the {what} this key started",
        "content": {content_types.APPLICATION_JSON: {"model": model}},
    }
    return _responses(202, f"{what.capitalize()} started", 400, 409, 415, also={200: replay})


def _fingerprint(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_size(op: Operation, size: int, field: str) -> None:
    if size > op.input.max_bytes:
        raise ApiError(
            422,
            "ParamValidationError",
            f"the image is {size} bytes; {op.name} accepts at most {op.input.max_bytes}",
            field=field,
            rule=f"at most {op.input.max_bytes} bytes",
        )
    if size == 0:
        raise ApiError(422, "ParamValidationError", "the image is empty", field=field, rule="not empty")


def _s3_input(svc: Services, op: Operation, key: str, field: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    bucket = config.env(config.INPUT_BUCKET)
    try:
        head = svc.s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        raise ApiError(
            422,
            "InputNotFound",
            f"no object {key!r} in the input bucket",
            field=field,
            rule="an existing object",
        ) from None
    size = int(head["ContentLength"])
    _check_size(op, size, field)
    _sniff(svc, op, bucket, key, head.get("VersionId"), size, field)
    # Pinning the version keeps the job on these bytes even if the key is overwritten later.
    return {"bucket": bucket, "key": key, "version_id": head.get("VersionId")}


def _sniff(
    svc: Services, op: Operation, bucket: str, key: str, version: str | None, size: int, field: str
) -> None:
    """Refuse a file that is no image, or one outside the operation's limits, before a job exists.

    Reads only the first SNIFF_BYTES: enough for every accepted format's header (dimensions),
    so a bad file gets its 422 here and leaves no FAILED job behind. Validate still decodes
    the whole file before anything is paid.
    """
    from picflow.core.images import SNIFF_BYTES, inspect_prefix

    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": f"bytes=0-{SNIFF_BYTES - 1}"}
    if version:
        kwargs["VersionId"] = version
    head = svc.s3.get_object(**kwargs)["Body"].read()
    try:
        inspect_prefix(head, size, op.input)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, field) from None


def _upload_input(svc: Services, op: Operation, upload_id: str) -> dict[str, Any]:
    prefix = f"{UPLOADS_PREFIX}{upload_id}/"
    listing = svc.s3.list_objects_v2(Bucket=config.env(config.INPUT_BUCKET), Prefix=prefix, MaxKeys=2)
    keys = [o["Key"] for o in listing.get("Contents", [])]
    if len(keys) != 1:
        raise ApiError(
            422,
            "InputNotFound",
            f"upload {upload_id} has no object yet: PUT it first",
            field="input.upload_id",
            rule="an uploaded object",
        )
    return _s3_input(svc, op, keys[0], "input.upload_id")


def _url_input(svc: Services, op: Operation, url: str, job_id: str) -> dict[str, Any]:
    field = "input.url"
    try:
        urls.check_public_url(url)
    except urls.UnsafeUrlError as exc:
        raise ApiError.invalid(exc, field) from None
    bucket = config.env(config.INPUT_BUCKET)
    key = f"{UPLOADS_PREFIX}{job_id}/source"
    try:
        version = urls.fetch_into_s3(
            svc.s3,
            _fetch_client(),
            url,
            bucket=bucket,
            key=key,
            max_bytes=op.input.max_bytes,
            what=op.name,
            content_types=get_args(UploadContentType),
        )
    except (urls.UnsafeUrlError, ParamValidationError) as exc:
        raise ApiError.invalid(exc, field) from None
    except urls.InputUnavailableError as exc:
        raise ApiError(422, "InputUnavailable", exc.message, field=field, rule=exc.rule) from None
    head: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        head["VersionId"] = version
    size = int(svc.s3.head_object(**head)["ContentLength"])
    _sniff(svc, op, bucket, key, version, size, field)
    return {"bucket": bucket, "key": key, "version_id": version}


def _created(job_id: str, status: str, *, created: bool) -> Response[JobCreated]:
    body = JobCreated(job_id=job_id, status=status, created=created, links={"self": f"/jobs/{job_id}"})
    return Response(
        status_code=202 if created else 200, content_type=content_types.APPLICATION_JSON, body=body
    )


def _conflict() -> ApiError:
    return ApiError(
        409,
        "IdempotencyConflict",
        "this Idempotency-Key was used with a different request",
        field="Idempotency-Key",
        rule="one request per key",
    )


@app.post(
    "/jobs",
    summary="Start a job",
    description="202 for a new job; 200 with created=false when an Idempotency-Key is replayed "
    "with the same body; 409 when it is reused with another body.",
    responses=_start_responses("job", JobCreated),
    tags=["jobs"],
)
def create_job(
    body: CreateJobRequest, idempotency_key: Annotated[str | None, _idempotency_key("job")] = None
) -> Response[JobCreated]:
    svc = _services()
    try:
        op = get_operation(body.operation)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, "operation") from None
    try:
        validate_params(op, body.params)
    except ParamValidationError as exc:
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
            urls.check_public_url(body.notify_url)
        except urls.UnsafeUrlError as exc:
            raise ApiError.invalid(exc, "notify_url") from None

    fingerprint = _fingerprint(body)
    if idempotency_key is None:
        job_id = f"api-{uuid.uuid4().hex}"
    else:
        job_id = job_id_for("api", idempotency_key)
        existing = svc.store.get(job_id)
        # Answer a replay before fetching anything; a record without an execution falls
        # through so start_job can finish a start that failed half way.
        if existing is not None and existing.get("execution_arn"):
            if existing.get("request_sha256") != fingerprint:
                raise _conflict()
            return _created(job_id, str(existing["status"]), created=False)

    source = body.input
    if source.upload_id is not None:
        job_input = _upload_input(svc, op, source.upload_id)
    elif source.key is not None:
        job_input = _s3_input(svc, op, source.key, "input.key")
    else:
        job_input = _url_input(svc, op, str(source.url), job_id)
    request = {
        "operation": op.name,
        "params": body.params,
        "input": job_input,
        "notify_url": body.notify_url,
        "mode": body.mode,
        "source": "api",
    }
    started = start_job(request, job_id=job_id, store=svc.store, sfn=svc.sfn, fingerprint=fingerprint)
    if started.conflict:
        raise _conflict()
    return _created(
        job_id,
        JobStatus.QUEUED.value if started.created else _status_of(svc, job_id),
        created=started.created,
    )


def _status_of(svc: Services, job_id: str) -> str:
    return str((svc.store.get(job_id) or {}).get("status", JobStatus.QUEUED.value))


# --- GET /jobs/{job_id} ------------------------------------------------------------------


def _job_or_404(svc: Services, job_id: str) -> dict[str, Any]:
    job = svc.store.get(job_id)
    if job is None:
        raise ApiError(404, "NotFound", f"no job {job_id}", field="job_id", rule="an existing job")
    return job


def _presign(bucket: str, key: str, ttl: int) -> str:
    return _presigner().generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
    )


def _job_view(raw: Mapping[str, Any]) -> JobView:
    job = job_event(raw)  # drops task_token, callback_secret_sha256, submit_marker
    ttl = config.env_int(config.RESULT_URL_TTL, RESULT_URL_TTL_DEFAULT)
    manifest = job.get("manifest") or {}
    bucket = str(manifest.get("bucket") or config.optional(config.OUTPUT_BUCKET))
    stored = set(ResultView.model_fields) - {"url", "expires_in"}
    results = [
        ResultView(
            **{k: v for k, v in o.items() if k in stored},
            url=_presign(bucket, str(o["key"]), ttl),
            expires_in=ttl,
        )
        for o in manifest.get("outputs") or []
    ]
    job_id = str(job["job_id"])
    error = job.get("error")
    return JobView(
        job_id=job_id,
        status=str(job.get("status", "")),
        operation=str(job.get("operation", "")),
        source=job.get("source"),
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
        manifest_url=_presign(bucket, str(manifest["key"]), ttl) if manifest.get("key") else None,
        links={"self": f"/jobs/{job_id}"},
    )


@app.get(
    "/jobs/<job_id>",
    summary="A job's status and results",
    responses=_responses(200, "The job", 404),
    tags=["jobs"],
)
def get_job(job_id: Annotated[str, Path(pattern=_JOB_ID)]) -> JobView:
    svc = _services()
    return _job_view(_job_or_404(svc, job_id))


# --- GET /jobs ---------------------------------------------------------------------------


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
        raise ApiError(
            422,
            "RequestValidationError",
            "cursor is not one this API returned",
            field="cursor",
            rule="a cursor from a previous page",
        )
    return dict(raw)


def _encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(dict(key), sort_keys=True).encode()).decode().rstrip("=")


@app.get(
    "/jobs", summary="List jobs, newest first", responses=_responses(200, "A page of jobs"), tags=["jobs"]
)
def list_jobs(
    status: Annotated[JobStatus | None, Query()] = None,
    operation: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40, description="ISO 8601; jobs created since.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> JobList:
    from botocore.exceptions import ClientError

    svc = _services()
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
    jobs = [JobSummary(**{k: i.get(k) for k in JobSummary.model_fields}) for i in items]
    return JobList(jobs=jobs, cursor=_encode_cursor(last))


# --- DELETE /jobs/{job_id} ---------------------------------------------------------------


@app.delete(
    "/jobs/<job_id>",
    summary="Cancel a job",
    description=_CANCEL_NOTE,
    responses=_responses(200, "Cancelled", 404, 409),
    tags=["jobs"],
)
def cancel_job(job_id: Annotated[str, Path(pattern=_JOB_ID)]) -> CancelResult:
    svc = _services()
    return _cancel(svc, _job_or_404(svc, job_id))


def _cancel(svc: Services, job: Mapping[str, Any]) -> CancelResult:
    job_id = str(job["job_id"])
    # Marked first, conditionally: a job that finished meanwhile stays finished (409) and
    # nothing is stopped; the running execution's later writes are refused once it is final.
    updated = None
    if JobStatus(job["status"]) not in FINAL:
        error = {"type": "Cancelled", "message": "cancelled through the API"}
        updated = svc.store.update(
            job_id, {"status": JobStatus.CANCELLED.value, "error": error, "completed_at": now_iso()}
        )
    if updated is None:
        current = _status_of(svc, job_id)
        raise ApiError(
            409,
            "JobFinal",
            f"job {job_id} is already {current}",
            field="job_id",
            rule="a job that has not finished",
        )
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
    # A stopped execution runs no Catch, so its provider slot is given back here.
    op = OPERATIONS.get(str(job.get("operation")))
    provider = job.get("provider") or (op.provider.value if op else None)
    released = bool(provider) and svc.semaphore.release(str(provider), job_id)
    if job.get("cache_key"):
        # An identical job may be waiting on this one's results: let it go on.
        svc.cache.release(str(job["cache_key"]), job_id)
    return CancelResult(
        job_id=job_id,
        status=JobStatus.CANCELLED.value,
        execution_stopped=stopped,
        slot_released=released,
        note=_CANCEL_NOTE,
    )


# --- /batches ----------------------------------------------------------------------------


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
        raise _conflict()
    return _batch_created(batch_id, {**request, "status": execution["status"]}, created=False)


@app.post(
    "/batches",
    summary="Run one operation or the pipeline over a prefix or manifest of images",
    description="One job (or pipeline) per image, as a Distributed Map: at most max_concurrency in "
    "flight, the batch fails once more than tolerated_failure_percentage of its items fail, and items "
    "already done "
    "(same image, operation and params) reuse their results without paying again.",
    responses=_start_responses("batch", BatchCreated),
    tags=["batches"],
)
def create_batch(
    body: BatchRequest, idempotency_key: Annotated[str | None, _idempotency_key("batch")] = None
) -> Response[BatchCreated]:
    from botocore.exceptions import ClientError

    svc = _services()
    pipeline = body.operation == batches.PIPELINE
    # A pipeline item holds a slot of each step's provider in turn: the smallest cap bounds it.
    names = [name for _, name in batches.PIPELINE_STEPS] if pipeline else [body.operation]
    try:
        providers = {get_operation(name).provider.value for name in names}
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, "operation") from None
    op: Operation | str = batches.PIPELINE if pipeline else get_operation(body.operation)
    fingerprint = _fingerprint(body)
    batch_id = batches.batch_id_for(idempotency_key)
    if idempotency_key is not None and (replay := _replay(svc, batch_id, fingerprint)) is not None:
        return replay
    bucket = config.env(config.INPUT_BUCKET)
    if body.manifest is not None:
        try:
            rows = batches.read_manifest(svc.s3, bucket, body.manifest)
        except ClientError:
            raise ApiError(
                422,
                "InputNotFound",
                f"no object {body.manifest!r} in the input bucket",
                field="manifest",
                rule="an existing object",
            ) from None
    else:
        rows = batches.list_prefix(svc.s3, bucket, str(body.prefix))
    try:
        items = batches.plan_items(op, body.params, rows, bucket, batch_id)
    except urls.UnsafeUrlError as exc:
        raise ApiError.invalid(exc, "manifest") from None
    svc.s3.put_object(
        Bucket=config.env(config.OUTPUT_BUCKET),
        Key=batches.items_key(batch_id),
        Body=json.dumps(items, separators=(",", ":")).encode(),
        ContentType="application/json",
    )
    caps = config.concurrency_caps()
    cap = min(caps.get(p, 1) for p in providers)
    request = {
        "batch_id": batch_id,
        "operation": body.operation,
        "params": body.params,
        "source": {"prefix": str(body.prefix)} if body.manifest is None else {"manifest": body.manifest},
        "items_key": batches.items_key(batch_id),
        "total": len(items),
        "max_concurrency": body.max_concurrency or cap,
        "tolerated_failure_percentage": body.tolerated_failure_percentage,
        "reuse": body.reuse,
        # The map runs a Fetch step per item only in a batch that has URL items.
        "has_urls": any("url" in item for item in items),
        "pipeline": pipeline,
        "request_sha256": fingerprint,
        "created_at": now_iso(),
    }
    try:
        svc.sfn.start_execution(
            stateMachineArn=config.env(config.BATCH_STATE_MACHINE_ARN),
            name=batch_id,
            input=json.dumps(request),
        )
    except svc.sfn.exceptions.ExecutionAlreadyExists:
        # Two requests with one key raced: the other one started it.
        replay = _replay(svc, batch_id, fingerprint)
        if replay is not None:
            return replay
        raise
    return _batch_created(batch_id, request, created=True)


def _batch_final(batch_id: str, status: str) -> ApiError:
    return ApiError(
        409,
        "BatchFinal",
        f"batch {batch_id} is already {status}",
        field="batch_id",
        rule="a batch that has not finished",
    )


def _batch_or_404(svc: Services, batch_id: str) -> dict[str, Any]:
    execution = _batch_execution(svc, batch_id)
    if execution is None:
        raise ApiError(404, "NotFound", f"no batch {batch_id}", field="batch_id", rule="an existing batch")
    return execution


@app.get(
    "/batches/<batch_id>",
    summary="A batch's progress, cost and results",
    responses=_responses(200, "The batch", 404),
    tags=["batches"],
)
def get_batch(batch_id: Annotated[str, Path(pattern=_JOB_ID)]) -> BatchView:
    from botocore.exceptions import ClientError

    svc = _services()
    execution = _batch_or_404(svc, batch_id)
    request = json.loads(execution.get("input") or "{}")
    bucket = config.env(config.OUTPUT_BUCKET)
    results_key: str | None = batches.results_key(batch_id)
    try:
        metadata = svc.s3.head_object(Bucket=bucket, Key=str(results_key)).get("Metadata") or {}
    except ClientError:
        results_key, metadata = None, {}
    # An ended batch: the Report's summary, which settled items whose execution ended outside
    # their jobs (the live records would still say RUNNING for those).
    summary = batches.finished_summary(execution, metadata)
    if summary is None:
        records = list(batches.item_records(svc.store.table, batch_id, index=batches.PROGRESS_INDEX))
        if request.get("pipeline"):
            records = list(batches.group_pipeline(records).values())
        summary = batches.summarise(records, int(request["total"]))
    ttl = config.env_int(config.RESULT_URL_TTL, RESULT_URL_TTL_DEFAULT)
    error = None
    if execution.get("error") or execution.get("cause"):
        error = {"type": execution.get("error"), "message": execution.get("cause")}
    paused_at = batches.paused_at(svc.coordination_table, batch_id)
    return BatchView(
        batch_id=batch_id,
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
        results_url=None if results_key is None else _presign(bucket, results_key, ttl),
        error=error,
        paused=paused_at is not None,
        paused_at=paused_at,
        resumed_from=request.get("resumed_from"),
        links={"self": f"/batches/{batch_id}"},
    )


@app.delete(
    "/batches/<batch_id>",
    summary="Stop a batch",
    description="Stops the batch (no new items start) and cancels its unfinished jobs. " + _CANCEL_NOTE,
    responses=_responses(200, "Stopped", 404, 409),
    tags=["batches"],
)
def stop_batch(batch_id: Annotated[str, Path(pattern=_JOB_ID)]) -> BatchStopped:
    svc = _services()
    execution = _batch_or_404(svc, batch_id)
    if execution["status"] != "RUNNING":
        raise _batch_final(batch_id, str(execution["status"]))
    svc.sfn.stop_execution(
        executionArn=_batch_arn(batch_id), error="Cancelled", cause="stopped through the API"
    )
    cancelled = 0
    for item in batches.item_records(svc.store.table, batch_id, index=batches.PROGRESS_INDEX):
        if JobStatus(item["status"]) in FINAL:
            continue
        # The index has no execution, provider or operation: cancelling needs the whole record.
        job = svc.store.get(str(item["job_id"]))
        if job is None:
            continue
        try:
            _cancel(svc, job)
            cancelled += 1
        except ApiError:
            pass  # it finished meanwhile
    return BatchStopped(
        batch_id=batch_id,
        status="ABORTED",
        execution_stopped=True,
        jobs_cancelled=cancelled,
        note=_CANCEL_NOTE,
    )


_PAUSE_NOTE = (
    "Items that had not started end CANCELLED (error BatchPaused) without paying; items already "
    "past their job's validation finish and their results are kept. Resume the batch once it has ended."
)


@app.post(
    "/batches/<batch_id>/pause",
    summary="Pause a batch (drain)",
    description="No item that has not started yet runs or pays: each ends CANCELLED with a BatchPaused "
    "error; items already started finish normally and their results are collected. The batch then "
    "ends; POST /batches/{batch_id}/resume runs the rest. Pausing again is a no-op (200).",
    responses=_responses(200, "Paused (or already paused)", 404, 409),
    tags=["batches"],
)
def pause_batch(batch_id: Annotated[str, Path(pattern=_JOB_ID)]) -> BatchPaused:
    svc = _services()
    execution = _batch_or_404(svc, batch_id)
    table = svc.coordination_table
    # Idempotent first: a batch paused before stays paused, whether or not it has drained since.
    when = batches.paused_at(table, batch_id)
    if when is None:
        if execution["status"] != "RUNNING":
            raise _batch_final(batch_id, str(execution["status"]))
        when, _ = batches.pause(table, batch_id, now_iso())
    return BatchPaused(
        batch_id=batch_id, status=str(execution["status"]), paused=True, paused_at=when, note=_PAUSE_NOTE
    )


@app.post(
    "/batches/<batch_id>/resume",
    summary="Resume a batch that has ended",
    description="Starts a new batch (<batch_id>-r1, then -r2...) of the items that did not succeed, with "
    "the same operation, params, per-item params, concurrency and tolerated failures, reusing results: "
    "items that succeeded never run again. 409 while the batch runs (pause it first) or when every item "
    "succeeded; a second resume returns the batch the first one started (200).",
    responses=_responses(
        202,
        "Resumed",
        404,
        409,
        also={200: {"description": "Already resumed: the batch that resume started"}},
    ),
    tags=["batches"],
)
def resume_batch(batch_id: Annotated[str, Path(pattern=_JOB_ID)]) -> Response[BatchCreated]:
    svc = _services()
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
    new_id = batches.resumed_id(batch_id)
    existing = _batch_execution(svc, new_id)
    if existing is not None:
        return _batch_created(
            new_id, {**json.loads(existing.get("input") or "{}"), "status": existing["status"]}, created=False
        )
    items = batches.unfinished_items(svc.s3, svc.store.table, original)
    if not items:
        raise ApiError(
            409,
            "NothingToResume",
            f"every item of batch {batch_id} succeeded",
            field="batch_id",
            rule="a batch with items that did not succeed",
        )
    svc.s3.put_object(
        Bucket=config.env(config.OUTPUT_BUCKET),
        Key=batches.items_key(new_id),
        Body=json.dumps(items, separators=(",", ":")).encode(),
        ContentType="application/json",
    )
    request = {
        **{k: original[k] for k in _RESUMED_KEYS if k in original},
        "batch_id": new_id,
        "items_key": batches.items_key(new_id),
        "total": len(items),
        # Whatever the original said: what it paid for is answered from the result cache.
        "reuse": True,
        "has_urls": any("url" in item for item in items),
        "resumed_from": batch_id,
        "created_at": now_iso(),
    }
    try:
        svc.sfn.start_execution(
            stateMachineArn=config.env(config.BATCH_STATE_MACHINE_ARN), name=new_id, input=json.dumps(request)
        )
    except svc.sfn.exceptions.ExecutionAlreadyExists:
        # Two resumes raced: the other one started it.
        return resume_batch(batch_id)
    return _batch_created(new_id, request, created=True)


# What a resume keeps of the original request (items, reuse and ids are its own).
_RESUMED_KEYS = (
    "operation",
    "params",
    "source",
    "max_concurrency",
    "tolerated_failure_percentage",
    "pipeline",
    "request_sha256",
)


# --- GET /operations ---------------------------------------------------------------------


@app.get(
    "/operations",
    summary="The operation catalogue",
    responses=_responses(200, "Every operation"),
    tags=["operations"],
)
def list_operations() -> OperationList:
    return OperationList(operations=describe_catalogue(), pipelines=[batches.describe_pipeline()])


# --- OpenAPI 3.0 -------------------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")
_SCHEMA_ONE = ("items", "additionalProperties", "not")


def _schema_30(schema: Any) -> Any:
    """One JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 Schema Object."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _schema_30(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_schema_30(sub) for sub in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _schema_30(value)
        elif key != "$schema":
            out[key] = value
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "examples" in out:
        examples = out.pop("examples")
        if isinstance(examples, list) and examples:
            out["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain] = out.pop(bound)
            out[bound] = True
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        if len(types) < len(out["type"]):
            out["nullable"] = True
        out["type"] = types[0] if len(types) == 1 else types
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and any(o == {"type": "null"} for o in options):
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out}
            elif len(rest) == 1:
                out["allOf"] = rest  # 3.0 ignores siblings of $ref, so wrap it
            else:
                out[key] = rest
    if "$ref" in out and len(out) > 1:
        # 3.0 ignores every sibling of $ref (a description, a default): keep them beside an allOf.
        out = {**{k: v for k, v in out.items() if k != "$ref"}, "allOf": [{"$ref": out["$ref"]}]}
    return out


def _type_nullable_refs(node: Any, schemas: Mapping[str, Any]) -> None:
    """3.0 counts ``nullable`` only beside a ``type`` (3.0.3's clarification; redocly's
    nullable-type-sibling): a nullable ``allOf: [$ref]`` gets the type of the schema it names."""
    if isinstance(node, dict):
        refs = node.get("allOf")
        if node.get("nullable") and "type" not in node and isinstance(refs, list) and len(refs) == 1:
            target = schemas.get(str(refs[0].get("$ref", "")).removeprefix("#/components/schemas/"), {})
            if "type" in target:
                node["type"] = target["type"]
        for value in node.values():
            _type_nullable_refs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _type_nullable_refs(value, schemas)


def _to_30(node: Any, *, in_schema: bool = False) -> Any:
    if in_schema:
        return _schema_30(node)
    if isinstance(node, dict):
        return {
            k: {name: _schema_30(sub) for name, sub in v.items()}
            if k == "schemas"
            else _to_30(v, in_schema=k == "schema")
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_to_30(v) for v in node]
    return node


def _referenced(doc: Any) -> set[str]:
    text = json.dumps(doc)
    return set(re.findall(r'"#/components/schemas/([^"]+)"', text))


def openapi_document() -> dict[str, Any]:
    """The API as OpenAPI 3.0.3: powertools writes 3.1, API Gateway imports only 3.0."""
    # powertools' OpenAPI document models take ~70 ms to build; requests never need them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, License

    raw = json.loads(
        app.get_openapi_json_schema(
            title="picflow jobs API",
            version="1.0.0",
            description="AI image jobs: upload, start, follow and cancel. Every route needs an API key "
            "(x-api-key header); errors are {error: {type, message, field, rule}}.",
            security_schemes={API_KEY_SCHEME: APIKey(name="x-api-key", in_=APIKeyIn.header)},
            security=[{API_KEY_SCHEME: []}],
            # No open licence is declared for picflow (pyproject has none).
            license_info=License(name="Proprietary"),
        )
    )
    doc: dict[str, Any] = _to_30(raw)
    _type_nullable_refs(doc, doc["components"]["schemas"])
    doc["openapi"] = "3.0.3"
    doc["x-amazon-apigateway-api-key-source"] = "HEADER"
    for item in doc["paths"].values():
        for operation in item.values():
            operation["security"] = [{API_KEY_SCHEME: []}]
            operation["responses"] = dict(sorted(operation["responses"].items()))
    # Our error handlers replace powertools' 422 shapes: keep only schemas the paths reach.
    schemas = doc["components"]["schemas"]
    reached: set[str] = set()
    frontier = _referenced(doc["paths"])
    while frontier:
        reached |= frontier
        frontier = {ref for name in frontier for ref in _referenced(schemas[name])} - reached
    doc["components"]["schemas"] = {k: v for k, v in schemas.items() if k in reached}
    return doc


def write_openapi(path: str = "docs/openapi.json") -> str:
    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    import sys

    write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json")
