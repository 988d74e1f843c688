"""A batch's progress and its results manifest, read from its items' job records.

The batch's record is its execution (name = batch id; input = the request); its per-item truth
is the job records, which carry ``batch_id``. Counts, progress, reuse and cost are read from
them, so ``GET /batches/{id}`` is live while the map runs; once the batch has ended it reads the
Report's summary (the execution's output, or the results manifest's metadata when the batch
failed), in which an item whose execution ended outside its jobs (a pipeline failing, timing out
or stopped between steps) is FAILED or CANCELLED, not RUNNING (:func:`settle_ended`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import FINAL, JobStatus, from_dynamo
from picflow.aws.pause import PAUSED_ERROR, paused_at
from picflow.batch.pipeline import PIPELINE, PIPELINE_STEPS
from picflow.core import config
from picflow.core.names import items_key, results_key

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

__all__ = [
    "PROGRESS_INDEX",
    "REPORT_INDEX",
    "SUMMARY_METADATA",
    "finished_summary",
    "group_pipeline",
    "item_records",
    "report",
    "settle_ended",
    "summarise",
]


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
