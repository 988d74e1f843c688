"""The batch map's Fetch step: a URL item's image copied into the input bucket just before its
job starts (through :func:`picflow.net.urls.fetch_into_s3`'s SSRF-checked client).

A URL that then fails (not 200, too big, unreachable) fails its item with a job record saying
why; in a pipeline batch that record is the item's first job's (``<batch id>-<index>-cutout``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import JobStatus
from picflow.batch.pipeline import PIPELINE, PIPELINE_STEPS, pipeline_step_params
from picflow.core.errors import ParamValidationError
from picflow.core.names import DEFAULT_TENANT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client

__all__ = ["IMAGE_CONTENT_TYPES", "fetch_item"]


# A fetched image keeps its declared type only when it is one of these (a label: Validate sniffs).
IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff")


def fetch_item(batch: Mapping[str, Any], item: Mapping[str, Any], *, s3: S3Client, table: Table) -> None:
    """The map's Fetch step for a URL item: copy the image to the item's key, or record the
    item's job as FAILED with the reason and raise (the map counts the item as failed)."""
    from picflow.aws.jobs import JobStore, now_iso
    from picflow.core.catalogue import get_operation
    from picflow.net.urls import InputUnavailableError, UnsafeUrlError, fetch_into_s3, safe_client

    if "url" not in item:
        return  # a key item of a batch that also has URL items: its image is in place already
    job_id, op_name = f"{batch['batch_id']}-{item['i']}", str(batch["operation"])
    params, source = dict(item.get("params") or {}), "batch"
    if op_name == PIPELINE:
        # The image is the first step's input, and that step's record is the one the item's line
        # reads a failure from (group_pipeline): it stands in for the cutout job that never ran.
        suffix, op_name = PIPELINE_STEPS[0]
        job_id, params, source = f"{job_id}-{suffix}", pipeline_step_params(params)[0][1], PIPELINE
    op = get_operation(op_name)
    try:
        with safe_client() as client:
            fetch_into_s3(
                s3,
                client,
                str(item["url"]),
                bucket=str(item["bucket"]),
                key=str(item["key"]),
                max_bytes=op.input.max_bytes,
                what=op.name,
                content_types=IMAGE_CONTENT_TYPES,
            )
    except (UnsafeUrlError, InputUnavailableError, ParamValidationError) as exc:
        error = {"type": type(exc).__name__, "message": exc.message, "rule": exc.rule}
        JobStore(table).create(
            {
                "job_id": job_id,
                "batch_id": str(batch["batch_id"]),
                "tenant": str(batch.get("tenant") or DEFAULT_TENANT),
                "operation": op.name,
                "params": params,
                "input": {"url": str(item["url"])},
                "source": source,
                "status": JobStatus.FAILED.value,
                "error": error,
                "completed_at": now_iso(),
            }
        )
        raise InputUnavailableError(f"item {item['i']}: {exc.message}", rule=exc.rule) from None
