"""``picflow batch run|status|stop|pause|resume``: a whole prefix or manifest through one operation
(``/batches``).

Items come from ``--prefix s3://<input bucket>/<prefix>`` (every image under it) or ``--manifest``:
a local CSV (header ``key`` or ``url``, optional ``params``) or JSON Lines file, uploaded first
through ``POST /uploads`` (so it lands under the caller's own root, where its batch may read it),
or ``s3://<input bucket>/<key>`` of one already there. A tenant's prefix, manifest and keys lie
under its root ``tenants/<tenant id>/`` (the default tenant's: anywhere else). ``run`` follows
the batch on one progress line until it ends, then prints counts, cost, reuse and where the
results manifest is. It exits 0 when the batch succeeded (items that failed within
``--tolerated-failure-percent`` are reported, not fatal), 1 when it failed, was stopped or is
still running at ``--timeout``. ``pause`` drains a batch (items not started end unpaid, started ones
finish); ``resume`` starts, once it has ended, a batch of the items that did not succeed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from picflow_cli.client import BatchCreated, BatchList, BatchPaused, BatchStopped, BatchView, PicflowClient
from picflow_cli.errors import JobsFailedError, UsageError
from picflow_cli.waiting import Patience, WaitTimeoutError

__all__ = [
    "MANIFEST_TYPES",
    "BatchSource",
    "batch_line",
    "parse_source",
    "print_batch",
    "print_batch_paused",
    "print_batch_resumed",
    "print_batch_stopped",
    "print_batches",
    "run_batch",
]

# What the API reads by the key's suffix: ``.csv`` as CSV, anything else as JSON Lines.
# `picflow batch run` gives up when the batch showed no change for this long (its items' jobs
# may each wait a callback window of 600 s without a visible change).
STALL = 900.0
MANIFEST_TYPES = {".csv": "text/csv", ".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson"}
RUNNING = "RUNNING"
# Shown in this order; statuses the API adds later still show, after these.
_COUNT_ORDER = ("SUCCEEDED", "FAILED", "CANCELLED", "RUNNING", "QUEUED", "NOT_STARTED")


@dataclass(frozen=True)
class BatchSource:
    """Where the items come from, as the user named it."""

    prefix: str | None = None
    manifest_key: str | None = None
    manifest_file: Path | None = None


def _s3_key(flag: str, target: str, input_bucket: str | None) -> str:
    bucket, _, key = target[len("s3://") :].partition("/")
    # No key at all would be the whole bucket: the API wants a prefix (batches/, uploads/ and
    # every operation's folder share that bucket).
    if not bucket or not key:
        raise UsageError(f"{flag} {target}: expected s3://<input bucket>/<{flag.lstrip('-')}>")
    if input_bucket is not None and bucket != input_bucket:
        raise UsageError(f"{flag} {target}: only the stack's input bucket ({input_bucket}) can be used")
    return key


def parse_source(prefix: str | None, manifest: str | None, input_bucket: str | None = None) -> BatchSource:
    """Exactly one of ``--prefix`` (s3:// only) and ``--manifest`` (a local file or s3://)."""
    if (prefix is None) == (manifest is None):
        raise UsageError("give exactly one of --prefix s3://... and --manifest FILE|s3://...")
    if prefix is not None:
        if not prefix.startswith("s3://"):
            raise UsageError(f"--prefix {prefix}: expected s3://<input bucket>/<prefix>")
        return BatchSource(prefix=_s3_key("--prefix", prefix, input_bucket))
    assert manifest is not None
    if manifest.startswith("s3://"):
        return BatchSource(manifest_key=_s3_key("--manifest", manifest, input_bucket))
    path = Path(manifest)
    if not path.is_file():
        raise UsageError(f"--manifest {manifest}: no such file")
    if path.suffix.lower() not in MANIFEST_TYPES:
        raise UsageError(f"--manifest {manifest}: expected a {', '.join(sorted(MANIFEST_TYPES))} file")
    return BatchSource(manifest_file=path)


def _manifest_key(client: PicflowClient, source: BatchSource) -> str | None:
    if source.manifest_file is None:
        return source.manifest_key
    path = source.manifest_file
    slot = client.create_upload(path.name, MANIFEST_TYPES[path.suffix.lower()])
    client.put_upload(slot, path.read_bytes())
    return slot["key"]


def batch_line(view: BatchView, *, elapsed: float | None = None) -> str:
    """One line: status, bar, done/total, counts, reuse, cost (and the time, on a terminal)."""
    filled = max(0, min(20, int(view["progress"] * 20)))
    counts = view["counts"]
    order = [*_COUNT_ORDER, *sorted(set(counts) - set(_COUNT_ORDER))]
    shown = ", ".join(f"{s.lower().replace('_', ' ')} {counts[s]}" for s in order if counts.get(s))
    parts = [
        view["batch_id"],
        f"{view['status']:<9}",
        f"[{'#' * filled}{'.' * (20 - filled)}] {view['progress'] * 100:5.1f}%",
        f"{view['done']}/{view['total']}",
        shown,
        f"reused {view['reused']}",
        _cost(view),
    ]
    if elapsed is not None:
        parts.append(f"{elapsed:6.1f}s")
    return "  ".join(p for p in parts if p)


def _cost(view: BatchView) -> str:
    cost = view["cost"]
    return f"cost {cost.get('units') or 0} {cost.get('unit') or 'units'}"


def _results_where(view: BatchView) -> str | None:
    key = view.get("results_key")
    if not key:
        return None
    bucket = view.get("results_bucket")
    return f"s3://{bucket}/{key}" if bucket else key


def print_batch(view: BatchView, out: TextIO) -> None:
    source = ", ".join(f"{k} {v}" for k, v in view["source"].items())
    rows: list[tuple[str, object]] = [
        ("batch", view["batch_id"]),
        ("status", view["status"]),
        ("operation", view["operation"]),
        ("params", ", ".join(f"{k}={v!r}" for k, v in view["params"].items())),
        ("source", source),
        ("progress", f"{view['done']}/{view['total']} done ({view['progress'] * 100:.1f}%)"),
        ("counts", ", ".join(f"{s.lower()} {n}" for s, n in view["counts"].items() if n)),
        ("reused", f"{view['reused']} (answered from earlier results, nothing paid)"),
        ("cost", _cost(view).removeprefix("cost ")),
        ("concurrency", view["max_concurrency"]),
        ("tolerated", f"{view['tolerated_failure_percentage']:g}% failed items"),
        ("results", _results_where(view)),
        (
            "paused",
            f"at {view.get('paused_at')} (items not started end CANCELLED, BatchPaused)"
            if view.get("paused")
            else None,
        ),
        ("resumes", view.get("resumed_from")),
    ]
    error = view.get("error")
    if error:
        rows.append(("error", f"{error.get('type') or 'Error'}: {error.get('message') or ''}"))
    for label, value in rows:
        if value not in (None, ""):
            print(f"{label:<13}{value}", file=out)


def print_batches(page: BatchList, out: TextIO) -> None:
    """The caller's batches (GET /batches), one line each, newest first."""
    batches = page["batches"]
    if not batches:
        print("no batches", file=out)
    else:
        width = max(len(b["batch_id"]) for b in batches)
        print(f"{'BATCH':<{width}}  {'STATUS':<9}  {'OPERATION':<20}  {'ITEMS':>6}  CREATED", file=out)
        for b in batches:
            print(
                f"{b['batch_id']:<{width}}  {b['status']:<9}  {b['operation']:<20}  {b['total']:>6}  "
                f"{b.get('created_at') or '-'}",
                file=out,
            )
    if page.get("cursor"):
        print(f"more: --cursor {page['cursor']}", file=out)


def print_batch_paused(result: BatchPaused, out: TextIO) -> None:
    print(f"{result['batch_id']}: paused at {result['paused_at']} (batch {result['status']})", file=out)
    print(f"note: {result['note']}", file=out)
    if result["status"] == RUNNING:
        print(f"once it has ended: `picflow batch resume {result['batch_id']}`", file=out)


def print_batch_resumed(result: BatchCreated, out: TextIO) -> None:
    what = "started" if result["created"] else "was already resumed as"
    print(
        f"{result.get('resumed_from')}: {what} {result['batch_id']} ({result['total']} item(s) "
        f"that did not succeed)",
        file=out,
    )
    print(f"follow with `picflow batch status {result['batch_id']}`", file=out)


def print_batch_stopped(result: BatchStopped, out: TextIO) -> None:
    print(
        f"{result['batch_id']}: {result['status']} (execution stopped: "
        f"{'yes' if result['execution_stopped'] else 'no'}, unfinished jobs cancelled: "
        f"{result['jobs_cancelled']})",
        file=out,
    )
    print(f"note: {result['note']}", file=out)


class _Line:
    """The batch's one progress line: redrawn in place on a terminal, printed when it changes
    otherwise (so a log gets one line per change, not one per poll)."""

    def __init__(self, stream: TextIO, tty: bool | None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._last: str | None = None

    def show(self, view: BatchView) -> None:
        if self.tty:
            line = batch_line(view, elapsed=time.monotonic() - self.started)
            self.stream.write("\r\x1b[2K" + line)
        else:
            line = batch_line(view)
            if line == self._last:
                return
            self._last = line
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def run_batch(
    client: PicflowClient,
    operation: str,
    source: BatchSource,
    *,
    params: dict[str, Any],
    tolerated_failure_percent: float | None = None,
    max_concurrency: int | None = None,
    reuse: bool = True,
    idempotency_key: str | None = None,
    wait: bool = True,
    as_json: bool = False,
    interval: float = 2.0,
    timeout: float = 86400.0,
    stall: float = STALL,
    stdout: TextIO | None = None,
    tty: bool | None = None,
) -> int:
    out = stdout or sys.stdout
    body: dict[str, Any] = {"operation": operation, "params": params, "reuse": reuse}
    manifest = _manifest_key(client, source)
    if manifest is not None:
        body["manifest"] = manifest
    else:
        body["prefix"] = source.prefix
    if tolerated_failure_percent is not None:
        body["tolerated_failure_percentage"] = tolerated_failure_percent
    if max_concurrency is not None:
        body["max_concurrency"] = max_concurrency
    created = client.create_batch(body, idempotency_key=idempotency_key)
    batch_id = created["batch_id"]
    if not wait:
        if as_json:
            print(json.dumps(created, ensure_ascii=False, indent=2), file=out)
        else:
            print(f"{batch_id}  {created['status']}  {created['total']} item(s)", file=out)
            print(f"follow with `picflow batch status {batch_id}`", file=out)
        return 0

    line = None if as_json else _Line(out, tty)
    if line is not None and not created["created"]:
        print(f"{batch_id}: this Idempotency-Key already started it; following it", file=out)
    # Give up when the batch showed no change for `stall` seconds, or after `timeout` in all.
    patience = Patience(f"batch {batch_id}", stall=stall, cap=timeout)
    try:
        while True:
            view = client.get_batch(batch_id)
            if line is not None:
                line.show(view)
            if view["status"] != RUNNING:
                break
            patience.see((view["status"], view["done"], view["progress"], sorted(view["counts"].items())))
            try:
                patience.check()
            except WaitTimeoutError as exc:
                raise JobsFailedError(
                    f"batch {batch_id} still running ({view['done']}/{view['total']} done): {exc.reason};"
                    f" follow with `picflow batch status {batch_id}`"
                ) from None
            time.sleep(min(interval, max(patience.remaining(), 0.01)))
    finally:
        if line is not None:
            line.close()

    if as_json:
        print(json.dumps(view, ensure_ascii=False, indent=2), file=out)
    else:
        _summary(view, out)
    if view["status"] != "SUCCEEDED":
        error = view.get("error") or {}
        why = f": {error.get('type')}: {error.get('message')}" if error.get("type") else ""
        raise JobsFailedError(f"batch {batch_id} ended {view['status']}{why}")
    return 0


def _summary(view: BatchView, out: TextIO) -> None:
    counts = view["counts"]
    failed = counts.get("FAILED", 0) + counts.get("CANCELLED", 0)
    print(
        f"{view['batch_id']}: {view['status']}, {view['total']} item(s): "
        f"{counts.get('SUCCEEDED', 0)} succeeded, {failed} failed or cancelled; "
        f"{view['reused']} reused (not paid again); {_cost(view)}",
        file=out,
    )
    where = _results_where(view)
    print(f"results: {where}" if where else "results: no results manifest was written", file=out)
