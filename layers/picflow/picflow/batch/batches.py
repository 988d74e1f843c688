"""Batches: one operation (or the pipeline) over a whole prefix or manifest of images, run as one
Distributed Map.

    POST /batches ─ plan: list the prefix / read the manifest, merge and validate each item's
                    params, write ``batches/<id>/items.json`` (output bucket), start the batch
    statemachine/batch.asl.json ─ Map (DISTRIBUTED) reads items.json from S3 (never through
                    state) and runs one job per item as a child execution named
                    ``<batch id>-<index>`` (a re-run under the same batch id starts nothing twice)
                  ─ Report: joins items.json with the items' job records (the jobs table's
                    ``by_batch`` index) into ``batches/<id>/results.jsonl``, settling first
                    the items not final whose child execution has ended (:func:`settle_ended`)

The batch's record is its execution (name = batch id; input = the request); its per-item truth
is the job records, which carry ``batch_id``. Counts, progress, reuse and cost are read from
them, so ``GET /batches/{id}`` is live while the map runs; once the batch has ended it reads the
Report's summary (the execution's output, or the results manifest's metadata when the batch
failed), in which an item whose execution ended outside its jobs (a pipeline failing, timing out
or stopped between steps) is FAILED or CANCELLED, not RUNNING. The items file is a snapshot: a
prefix batch is exactly the objects listed when it was created, and item indices never move.

Manifests: CSV with a header row (``key`` or ``url``, and optionally ``params``, a JSON
object), or JSON Lines (``{"key": ..., "params": {...}}`` or ``{"url": ...}``), one item per row;
per-item params override the batch's. Keys name objects in the input bucket. A URL item goes
through the same checks as a job's ``input.url``: refused at ``POST /batches`` (naming its line)
unless it is a public http(s) URL (:func:`picflow.net.urls.check_public_url`), then copied by the
map's Fetch step (:func:`fetch_item`, :func:`picflow.net.urls.fetch_into_s3`) to
``uploads/<batch id>-<index>/source`` in the input bucket just before its job starts. A URL that
then fails (not 200, too big, unreachable) fails its item with a job record saying why.

Pipeline batches (``operation: "pipeline"``, params ``prompt`` and ``upscale``): each item runs
statemachine/pipeline.asl.json as the child execution ``<batch id>-<index>``, whose three jobs
are ``<batch id>-<index>-cutout|background|upscale`` (:data:`PIPELINE_STEPS`). The plan checks
the params each step will get with the catalogue before anything starts; progress and the report
group an item's three job records into one (:func:`group_pipeline`). A URL item is fetched as for
an operation (its size limit the first step's), and a URL that fails records the item's first job
(``<batch id>-<index>-cutout``) as FAILED, so its line says why.

Pause and resume (``POST /batches/{id}/pause|resume``): a pause is a drain. It writes one flag
item, ``batch-pause#<batch id>``, into the coordination table (:func:`pause`); the job workflow's
Validate reads it (:func:`paused_at`, one GetItem) for a job carrying ``batch_id`` before the
result cache, the claim and the slot, so an item not yet started ends CANCELLED with a
``BatchPaused`` error without paying, its execution SUCCEEDED (a paused item spends none of the
map's tolerated failures). Items past Validate finish normally; a pipeline's later steps never
check (an item that started finishes). Once the batch has ended, a resume starts
``<batch id>-r<n>`` over the items that did not succeed (:func:`unfinished_items`), keeping their
indices, params and URLs; the result cache answers whatever was already paid for.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import FINAL, JobStatus, from_dynamo
from picflow.core import config
from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from picflow.core.catalogue import Operation

__all__ = [
    "BATCH_PREFIX",
    "IMAGE_CONTENT_TYPES",
    "IMAGE_SUFFIXES",
    "MAX_ITEMS",
    "PAUSED_ERROR",
    "PIPELINE",
    "PIPELINE_STEPS",
    "PROGRESS_INDEX",
    "REPORT_INDEX",
    "SUMMARY_METADATA",
    "batch_id_for",
    "describe_pipeline",
    "fetch_item",
    "fetched_key",
    "finished_summary",
    "group_pipeline",
    "item_records",
    "items_key",
    "list_prefix",
    "pause",
    "paused_at",
    "pipeline_step_params",
    "plan_items",
    "read_manifest",
    "report",
    "results_key",
    "resumed_id",
    "settle_ended",
    "summarise",
    "unfinished_items",
]

BATCH_PREFIX = "batches/"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# A fetched image keeps its declared type only when it is one of these (a label: Validate sniffs).
IMAGE_CONTENT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff")
# A Lambda reads and writes the items file in one go: ~100 bytes an item.
MAX_ITEMS = 100_000

# The name a batch gives instead of an operation to run statemachine/pipeline.asl.json per item.
PIPELINE = "pipeline"
# The pipeline's steps in order, as its ASL runs them: job name suffix and operation.
PIPELINE_STEPS = (("cutout", "segmentation"), ("background", "background"), ("upscale", "redraw"))
_PIPELINE_PARAMS = ("prompt", "upscale")


def batch_id_for(idempotency_key: str | None) -> str:
    from picflow.aws.starter import job_id_for

    return f"batch-{uuid.uuid4().hex}" if idempotency_key is None else job_id_for("batch", idempotency_key)


def items_key(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}/items.json"


def results_key(batch_id: str) -> str:
    return f"{BATCH_PREFIX}{batch_id}/results.jsonl"


def _too_many(where: str) -> ParamValidationError:
    return ParamValidationError(
        f"{where} holds more than {MAX_ITEMS} images", field=where, rule=f"≤ {MAX_ITEMS}"
    )


def list_prefix(s3: S3Client, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """The images under ``prefix``, in key order (the order S3 lists them)."""
    rows: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].lower().endswith(IMAGE_SUFFIXES):
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
                    out["params"] = json.loads(out["params"])
                except ValueError:
                    out["params"] = None
            yield line, out
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            loaded = json.loads(raw)
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ParamValidationError(
                f"manifest line {line} is not a JSON object", field="manifest", rule="JSON Lines"
            )
        yield line, loaded


def read_manifest(s3: S3Client, bucket: str, key: str) -> list[dict[str, Any]]:
    """Rows ``{"key", "params"?, "line"}`` of a CSV or JSON Lines manifest."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8-sig")
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


def fetched_key(batch_id: str, index: int) -> str:
    """Where a URL item's image is copied: the key a job's ``input.url`` would get, by job id."""
    from picflow.entry.s3events import UPLOADS_PREFIX

    return f"{UPLOADS_PREFIX}{batch_id}-{index}/source"


def pipeline_step_params(params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What each pipeline step's job gets (statemachine/pipeline.asl.json's fixed params plus the
    batch's ``prompt`` and ``upscale``), as (operation, params) in step order."""
    unknown = sorted(set(params) - set(_PIPELINE_PARAMS))
    if unknown:
        raise ParamValidationError(
            f"{PIPELINE}: {unknown[0]} is not a parameter of the pipeline (it takes prompt, upscale)",
            field=unknown[0],
            rule="one of prompt, upscale",
        )
    picked = {k: params[k] for k in _PIPELINE_PARAMS if k in params}
    return [
        ("segmentation", {"format": "png"}),
        ("background", {"batch_size": 1} | ({"prompt": picked["prompt"]} if "prompt" in picked else {})),
        ("redraw", {"upscale": picked["upscale"]} if "upscale" in picked else {}),
    ]


def describe_pipeline() -> dict[str, Any]:
    """The pipeline as ``GET /operations`` lists it beside the operations: its steps with the
    params each is given, and the batch params it takes, each described by the step that uses
    it (so the rules are the catalogue's, not a copy)."""
    from picflow.core.catalogue import describe_operation, get_operation

    bare = pipeline_step_params({})
    steps = [
        {"step": step, "operation": op, "params": fixed}
        for (step, _), (op, fixed) in zip(PIPELINE_STEPS, bare, strict=True)
    ]
    params = []
    for name in _PIPELINE_PARAMS:
        given = pipeline_step_params({name: "x"})
        # The step that takes ``name`` is the one whose params change when it is given.
        op = next(o for (o, with_it), (_, without) in zip(given, bare, strict=True) if with_it != without)
        described = next(p for p in describe_operation(get_operation(op))["params"] if p["name"] == name)
        params.append({**described, "operation": op})
    return {
        "pipeline": PIPELINE,
        "summary": "cutout, then a new background, then upscale/redraw, per item",
        "steps": steps,
        "params": params,
        "runs_in": 'POST /batches with "operation": "pipeline"',
    }


def _validated(op: Operation | str, merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` checked as ``op``'s params; for the pipeline, as each step's params, and
    completed with redraw's default upscale (the pipeline's ASL reads both prompt and upscale)."""
    from picflow.core.catalogue import validate_params

    if op != PIPELINE:
        validate_params(op, merged)
        return merged
    steps = [validate_params(name, step) for name, step in pipeline_step_params(merged)]
    return {"prompt": steps[1].model_dump()["prompt"], "upscale": steps[2].model_dump()["upscale"]}


def plan_items(
    op: Operation | str,
    params: Mapping[str, Any],
    rows: list[dict[str, Any]],
    bucket: str,
    batch_id: str,
) -> list[dict[str, Any]]:
    """The items file: each row's params merged over the batch's and validated, and each URL
    checked, before anything runs (:class:`~picflow.net.urls.UnsafeUrlError` names the line).
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
        if "url" not in row:
            items.append({"i": index, "bucket": bucket, "key": row["key"], "params": merged})
            continue
        try:
            check_public_url(row["url"], checked=public_hosts)
        except UnsafeUrlError as exc:
            raise UnsafeUrlError(f"{where}: {exc.message}", rule=exc.rule) from None
        # bucket/key are where Fetch puts the image: the job reads it like any other item.
        item = {"i": index, "url": row["url"], "bucket": bucket, "key": fetched_key(batch_id, index)}
        items.append({**item, "params": merged})
    return items


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


# --- pause and resume ---------------------------------------------------------------------

# The error type of an item a pause ended before it started (its job record is CANCELLED).
PAUSED_ERROR = "BatchPaused"
_RESUMED = re.compile(r"^(?P<root>.+)-r(?P<n>[0-9]+)$")


def _pause_name(batch_id: str) -> str:
    return f"batch-pause#{batch_id}"


def paused_at(table: Table, batch_id: str) -> str | None:
    """When the batch was paused, or None. Strongly consistent: an item that starts after the
    pause was acknowledged must see it."""
    item = table.get_item(Key={"name": _pause_name(batch_id)}, ConsistentRead=True).get("Item")
    return None if item is None else str(item["paused_at"])


def pause(table: Table, batch_id: str, now: str) -> tuple[str, bool]:
    """Write the batch's pause flag once: (when it was paused, whether this call paused it)."""
    from botocore.exceptions import ClientError

    try:
        table.put_item(
            Item={"name": _pause_name(batch_id), "batch_id": batch_id, "paused_at": now},
            ConditionExpression="attribute_not_exists(#n)",
            ExpressionAttributeNames={"#n": "name"},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return str(paused_at(table, batch_id)), False
    return now, True


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


# --- progress and the results manifest ---------------------------------------------------


# Progress reads only status, reuse and cost: an index projecting just those is ~10x smaller per
# item than ``by_batch`` (which also carries each item's manifest and error for the report), so
# GET /batches/{id} on a running 50,000-item batch reads a few pages, not dozens.
PROGRESS_INDEX = "by_batch_progress"
REPORT_INDEX = "by_batch"


def item_records(table: Table, batch_id: str, *, index: str = REPORT_INDEX) -> Iterator[dict[str, Any]]:
    """The job records of a batch's items (as ``index`` projects them), in job id order."""
    from boto3.dynamodb.conditions import Key

    kwargs: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": Key("batch_id").eq(batch_id)}
    while True:
        page = table.query(**kwargs)
        yield from (from_dynamo(i) for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _paid(record: Mapping[str, Any]) -> bool:
    # The provider took the task (a job that failed in Validate paid nothing; a reused one neither).
    return bool(record.get("submitted_at")) and not record.get("reused")


def group_pipeline(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A pipeline batch's job records as one record per item, keyed ``<batch id>-<index>``: the
    first failed (or cancelled) step's status and error, else the last step's status (RUNNING
    while a later step has yet to start); reused when every step was; the paid steps' cost summed;
    the last step's manifest; ``steps``: the item's job ids in step order."""
    suffixes = [suffix for suffix, _ in PIPELINE_STEPS]
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records:
        item, _, suffix = str(record["job_id"]).rpartition("-")
        if suffix in suffixes:
            by_item.setdefault(item, {})[suffix] = record
    grouped = {}
    for item, steps in by_item.items():
        ran = [steps[s] for s in suffixes if s in steps]
        failed = next((r for r in ran if r.get("status") in (JobStatus.FAILED, JobStatus.CANCELLED)), None)
        last = failed or ran[-1]
        status = str(last.get("status", JobStatus.QUEUED.value))
        if failed is None and len(ran) < len(suffixes):
            status = JobStatus.RUNNING.value  # between steps: the next job is about to start
        paid = [r for r in ran if _paid(r)]
        units = sorted({str(r["cost_unit"]) for r in paid if r.get("cost_unit")})
        grouped[item] = {
            "job_id": last.get("job_id"),
            "steps": [r.get("job_id") for r in ran],
            "status": status,
            "reused": len(ran) == len(suffixes) and all(r.get("reused") for r in ran),
            "submitted_at": paid[0].get("submitted_at") if paid else None,
            "cost_units": sum(int(r.get("cost_units") or 0) for r in paid),
            # One sum over different providers' units: name them all (taskpic.call+hdredraw.call).
            "cost_unit": "+".join(units) or None,
            "manifest": last.get("manifest") if failed is None else None,
            "error": None if failed is None else failed.get("error"),
        }
    return grouped


def summarise(records: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Counts by status (items without a job yet are NOT_STARTED), reuse and what was paid.
    A pipeline batch's records are grouped per item first (:func:`group_pipeline`)."""
    counts = {s.value: 0 for s in JobStatus}
    reused = 0
    units = 0
    unit: str | None = None
    for record in records:
        counts[str(record.get("status", JobStatus.QUEUED.value))] += 1
        reused += bool(record.get("reused"))
        if _paid(record):
            units += int(record.get("cost_units") or 0)
            unit = unit or record.get("cost_unit")
    counts["NOT_STARTED"] = max(0, total - len(records))
    done = sum(counts[s.value] for s in FINAL)
    return {
        "total": total,
        "counts": counts,
        "done": done,
        "progress": round(done / total, 4) if total else 1.0,
        "reused": reused,
        "cost": {"units": units, "unit": unit},
    }


_SUMMARY_KEYS = ("total", "counts", "done", "progress", "reused", "cost")
# The results manifest's user metadata carries the Report's summary (~200 ASCII bytes of the 2 KB
# S3 allows): a batch that failed has no output to read it from.
SUMMARY_METADATA = "summary"


def finished_summary(
    execution: Mapping[str, Any], results_metadata: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """An ended batch's summary as its Report wrote it: a succeeded batch's execution output, else
    the results manifest's metadata (``results_metadata``, from a HEAD of it). Read once the map
    has ended, when the Report has settled every item, so nothing needs reading again."""
    status = execution.get("status")
    try:
        if status == "SUCCEEDED":
            report = json.loads(execution.get("output") or "{}").get("report") or {}
        elif status != "RUNNING" and results_metadata and SUMMARY_METADATA in results_metadata:
            report = json.loads(results_metadata[SUMMARY_METADATA])
        else:
            return None
    except ValueError:
        return None
    if not isinstance(report, dict) or not all(k in report for k in _SUMMARY_KEYS):
        return None
    return {k: report[k] for k in _SUMMARY_KEYS}


def _result_line(item: Mapping[str, Any], record: Mapping[str, Any] | None) -> dict[str, Any]:
    manifest = (record or {}).get("manifest") or {}
    return {
        "index": item["i"],
        "input": {"bucket": item["bucket"], "key": item["key"]}
        | ({"url": item["url"]} if "url" in item else {}),
        "params": item["params"],
        "job_id": None if record is None else record.get("job_id"),
        **({"steps": record["steps"]} if record is not None and "steps" in record else {}),
        "status": "NOT_STARTED" if record is None else record.get("status"),
        "reused": bool((record or {}).get("reused")),
        "outputs": [
            {k: o.get(k) for k in ("kind", "key", "content_type", "size", "sha256")}
            for o in manifest.get("outputs") or []
        ],
        "texts": manifest.get("texts") or {},
        "manifest_key": manifest.get("key"),
        "error": (record or {}).get("error"),
    }


# An item's child execution ended this way with its records not final: the status it gets.
_ENDED = {"FAILED": JobStatus.FAILED, "TIMED_OUT": JobStatus.FAILED, "ABORTED": JobStatus.CANCELLED}


def settle_ended(
    records: dict[str, dict[str, Any]], *, sfn: SFNClient, state_machine_arn: str, what: str
) -> int:
    """Once the map has ended, an item whose record is not final (a pipeline between steps, a job
    whose execution was stopped or timed out outside its states) is asked about: when its child
    execution (``state_machine_arn``'s, named like the item) has ended, the item gets FAILED
    (CANCELLED when aborted) with an error saying so. One DescribeExecution per such item only;
    an item still running stays as it is. Returns how many were settled."""
    settled = 0
    executions = state_machine_arn.replace(":stateMachine:", ":execution:")
    for item, record in records.items():
        if JobStatus(str(record.get("status", JobStatus.QUEUED.value))) in FINAL:
            continue
        try:
            execution = sfn.describe_execution(executionArn=f"{executions}:{item}")
        except sfn.exceptions.ExecutionDoesNotExist:
            continue
        ended = _ENDED.get(execution["status"])
        if ended is None:
            continue
        reason = ": ".join(str(v)[:200] for v in (execution.get("error"), execution.get("cause")) if v)
        record.update(
            status=ended.value,
            manifest=None,
            error={
                "type": "ExecutionEnded",
                "message": f"the {what} execution {item} ended {execution['status']}"
                + (f" ({reason})" if reason else "")
                + (" without finishing its jobs" if what == PIPELINE else " without finishing its job"),
            },
        )
        settled += 1
    return settled


def report(
    batch: Mapping[str, Any],
    *,
    s3: S3Client,
    table: Table,
    sfn: SFNClient | None = None,
    state_machines: Mapping[str, str] | None = None,
    coordination: Table | None = None,
) -> dict[str, Any]:
    """Write ``results.jsonl`` (one line per item, in item order, the summary in its metadata)
    and return the summary. With ``sfn`` and ``state_machines`` (``{"job": arn, "pipeline":
    arn}``), items not final are settled first (:func:`settle_ended`). With ``coordination``
    (the table holding pause flags), the summary says whether the batch was paused and how many
    items the pause ended (CANCELLED, error ``BatchPaused``)."""
    batch_id = str(batch["batch_id"])
    bucket = config.env(config.OUTPUT_BUCKET)
    items = json.loads(s3.get_object(Bucket=bucket, Key=items_key(batch_id))["Body"].read())
    records = {str(r["job_id"]): r for r in item_records(table, batch_id)}
    what = PIPELINE if batch.get("pipeline") else "job"
    if what == PIPELINE:
        records = group_pipeline(list(records.values()))
    if sfn is not None and state_machines is not None:
        settle_ended(records, sfn=sfn, state_machine_arn=state_machines[what], what=what)
    lines = (json.dumps(_result_line(i, records.get(f"{batch_id}-{i['i']}")), default=str) for i in items)
    summary = summarise(list(records.values()), len(items))
    key = results_key(batch_id)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=("\n".join(lines) + "\n").encode(),
        ContentType="application/x-ndjson",
        Metadata={SUMMARY_METADATA: json.dumps(summary, separators=(",", ":"))},
    )
    out = {"batch_id": batch_id, "results_key": key, "output_bucket": bucket, **summary}
    if coordination is not None:
        when = paused_at(coordination, batch_id)
        paused = sum(1 for r in records.values() if (r.get("error") or {}).get("type") == PAUSED_ERROR)
        out |= {"paused": when is not None, "paused_at": when, "paused_items": paused}
    return out
