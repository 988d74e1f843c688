"""The API's request and response models (pydantic): the OpenAPI document's schemas.

A stored result as the API shows it is :class:`picflow.core.results.ResultView`, the one shape
the CLI reads too.

No ``from __future__ import annotations`` here: pydantic would evaluate every field's annotation
string when each class is created, ~2 ms of the API's cold start (bench/coldstart.py).
"""

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from picflow.core.errors import ParamValidationError
from picflow.core.results import ResultView

if TYPE_CHECKING:
    pass

__all__ = [
    "BatchCreated",
    "BatchList",
    "BatchPaused",
    "BatchRequest",
    "BatchStopped",
    "BatchSummary",
    "BatchView",
    "CancelResult",
    "CostView",
    "CreateJobRequest",
    "ErrorDetail",
    "ErrorResponse",
    "JobCreated",
    "JobInput",
    "JobList",
    "JobSummary",
    "JobView",
    "ManifestContentType",
    "OperationList",
    "Timings",
    "UploadContentType",
    "UploadRequest",
    "UploadResponse",
]

UploadContentType = Literal["image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff"]


# A batch manifest goes up the same way (``picflow batch run --manifest file.csv``); uploads/
# starts nothing and a job's Validate sniffs the bytes, so a manifest can never run as an image.
ManifestContentType = Literal["text/csv", "application/x-ndjson"]


class _Model(BaseModel):
    # Built on first use: a request validates one or two models, not the 20-odd (~25 ms of the
    # API's cold start); the OpenAPI document builds them all.
    model_config = ConfigDict(extra="forbid", defer_build=True)


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


class _JobHead(_Model):
    job_id: str
    status: str
    operation: str
    source: str | None = Field(None, description="api, s3 or sfn (another state machine).")
    tenant: str = Field(
        "default",
        description="The tenant the job belongs to: the id of the API key that started it (its batch's, "
        "or the tenants/<id>/ prefix of its S3 upload); 'default' for the stack's own key.",
    )
    cost: CostView = Field(
        default_factory=CostView,
        description="What the job cost its tenant, in the provider's unit (0 when reused).",
    )


class JobView(_JobHead):
    provider: str | None = None
    style: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    progress: int | None = None
    polls: int = 0
    timings: Timings
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


class BatchSummary(_Model):
    batch_id: str
    tenant: str = "default"
    status: str
    operation: str
    total: int
    created_at: str | None = None
    resumed_from: str | None = None
    links: dict[str, str]


class BatchList(_Model):
    batches: list[BatchSummary]
    cursor: str | None = Field(None, description="Pass back as ?cursor= for the next page.")


class BatchView(_Model):
    batch_id: str
    tenant: str = Field("default", description="The tenant the batch and all its jobs belong to.")
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
