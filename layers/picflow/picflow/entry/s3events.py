"""S3 uploads as a way in: ``<operation>/<any/path>.<ext>`` in the input bucket starts a job of
the default tenant, ``tenants/<tenant id>/<operation>/<any/path>.<ext>`` one of that tenant
(:func:`picflow.core.names.key_tenant`); ``uploads/`` and ``batches/`` (under either root) start
nothing.

Parameters come from the object's metadata (``x-amz-meta-params`` holding JSON, or one
``x-amz-meta-<name>`` per parameter) or from a sidecar ``<key>.params.json`` uploaded
*before* the image. Results land under the predictable prefix
``<operation>/<path without extension>/`` in the output bucket (the tenant's root first).

S3 delivers events at least once: the job id comes from bucket + key + version id (or the
event's sequencer when the bucket is unversioned), so a duplicate starts nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from picflow.aws.services import Services, services
from picflow.aws.starter import StartResult, start_job
from picflow.core.names import (
    BATCHES_PREFIX,
    SIDECAR_SUFFIX,
    UPLOADS_PREFIX,
    key_tenant,
    s3_job_id,
    s3_out_prefix,
    tenant_root,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Upload", "job_request", "start_from_s3_event", "uploads"]

# Metadata keys that are picflow's own, not operation parameters.
_RESERVED = {"params", "notify-url", "mode"}


@dataclass(frozen=True)
class S3Upload:
    bucket: str
    key: str
    version_id: str | None
    sequencer: str

    @property
    def job_id(self) -> str:
        return s3_job_id(self.bucket, self.key, self.version_id or self.sequencer)

    @property
    def tenant(self) -> str:
        """The tenant named by the key's root (``tenants/<id>/``); today's layout: the default."""
        return key_tenant(self.key)

    @property
    def path(self) -> str:
        """The key below its tenant's root: ``<operation>/<any/path>.<ext>``."""
        return self.key[len(tenant_root(self.tenant)) :]

    @property
    def operation(self) -> str:
        return self.path.split("/", 1)[0]


def uploads(event: Mapping[str, Any]) -> Iterator[S3Upload]:
    """The object-created records of an S3 event that are images to process (not sidecars)."""
    for record in event.get("Records", []):
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record["s3"]
        # S3 URL-encodes keys in events ('+' for spaces); moto also encodes '/'.
        key = unquote_plus(s3["object"]["key"])
        upload = S3Upload(
            bucket=s3["bucket"]["name"],
            key=key,
            version_id=s3["object"].get("versionId") or None,
            sequencer=str(s3["object"].get("sequencer") or s3["object"].get("eTag") or ""),
        )
        path = upload.path
        if key.endswith(SIDECAR_SUFFIX) or key.endswith("/") or "/" not in path:
            continue
        if path.startswith((UPLOADS_PREFIX, BATCHES_PREFIX)):
            continue
        yield upload


def _params_from(metadata: Mapping[str, str]) -> dict[str, Any]:
    if "params" in metadata:
        loaded = json.loads(metadata["params"])
        if not isinstance(loaded, dict):
            raise ValueError("x-amz-meta-params must hold a JSON object")
        return loaded
    return {k.replace("-", "_"): v for k, v in metadata.items() if k not in _RESERVED}


def job_request(upload: S3Upload, s3: S3Client) -> dict[str, Any] | None:
    """The job request for one upload: operation, params (metadata or sidecar), input, output
    prefix; None when the object (that version) is gone already: there is nothing to run."""
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": upload.bucket, "Key": upload.key}
    if upload.version_id:
        kwargs["VersionId"] = upload.version_id
    try:
        head = s3.head_object(**kwargs)
    except ClientError as exc:
        # Deleted (or overwritten, unversioned) before this event arrived: raising would have
        # Lambda retry the event into the dead-letter destination for no job at all.
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (404, 400, 405):
            return None
        raise
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    params: dict[str, Any] = {}
    problem: str | None = None  # Validate turns it into a recorded, clear failure
    try:
        params = _params_from(metadata)
    except ValueError as exc:
        problem = f"x-amz-meta-params: {exc}"
    if not params and problem is None:
        sidecar = s3.list_objects_v2(Bucket=upload.bucket, Prefix=upload.key + SIDECAR_SUFFIX, MaxKeys=1)
        if sidecar.get("KeyCount"):
            try:
                body = s3.get_object(Bucket=upload.bucket, Key=upload.key + SIDECAR_SUFFIX)["Body"].read(
                    65536
                )
                loaded = json.loads(body)
            except (ValueError, ClientError):  # unreadable, or deleted since the listing
                loaded = None
            if isinstance(loaded, dict):
                params = loaded
            else:
                problem = f"{upload.key}{SIDECAR_SUFFIX} must hold a JSON object"
    request: dict[str, Any] = {
        "operation": upload.operation,
        "params": params,
        "input": {"bucket": upload.bucket, "key": upload.key, "version_id": upload.version_id},
        "source": "s3",
        "tenant": upload.tenant,
        # The key keeps its root, so a tenant's results land under its root in the output bucket.
        "out_prefix": s3_out_prefix(upload.key),
    }
    if problem:
        request["params_error"] = problem
    if metadata.get("notify-url"):
        request["notify_url"] = metadata["notify-url"]
    if metadata.get("mode"):
        request["mode"] = metadata["mode"]
    return request


def start_from_s3_event(event: Mapping[str, Any], svc: Services | None = None) -> list[StartResult]:
    """Start one job per uploaded image; duplicates of an event, and events for objects already
    gone, start nothing."""
    svc = svc or services()
    started = []
    for upload in uploads(event):
        request = job_request(upload, svc.s3)
        if request is not None:
            started.append(start_job(request, job_id=upload.job_id, store=svc.store, sfn=svc.sfn))
    return started
