"""Every name picflow makes: the S3 key layout, and job and batch ids (execution names).

Input bucket::

    <operation>/<any/path>.<ext>          an S3 upload that starts a job (entry.s3events)
    <same key>.params.json                its sidecar params, uploaded first
    uploads/<upload id>/<file name>       POST /uploads (starts nothing)
    uploads/<job id>/source               a job's input.url, fetched (a batch item's: <batch id>-<index>)
    batches/...                           images a batch will process (starts nothing)

Output bucket::

    jobs/<job id>/                        a job's results and manifest.json (API and state machine jobs)
    <operation>/<path without extension>/ an S3 upload's results
    batches/<batch id>/items.json         a batch's items (written before it starts)
    batches/<batch id>/results.jsonl      its results manifest (written by its Report)

Ids are execution names (≤ 80 of ``[A-Za-z0-9_-]``) derived from an idempotency key, so the same
request twice finds the job (or batch) it started instead of starting, and paying for, another.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "BATCHES_PREFIX",
    "DEFAULT_TENANT",
    "EXECUTION_NAME",
    "MANIFEST_NAME",
    "SIDECAR_SUFFIX",
    "UPLOADS_PREFIX",
    "fetched_key",
    "items_key",
    "job_id_for",
    "job_prefix",
    "manifest_key",
    "result_key",
    "results_key",
    "s3_job_id",
    "s3_out_prefix",
    "tenant_job_id",
    "upload_key",
    "upload_prefix",
    "url_input_key",
]

# The API's own inputs (presigned uploads, fetched URLs): an object arriving here starts nothing.
UPLOADS_PREFIX = "uploads/"
# Images a batch will process, and (in the output bucket) each batch's items and results.
BATCHES_PREFIX = "batches/"
SIDECAR_SUFFIX = ".params.json"
MANIFEST_NAME = "manifest.json"
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def upload_prefix(upload_id: str) -> str:
    return f"{UPLOADS_PREFIX}{upload_id}/"


def upload_key(upload_id: str, filename: str) -> str:
    return f"{upload_prefix(upload_id)}{filename}"


def url_input_key(job_id: str) -> str:
    """Where a job's ``input.url`` is copied before the job starts."""
    return f"{upload_prefix(job_id)}source"


def fetched_key(batch_id: str, index: int) -> str:
    """Where a batch's URL item is copied: the key a job's ``input.url`` would get, by job id."""
    return url_input_key(f"{batch_id}-{index}")


def job_prefix(job_id: str) -> str:
    """Where a job's results go unless its request names a prefix (an S3 upload's does)."""
    return f"jobs/{job_id}/"


def s3_out_prefix(key: str) -> str:
    """An S3 upload's results prefix: its key without the extension, ``<operation>/<path>/``."""
    stem = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
    return f"{stem}/"


def manifest_key(prefix: str) -> str:
    return f"{prefix}{MANIFEST_NAME}"


# A stored result's extension, by the content type its bytes proved.
_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tif",
    "image/gif": "gif",
    "application/postscript": "eps",
}


def result_key(prefix: str, kind: str, index: int, content_type: str, *, numbered: bool) -> str:
    """A result under its job's prefix: ``image.png``, ``mask.png``, ``images-0.png``, ``vector.eps``."""
    suffix = f"-{index}" if numbered or index else ""
    return f"{prefix}{kind}{suffix}.{_EXTENSIONS.get(content_type, 'bin')}"


def items_key(batch_id: str) -> str:
    return f"{BATCHES_PREFIX}{batch_id}/items.json"


def results_key(batch_id: str) -> str:
    return f"{BATCHES_PREFIX}{batch_id}/results.jsonl"


def job_id_for(namespace: str, key: str) -> str:
    """A valid execution name (≤ 80 chars of [A-Za-z0-9_-]) that is a pure function of the key."""
    digest = hashlib.sha256(f"{namespace}\x00{key}".encode()).hexdigest()[:40]
    return f"{namespace}-{digest}"


# Who owns what has no tenant of its own: S3-triggered jobs of today's layout, records written
# before tenants, and the caller of the template's own API key (PICFLOW_DEFAULT_TENANT_KEY).
DEFAULT_TENANT = "default"


def tenant_job_id(namespace: str, tenant: str, key: str) -> str:
    """The id of ``tenant``'s job (or batch) for an Idempotency-Key: two tenants with the same key
    get two jobs, never each other's."""
    return job_id_for(namespace, key if tenant == DEFAULT_TENANT else f"{tenant}\x00{key}")


def s3_job_id(bucket: str, key: str, version_or_sequencer: str) -> str:
    # The same object version (or event sequencer) is the same job, however often S3 says so.
    return job_id_for("s3", f"{bucket}/{key}@{version_or_sequencer}")
