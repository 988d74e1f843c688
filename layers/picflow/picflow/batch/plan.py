"""Planning a batch: its items from a prefix or a manifest, each item's params merged and checked,
each URL checked, before anything runs; and a resume's items (those that did not succeed).

Manifests: CSV with a header row (``key`` or ``url``, and optionally ``params``, a JSON
object), or JSON Lines (``{"key": ..., "params": {...}}`` or ``{"url": ...}``), one item per row;
per-item params override the batch's. Keys name objects in the input bucket, and only the
batch's tenant's own (:func:`picflow.core.names.key_tenant`): a prefix lists only them, and a
manifest line naming another tenant's key is refused, naming the line. A URL item goes
through the same checks as a job's ``input.url``: refused at ``POST /batches`` (naming its line)
unless it is a public http(s) URL (:func:`picflow.net.urls.check_public_url`), then copied by the
map's Fetch step (:mod:`picflow.batch.fetch`) to ``<root>uploads/<batch id>-<index>/source`` in
the input bucket (under the tenant's root) just before its job starts. The items file is a
snapshot: a prefix batch is exactly the objects listed when it was created, and item indices
never move.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import JobStatus, now_iso
from picflow.batch.pipeline import PIPELINE, pipeline_step_params
from picflow.batch.report import PROGRESS_INDEX, group_pipeline, item_records
from picflow.core import config
from picflow.core.errors import ParamValidationError
from picflow.core.jsonlimits import loads
from picflow.core.names import DEFAULT_TENANT, fetched_key, items_key, key_tenant, tenant_job_id, tenant_root

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client

    from picflow.aws.services import Services
    from picflow.core.catalogue import Operation

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_ITEMS",
    "batch_id_for",
    "check_prefix",
    "list_prefix",
    "plan_items",
    "read_manifest",
    "resumed_id",
    "start_batch",
    "unfinished_items",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


# A Lambda reads and writes the items file in one go: ~100 bytes an item.
MAX_ITEMS = 100_000


def batch_id_for(idempotency_key: str | None, tenant: str = DEFAULT_TENANT) -> str:
    """A new batch's id; with an Idempotency-Key, the same one for the same tenant and key."""
    if idempotency_key is None:
        return f"batch-{uuid.uuid4().hex}"
    return tenant_job_id("batch", tenant, idempotency_key)


def _too_many(where: str) -> ParamValidationError:
    return ParamValidationError(
        f"{where} holds more than {MAX_ITEMS} images", field=where, rule=f"≤ {MAX_ITEMS}"
    )


def check_prefix(prefix: str, tenant: str) -> None:
    """A tenant's prefix must lie under its root (``tenants/<id>/``); the default tenant's may be
    any (what it lists is filtered to its own keys)."""
    root = tenant_root(tenant)
    if not prefix.startswith(root):
        raise ParamValidationError(
            f"prefix {prefix!r} is outside this tenant's objects",
            field="prefix",
            rule=f"a prefix under {root}",
        )


def list_prefix(s3: S3Client, bucket: str, prefix: str, tenant: str = DEFAULT_TENANT) -> list[dict[str, Any]]:
    """``tenant``'s images under ``prefix``, in key order (the order S3 lists them): another
    tenant's keys under it (``tenants/...`` below a default tenant's prefix) are not listed."""
    check_prefix(prefix, tenant)
    rows: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].lower().endswith(IMAGE_SUFFIXES) and key_tenant(obj["Key"]) == tenant:
                rows.append({"key": obj["Key"]})
        if len(rows) > MAX_ITEMS:
            raise _too_many("prefix")
    return rows


def _rows(text: str, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if name.lower().endswith(".csv"):
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            out: dict[str, Any] = {k: v for k, v in row.items() if k and v}
            if "params" in out:
                try:
                    out["params"] = loads(out["params"], field="manifest")
                except ParamValidationError as exc:
                    raise ParamValidationError(
                        f"manifest line {line}: {exc.message}", field="manifest", rule=exc.rule
                    ) from None
                except ValueError:
                    out["params"] = None
            yield line, out
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            loaded = loads(raw, field="manifest")
        except ParamValidationError as exc:
            raise ParamValidationError(
                f"manifest line {line}: {exc.message}", field="manifest", rule=exc.rule
            ) from None
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ParamValidationError(
                f"manifest line {line} is not a JSON object", field="manifest", rule="JSON Lines"
            )
        yield line, loaded


def read_manifest(s3: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    """Rows ``{"key", "params"?, "line"}`` of a CSV or JSON Lines manifest."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParamValidationError(
            f"the manifest is not UTF-8 (byte {exc.start})", field="manifest", rule="UTF-8 text"
        ) from None
    rows: list[dict[str, Any]] = []
    for line, row in _rows(body, key):
        given = [name for name in ("key", "url") if row.get(name)]
        if len(given) != 1 or not isinstance(row[given[0]], str):
            raise ParamValidationError(
                f"manifest line {line} needs exactly one of key, url (a string)",
                field="manifest",
                rule="a key or a url per item",
            )
        if "params" in row and not isinstance(row["params"], dict):
            raise ParamValidationError(
                f"manifest line {line}: params must be a JSON object", field="manifest", rule="a JSON object"
            )
        rows.append({given[0]: row[given[0]], "params": row.get("params") or {}, "line": line})
        if len(rows) > MAX_ITEMS:
            raise _too_many("manifest")
    return rows


def _validated(op: Operation | str, merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` checked as ``op``'s params; for the pipeline, as each step's params, and
    completed with redraw's default upscale (the pipeline's ASL reads both prompt and upscale)."""
    from picflow.core.catalogue import validate_params
    from picflow.net.urls import check_param_urls

    if op != PIPELINE:
        check_param_urls(validate_params(op, merged))
        return merged
    steps = [validate_params(name, step) for name, step in pipeline_step_params(merged)]
    for step in steps:
        check_param_urls(step)
    return {"prompt": steps[1].model_dump()["prompt"], "upscale": steps[2].model_dump()["upscale"]}


def plan_items(
    op: Operation | str,
    params: Mapping[str, Any],
    rows: list[dict[str, Any]],
    bucket: str,
    batch_id: str,
    tenant: str = DEFAULT_TENANT,
) -> list[dict[str, Any]]:
    """The items file: each row's params merged over the batch's and validated, each key checked
    to be ``tenant``'s and each URL checked, before anything runs (the error names the line).
    ``op`` is an operation or :data:`PIPELINE`."""
    from picflow.net.urls import UnsafeUrlError, check_public_url

    if not rows:
        raise ParamValidationError("the batch has no images", field="items", rule="at least one image")
    items = []
    public_hosts: set[tuple[str, int]] = set()
    for index, row in enumerate(rows):
        where = f"manifest line {row['line']}" if "line" in row else f"item {row['key']}"
        try:
            merged = _validated(op, {**params, **(row.get("params") or {})})
        except ParamValidationError as exc:
            raise ParamValidationError(
                f"{where}: {exc.message}", field=f"params.{exc.field}", rule=exc.rule
            ) from None
        except UnsafeUrlError as exc:
            message = f"{where}: {exc.message}"
            raise UnsafeUrlError(message, rule=exc.rule, field=f"params.{exc.field}") from None
        if "url" not in row:
            if key_tenant(str(row["key"])) != tenant:
                # Whether it exists is not said: the same answer for any key outside the root.
                raise ParamValidationError(
                    f"{where}: key {row['key']!r} is not among this tenant's objects",
                    field="manifest",
                    rule=f"a key under {tenant_root(tenant) or 'the default tenant root (not tenants/)'}",
                )
            items.append({"i": index, "bucket": bucket, "key": row["key"], "params": merged})
            continue
        try:
            check_public_url(row["url"], checked=public_hosts, where="manifest")
        except UnsafeUrlError as exc:
            raise UnsafeUrlError(f"{where}: {exc.message}", rule=exc.rule) from None
        # bucket/key are where Fetch puts the image: the job reads it like any other item.
        item = {"i": index, "url": row["url"], "bucket": bucket, "key": fetched_key(batch_id, index, tenant)}
        items.append({**item, "params": merged})
    return items


_RESUMED = re.compile(r"^(?P<root>.+)-r(?P<n>[0-9]+)$")


def resumed_id(batch_id: str) -> str:
    """The batch a resume of ``batch_id`` starts: ``<root>-r1``, then ``-r2``... (execution
    names are unique for 90 days, so each resume needs a name of its own)."""
    found = _RESUMED.match(batch_id)
    if found is None:
        return f"{batch_id}-r1"
    return f"{found['root']}-r{int(found['n']) + 1}"


def unfinished_items(s3: S3Client, table: Table, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of an ended batch that did not succeed, as its items file has them (index,
    input, merged params, URL). Read from the job records, which say SUCCEEDED only for an item
    whose job (every pipeline step) succeeded; that holds for a stopped batch too, which has no
    results manifest."""
    batch_id = str(batch["batch_id"])
    bucket = config.env(config.OUTPUT_BUCKET)
    items = json.loads(s3.get_object(Bucket=bucket, Key=items_key(batch_id))["Body"].read())
    records = {str(r["job_id"]): r for r in item_records(table, batch_id, index=PROGRESS_INDEX)}
    if batch.get("pipeline"):
        records = group_pipeline(list(records.values()))
    done = JobStatus.SUCCEEDED.value
    return [i for i in items if (records.get(f"{batch_id}-{i['i']}") or {}).get("status") != done]


def start_batch(
    svc: Services, batch_id: str, items: list[dict[str, Any]], request: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Write the batch's items file and start its execution (POST /batches and a resume alike).

    Returns the execution's input, or None when an execution of that name exists already (two
    requests raced: the other one started it).
    """
    svc.s3.put_object(
        Bucket=config.env(config.OUTPUT_BUCKET),
        Key=items_key(batch_id),
        Body=json.dumps(items, separators=(",", ":")).encode(),
        ContentType="application/json",
    )
    started = {
        **request,
        # Every item's job carries it (batch.asl.json passes it on): a batch's jobs are its tenant's.
        "tenant": request.get("tenant") or DEFAULT_TENANT,
        "batch_id": batch_id,
        "items_key": items_key(batch_id),
        "total": len(items),
        # The map runs a Fetch step per item only in a batch that has URL items.
        "has_urls": any("url" in item for item in items),
        "created_at": now_iso(),
    }
    try:
        svc.sfn.start_execution(
            stateMachineArn=config.env(config.BATCH_STATE_MACHINE_ARN),
            name=batch_id,
            input=json.dumps(started),
        )
    except svc.sfn.exceptions.ExecutionAlreadyExists:
        return None
    return started
