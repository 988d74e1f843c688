"""A job's input as ``POST /jobs`` names it (an upload, a key, a URL), checked and pinned to a
version before a job exists: a file that is no image, or breaks the operation's limits, gets its
422 here and leaves no FAILED job behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from picflow.api import common
from picflow.api.errors import ApiError
from picflow.api.models import UploadContentType
from picflow.aws.services import Services
from picflow.core import config
from picflow.core.catalogue import (
    Operation,
)
from picflow.core.errors import ParamValidationError
from picflow.core.names import key_tenant, upload_prefix, url_input_key
from picflow.net import urls

if TYPE_CHECKING:
    pass

__all__ = ["not_found", "s3_input", "upload_input", "url_input"]


def not_found(key: str, field: str) -> ApiError:
    """The answer for a key that does not exist, and (the same, so it tells nothing) for another
    tenant's key."""
    return ApiError(
        422, "InputNotFound", f"no object {key!r} in the input bucket", field=field, rule="an existing object"
    )


def s3_input(svc: Services, op: Operation, key: str, field: str, tenant: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    bucket = config.env(config.INPUT_BUCKET)
    if key_tenant(key) != tenant:
        raise not_found(key, field)
    try:
        head = svc.s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        raise not_found(key, field) from None
    size = int(head["ContentLength"])
    try:
        op.input.check_size(size, what=op.name, field=field)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, field) from None
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
        inspect_prefix(head, size, op.input, what=op.name)
    except ParamValidationError as exc:
        raise ApiError.invalid(exc, field) from None


def upload_input(svc: Services, op: Operation, upload_id: str, tenant: str) -> dict[str, Any]:
    # Only the caller's own uploads: another tenant's upload id has no object under this root.
    prefix = upload_prefix(upload_id, tenant)
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
    return s3_input(svc, op, keys[0], "input.upload_id", tenant)


def url_input(svc: Services, op: Operation, url: str, job_id: str, tenant: str) -> dict[str, Any]:
    field = "input.url"
    try:
        urls.check_public_url(url)
    except urls.UnsafeUrlError as exc:
        raise ApiError.invalid(exc, field) from None
    bucket = config.env(config.INPUT_BUCKET)
    key = url_input_key(job_id, tenant)
    try:
        version = urls.fetch_into_s3(
            svc.s3,
            common.fetch_client(),
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
