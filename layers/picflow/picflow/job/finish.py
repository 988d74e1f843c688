"""RecordFailure and Notify (statemachine/job.asl.json): how a job ends, and who is told.

Notify's output (:func:`job_output`) is the last state of a successful execution, so it is what a
parent execution (``startExecution.sync:2``, statemachine/pipeline.asl.json) receives.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import JobStatus, now_iso
from picflow.aws.services import Services, services
from picflow.core import config, errors
from picflow.core.errors import InternalError
from picflow.job.collect import job_result

if TYPE_CHECKING:
    from picflow.core.results import Notice

__all__ = ["job_output", "notice", "notify", "record_failure"]


def record_failure(
    state: Mapping[str, Any], execution_name: str | None = None, svc: Services | None = None
) -> dict[str, Any]:
    """Mark the job FAILED with the most specific error known (the step's own record first)."""
    svc = svc or services()
    job_id = str(state.get("job_id") or execution_name)
    # A job that failed before Validate could record it still gets its FAILED record.
    svc.store.create({"job_id": job_id, "operation": str(state.get("operation", "")), "input": {}})
    record = svc.store.get(job_id) or {}
    caught = state.get("error") or {}
    error: dict[str, Any] = dict(record.get("last_error") or {})
    if not error or (caught.get("Error") and caught.get("Error") != error.get("type")):
        message = str(caught.get("Cause", ""))
        with contextlib.suppress(ValueError, AttributeError):
            message = str(json.loads(message).get("errorMessage", message))
        error = {"type": caught.get("Error", "Unknown"), "message": message[:2000]}
        if not _typed(str(error["type"])):
            # A step without records_errors (Slot, Finalize) raised something untyped: the record
            # names the error tree's InternalError, the original class as its code.
            error = {"type": InternalError.__name__, "code": error["type"], "message": message[:2000]}
    svc.store.update(
        job_id, {"status": JobStatus.FAILED.value, "error": error, "completed_at": now_iso(svc.clock())}
    )
    key = (state.get("job") or {}).get("cache_key")
    if key:
        # An identical job may be waiting on this one's results: let it go on (and pay).
        svc.cache.release(str(key), job_id)
    removed = _remove_partial_outputs(svc, job_id, state.get("out_prefix"))
    return {"error": error, **({"removed": removed} if removed else {})}


def _remove_partial_outputs(svc: Services, job_id: str, prefix: Any) -> int:
    """A FAILED job leaves no objects: whatever it stored under its own prefix is deleted (a
    result cut short, results without their manifest). Only a prefix that is the job's own (ends
    in its id) is touched; a failure to delete is kept on the record, never raised."""
    from botocore.exceptions import ClientError

    if not isinstance(prefix, str) or not prefix.endswith(f"/{job_id}/"):
        return 0
    bucket = config.env(config.OUTPUT_BUCKET)
    removed = 0
    try:
        for page in svc.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys: Any = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                svc.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                removed += len(keys)
    except ClientError as exc:
        svc.store.update(job_id, {"cleanup_error": exc.response.get("Error", {}).get("Code", "ClientError")})
    return removed


# Errors Step Functions and Lambda name themselves (a timeout, a crashed runtime): kept as named.
_SERVICE_ERRORS = ("States.", "Lambda.", "Sandbox.", "Runtime.")


def _typed(name: str) -> bool:
    return name in errors.__all__ or name.startswith(_SERVICE_ERRORS)


def notify(
    state: Mapping[str, Any], execution_name: str | None = None, svc: Services | None = None
) -> dict[str, Any]:
    """Tell the world the job ended: an EventBridge event, and a signed POST to notify_url.

    Returns the job's outcome from its record (``job_output``): the last state of a successful
    execution, so this is what a parent execution (startExecution.sync:2) receives.
    """
    svc = svc or services()
    job_id = str(state.get("job_id") or execution_name)
    job = svc.store.get(job_id) or {"job_id": job_id, "status": "UNKNOWN"}
    try:
        notified = _publish(svc, job)
    except Exception as exc:
        notified = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return {**job_output(job), "notified": notified}


def job_output(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a finished job hands on: where its outputs are, and the primary image to chain from."""
    manifest = job.get("manifest") or {}
    return {
        "job_id": job.get("job_id"),
        "operation": job.get("operation"),
        "status": job.get("status"),
        "output_bucket": manifest.get("bucket") or config.optional(config.OUTPUT_BUCKET),
        # A pipeline reads it to end an item a batch pause stopped (statemachine/pipeline.asl.json).
        "paused": False,
        **job_result(
            manifest.get("key"), list(manifest.get("outputs") or []), reused=bool(job.get("reused"))
        ),
    }


def notice(job: Mapping[str, Any], svc: Services) -> Notice:
    """The notice body (:class:`~picflow.core.results.Notice`, the OpenAPI document's
    ``callbacks``): the job's outcome with presigned result URLs, nothing of the operator's."""
    from picflow.core.results import result_view

    ttl = config.env_int(config.RESULT_URL_TTL, config.RESULT_URL_TTL_DEFAULT)
    manifest = job.get("manifest") or {}
    bucket = str(manifest.get("bucket") or config.optional(config.OUTPUT_BUCKET))
    results = [
        result_view(
            o,
            url=svc.presigner.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": str(o["key"])}, ExpiresIn=ttl
            ),
            expires_in=ttl,
        )
        for o in manifest.get("outputs") or []
    ]
    error = job.get("error")
    units = job.get("cost_units")
    return {
        "job_id": str(job["job_id"]),
        "status": str(job.get("status", "")),
        "operation": str(job.get("operation", "")),
        "results": results,
        "texts": {str(k): str(v) for k, v in (manifest.get("texts") or {}).items()},
        "error": dict(error) if isinstance(error, Mapping) else None,
        "cost": {
            "units": None if units is None else int(units),
            "unit": None if job.get("cost_unit") is None else str(job["cost_unit"]),
        },
        "completed_at": None if job.get("completed_at") is None else str(job["completed_at"]),
    }


def _publish(svc: Services, job: Mapping[str, Any]) -> dict[str, Any]:
    from picflow.net.webhooks import job_event, post_notice

    out: dict[str, Any] = {"event": False, "posted": None}
    bus = config.optional(config.EVENT_BUS_NAME)
    if bus:
        svc.events.put_events(
            Entries=[
                {
                    "Source": "picflow",
                    "DetailType": f"Job {job.get('status')}",
                    "Detail": json.dumps(job_event(job), default=str),
                    "EventBusName": bus,
                }
            ]
        )
        out["event"] = True
    url = job.get("notify_url")
    if url:
        from picflow.providers.registry import load_credentials

        key = load_credentials().notify_signing_key
        if key is None:
            out["posted"] = "no signing key configured"
        else:
            from picflow.net.urls import safe_client

            # A user-given URL: connect-time address checks, no redirects (no SSRF, no rebinding).
            with safe_client() as http:
                body = notice(job, svc)
                out["posted"] = post_notice(http, str(url), key.reveal().encode(), body)
    return out
