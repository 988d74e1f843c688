"""Every name picflow makes: the S3 key layout, and job and batch ids (execution names).

Input bucket (``<root>`` is ``""`` for the default tenant, ``tenants/<tenant id>/`` for any other)::

    <root><operation>/<any/path>.<ext>    an S3 upload that starts a job of that tenant (entry.s3events)
    <same key>.params.json                its sidecar params, uploaded first
    <root>uploads/<upload id>/<file name> POST /uploads (starts nothing)
    <root>uploads/<job id>/source         a job's input.url, fetched (a batch item's: <batch id>-<index>)
    <root>batches/...                     images a batch will process (starts nothing)

A tenant owns exactly the keys under its root (:func:`key_tenant`): tenant ``t`` those under
``tenants/t/``, the default tenant every other key (today's layout). A tenant's jobs, uploads
and batches may only name its own objects.

Output bucket::

    <root>jobs/<job id>/                  a job's results and manifest.json (API and state machine jobs)
    <root><operation>/<path w/o ext>/     an S3 upload's results
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
    "TENANTS_PREFIX",
    "TENANT_ID",
    "UPLOADS_PREFIX",
    "fetched_key",
    "items_key",
    "job_id_for",
    "job_prefix",
    "key_tenant",
    "manifest_key",
    "result_key",
    "results_key",
    "s3_job_id",
    "s3_out_prefix",
    "tenant_job_id",
    "tenant_root",
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


# Who owns what has no tenant of its own: S3-triggered jobs of today's layout, records written
# before tenants, and the caller of the template's own API key (PICFLOW_DEFAULT_TENANT_KEY).
DEFAULT_TENANT = "default"
# Every other tenant's objects live under tenants/<tenant id>/ in both buckets.
TENANTS_PREFIX = "tenants/"
# A tenant id is an API key id (API Gateway's are 10 lowercase letters and digits): one path segment.
TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def tenant_root(tenant: str) -> str:
    """Where ``tenant``'s objects live in either bucket: the default tenant's at the top."""
    return "" if tenant == DEFAULT_TENANT else f"{TENANTS_PREFIX}{tenant}/"


def key_tenant(key: str) -> str:
    """The tenant that owns ``key``: ``t`` for ``tenants/t/...``, else the default tenant."""
    if key.startswith(TENANTS_PREFIX):
        tenant, slash, _ = key[len(TENANTS_PREFIX) :].partition("/")
        if slash and TENANT_ID.match(tenant):
            return tenant
    return DEFAULT_TENANT


def upload_prefix(upload_id: str, tenant: str = DEFAULT_TENANT) -> str:
    return f"{tenant_root(tenant)}{UPLOADS_PREFIX}{upload_id}/"


def upload_key(upload_id: str, filename: str, tenant: str = DEFAULT_TENANT) -> str:
    return f"{upload_prefix(upload_id, tenant)}{filename}"


def url_input_key(job_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Where a job's ``input.url`` is copied before the job starts."""
    return f"{upload_prefix(job_id, tenant)}source"


def fetched_key(batch_id: str, index: int, tenant: str = DEFAULT_TENANT) -> str:
    """Where a batch's URL item is copied: the key a job's ``input.url`` would get, by job id."""
    return url_input_key(f"{batch_id}-{index}", tenant)


def job_prefix(job_id: str, tenant: str = DEFAULT_TENANT) -> str:
    """Where a job's results go unless its request names a prefix (an S3 upload's does)."""
    return f"{tenant_root(tenant)}jobs/{job_id}/"


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


def tenant_job_id(namespace: str, tenant: str, key: str) -> str:
    """The id of ``tenant``'s job (or batch) for an Idempotency-Key: two tenants with the same key
    get two jobs, never each other's."""
    return job_id_for(namespace, key if tenant == DEFAULT_TENANT else f"{tenant}\x00{key}")


def s3_job_id(bucket: str, key: str, version_or_sequencer: str) -> str:
    # The same object version (or event sequencer) is the same job, however often S3 says so.
    return job_id_for("s3", f"{bucket}/{key}@{version_or_sequencer}")
