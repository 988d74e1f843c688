"""Human renderings of the API's answers (``--json`` prints the answers themselves)."""

from __future__ import annotations

from typing import TextIO

from picflow_cli.client import CancelResult, JobList, JobView

__all__ = ["print_cancel", "print_job", "print_jobs"]


def print_jobs(page: JobList, out: TextIO) -> None:
    jobs = page["jobs"]
    if not jobs:
        print("no jobs", file=out)
    else:
        width = max(len(j["job_id"]) for j in jobs)
        print(f"{'JOB':<{width}}  {'STATUS':<9}  {'OPERATION':<20}  {'CREATED':<24}  COMPLETED", file=out)
        for j in jobs:
            print(
                f"{j['job_id']:<{width}}  {j['status']:<9}  {j['operation']:<20}  "
                f"{j.get('created_at') or '-':<24}  {j.get('completed_at') or '-'}",
                file=out,
            )
    if page.get("cursor"):
        print(f"more: --cursor {page['cursor']}", file=out)


def print_job(job: JobView, out: TextIO) -> None:
    rows: list[tuple[str, object]] = [
        ("job", job["job_id"]),
        ("status", job["status"]),
        ("operation", job["operation"]),
        ("source", job.get("source")),
        ("provider", " / ".join(str(v) for v in (job.get("provider"), job.get("style")) if v)),
        ("params", ", ".join(f"{k}={v!r}" for k, v in job["params"].items())),
        ("progress", f"{job['progress']}%" if job.get("progress") is not None else None),
        ("polls", job["polls"]),
    ]
    timings = job["timings"]
    rows += [(name, timings.get(name)) for name in ("created_at", "submitted_at", "completed_at")]
    if timings.get("duration_seconds") is not None:
        rows.append(("duration", f"{timings['duration_seconds']} s"))
    cost = job["cost"]
    if cost.get("units") is not None:
        rows.append(("cost", f"{cost['units']} {cost.get('unit') or 'units'}"))
    error = job.get("error")
    if error:
        rows.append(("error", f"{error.get('type', 'Error')}: {error.get('message', '')}"))
    for name, text in job["texts"].items():
        rows.append((name, text))
    for label, value in rows:
        if value not in (None, ""):
            print(f"{label:<13}{value}", file=out)
    for r in job["results"]:
        size = f"{r.get('width')}x{r.get('height')}, " if r.get("width") else ""
        print(f"{'result':<13}{r['kind']} #{r['index']}: {r['key']} ({size}{r['size']} bytes)", file=out)


def print_cancel(result: CancelResult, out: TextIO) -> None:
    print(
        f"{result['job_id']}: {result['status']} (execution stopped: {_yes(result['execution_stopped'])}, "
        f"provider slot released: {_yes(result['slot_released'])})",
        file=out,
    )
    print(f"note: {result['note']}", file=out)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
