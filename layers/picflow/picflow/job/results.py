"""Results into S3: copy every result into the output bucket at once, with checksums and a manifest.

Provider result URLs expire (Tencent: 1 hour), so results are copied as soon as they
exist, and only from the provider's own result hosts (:func:`picflow.net.urls.check_result_url`).
Each download streams to a temporary file in fixed-size chunks (constant memory whatever the
size), hashing as it goes; the bytes' own magic decides the content type
(a wrong ``Content-Type`` from the provider is recorded, not trusted), images are checked
to decode, and the upload is a managed multipart transfer from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from picflow.core.catalogue import ResultKind
from picflow.core.errors import ResultUnavailableError, TransientError
from picflow.core.images import inspect_image, sniff_content_type
from picflow.core.names import manifest_key, result_key
from picflow.net.http import send

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

    from picflow.core.results import StoredResult
    from picflow.core.tasks import ResultRef

__all__ = ["CHUNK", "collect_results", "reuse_results"]

CHUNK = 1024 * 1024
# The multipart upload holds about one part per thread in memory (s3transfer reads each part to
# sign and checksum it): boto3's default, 10 threads x 8 MB, made Collect's peak RSS grow with
# the result (bench/collect_memory.py: 30 MB at 200 MB). Two threads keep it flat.
UPLOAD_PART = 8 * 1024 * 1024
UPLOAD_THREADS = 2


def _result_key(prefix: str, ref: ResultRef, content_type: str) -> str:
    return result_key(prefix, ref.kind.value, ref.index, content_type, numbered=ref.kind is ResultKind.IMAGES)


def _download(http: httpx.Client, url: str, dest: Any, provider: str) -> tuple[str, int, str | None]:
    """Stream ``url`` into ``dest``; returns (sha256, size, declared content type).

    Only a URL on one of the provider's result hosts is fetched (:func:`check_result_url`:
    whatever named it, a status answer, a callback or a sync answer); redirects are not followed.
    """
    from picflow.core.catalogue import SPECS, Provider
    from picflow.net.urls import check_result_url

    check_result_url(url, SPECS[Provider(provider)])
    digest = hashlib.sha256()
    size = 0
    try:
        response = send(http, http.build_request("GET", url), provider=provider, idempotent=True, stream=True)
    except TransientError:
        raise
    try:
        if response.status_code in (403, 404, 410):
            raise ResultUnavailableError(
                f"result URL answered {response.status_code} (expired or missing)",
                provider=provider,
                code=response.status_code,
                http_status=response.status_code,
            )
        if response.status_code >= 400:
            raise TransientError(
                f"result download answered {response.status_code}",
                provider=provider,
                code=response.status_code,
                http_status=response.status_code,
            )
        try:
            for chunk in response.iter_bytes(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dest.write(chunk)
        except httpx.TransportError as exc:
            # A body cut short (Content-Length not met) lands here: fetch it again.
            raise TransientError(
                f"result download broke off: {type(exc).__name__}", provider=provider, code="Truncated"
            ) from exc
        declared = response.headers.get("Content-Type")
    finally:
        response.close()
    return digest.hexdigest(), size, declared


def _hash_file(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _transfer_config() -> TransferConfig:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=UPLOAD_PART, multipart_chunksize=UPLOAD_PART, max_concurrency=UPLOAD_THREADS
    )


def _store_one(
    ref: ResultRef, *, http: httpx.Client, s3: S3Client, bucket: str, prefix: str, provider: str, workdir: str
) -> StoredResult:
    declared: str | None = None
    path = ref.path  # removed afterwards, whatever happens: a decoded result or our download
    try:
        if path is None:
            with tempfile.NamedTemporaryFile(dir=workdir, delete=False) as tmp:
                path = tmp.name
                if ref.url is not None:
                    sha, size, declared = _download(http, ref.url, tmp, provider)
        else:
            sha, size = _hash_file(path)
        with open(path, "rb") as fh:
            content_type = sniff_content_type(fh.read(64))
            if content_type is None or size == 0:
                raise ResultUnavailableError(
                    f"{ref.kind.value} result is not a known file type ({size} bytes)",
                    provider=provider,
                    code="CorruptResult",
                )
            width = height = None
            if content_type.startswith("image/"):
                try:
                    info = inspect_image(fh)
                except Exception as exc:
                    raise ResultUnavailableError(
                        f"{ref.kind.value} result does not decode: {exc}",
                        provider=provider,
                        code="CorruptResult",
                    ) from None
                width, height = info.width, info.height
        key = _result_key(prefix, ref, content_type)
        s3.upload_file(
            path,
            bucket,
            key,
            ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha}},
            Config=_transfer_config(),
        )
        return {
            "kind": ref.kind.value,
            "index": ref.index,
            "key": key,
            "content_type": content_type,
            "size": size,
            "sha256": sha,
            "declared_content_type": declared,
            "width": width,
            "height": height,
        }
    finally:
        if path is not None:
            os.unlink(path)


def collect_results(
    refs: Iterable[ResultRef],
    *,
    http: httpx.Client,
    s3: S3Client,
    bucket: str,
    prefix: str,
    provider: str,
    job: Mapping[str, Any],
    workdir: str | None = None,
) -> dict[str, Any]:
    """Store every file result under ``prefix`` and write ``manifest.json``; returns the manifest."""
    workdir = workdir or tempfile.gettempdir()
    outputs: list[dict[str, Any]] = []
    texts: dict[str, str] = {}
    for ref in refs:
        if ref.text is not None:
            texts[ref.kind.value] = ref.text
            continue
        stored = _store_one(
            ref, http=http, s3=s3, bucket=bucket, prefix=prefix, provider=provider, workdir=workdir
        )
        outputs.append(dict(stored))
    return _write_manifest(s3, bucket, prefix, job, provider=provider, outputs=outputs, texts=texts)


def _write_manifest(
    s3: S3Client,
    bucket: str,
    prefix: str,
    job: Mapping[str, Any],
    *,
    provider: str,
    outputs: list[dict[str, Any]],
    texts: Mapping[str, str],
    **extra: Any,
) -> dict[str, Any]:
    manifest = {
        "job_id": job["job_id"],
        "operation": job["operation"],
        "provider": provider,
        "params": job.get("params", {}),
        "input": job.get("input", {}),
        "bucket": bucket,
        "outputs": outputs,
        "texts": dict(texts),
        **extra,
    }
    key = manifest_key(prefix)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(manifest, ensure_ascii=False, indent=2).encode(),
        ContentType="application/json",
    )
    manifest["manifest_key"] = key
    return manifest


def reuse_results(
    earlier: Mapping[str, Any],
    *,
    s3: S3Client,
    bucket: str,
    prefix: str,
    provider: str,
    job: Mapping[str, Any],
) -> dict[str, Any]:
    """Server-side copies of an earlier job's outputs (a result-cache entry) under ``prefix``.

    The new job's results are its own objects at its own prefix (an S3-upload job's user looks
    there), with the same checksums, and a manifest naming the job they were reused from.
    """
    outputs: list[dict[str, Any]] = []
    for output in earlier.get("outputs") or []:
        key = prefix + str(output["key"]).rsplit("/", 1)[-1]
        s3.copy_object(
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": str(earlier["bucket"]), "Key": str(output["key"])},
            MetadataDirective="COPY",
        )
        outputs.append({**output, "key": key})
    return _write_manifest(
        s3,
        bucket,
        prefix,
        job,
        provider=provider,
        outputs=outputs,
        texts=earlier.get("texts") or {},
        reused_from=earlier.get("job_id"),
    )
