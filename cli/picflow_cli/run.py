"""``picflow run``: inputs uploaded (or named in the input bucket), jobs started, followed, results
downloaded.

Inputs: an image file, a folder (every image directly in it), an ``s3://bucket/key`` in the
stack's input bucket, or a public ``https://`` URL the API fetches itself. ``--param k=v`` values
are JSON where they parse as JSON (``3``, ``true``, ``[1,2]``, ``"3"``), strings otherwise; the API
validates them against the catalogue.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from picflow_cli.client import JobView, PicflowClient
from picflow_cli.errors import JobsFailedError, UsageError
from picflow_cli.waiting import Patience, WaitTimeoutError

__all__ = ["IMAGE_TYPES", "ProgressBoard", "Source", "Tracked", "expand_inputs", "parse_params", "run"]

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
FINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
# `picflow run` gives up when no job changed for this long: a callback job may show no change
# for its callback window (600 s by default) plus the submit's grace.
STALL = 900.0


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r}: expected name=value")
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params


@dataclass(frozen=True)
class Source:
    """One job's input, as the user named it."""

    label: str
    path: Path | None = None
    key: str | None = None
    url: str | None = None


def _content_type(path: Path) -> str:
    try:
        return IMAGE_TYPES[path.suffix.lower()]
    except KeyError:
        raise UsageError(f"{path}: not an image this API takes ({', '.join(sorted(IMAGE_TYPES))})") from None


def expand_inputs(target: str, input_bucket: str | None = None) -> list[Source]:
    """The sources ``target`` names; ``input_bucket`` (when known) is the only bucket allowed."""
    if target.startswith("s3://"):
        bucket, _, key = target[len("s3://") :].partition("/")
        if not bucket or not key:
            raise UsageError(f"{target}: expected s3://bucket/key")
        if input_bucket is not None and bucket != input_bucket:
            raise UsageError(
                f"{target}: only objects in the stack's input bucket ({input_bucket}) can be used"
            )
        return [Source(label=key, key=key)]
    if target.startswith(("https://", "http://")):
        return [Source(label=target, url=target)]
    path = Path(target)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_TYPES)
        if not images:
            raise UsageError(f"{path}: no images in this folder ({', '.join(sorted(IMAGE_TYPES))})")
        return [Source(label=p.name, path=p) for p in images]
    if path.is_file():
        _content_type(path)
        return [Source(label=path.name, path=path)]
    raise UsageError(f"{target}: no such file or folder")


@dataclass
class Tracked:
    source: Source
    job_id: str
    status: str
    view: JobView | None = None
    started: float = field(default_factory=time.monotonic)
    files: list[Path] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def line(self, *, with_time: bool) -> str:
        view: dict[str, Any] = dict(self.view or {})
        parts = [f"{self.source.label[:28]:<28}", self.job_id, f"{self.status:<9}"]
        progress = view.get("progress")
        if isinstance(progress, int) and not self.final:
            filled = max(0, min(20, progress // 5))
            parts.append(f"[{'#' * filled}{'.' * (20 - filled)}] {progress:>3}%")
        polls = view.get("polls") or 0
        if polls:
            parts.append(f"polls {polls}")
        error = view.get("error")
        if self.status != "SUCCEEDED" and isinstance(error, dict) and self.final:
            parts.append(f"{error.get('type', 'Error')}: {error.get('message', '')}".strip())
        if with_time:
            parts.append(f"{time.monotonic() - self.started:5.1f}s")
        return "  ".join(parts).rstrip()


class ProgressBoard:
    """One line per job: redrawn in place on a terminal, printed when it changes otherwise."""

    def __init__(self, stream: TextIO, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._drawn = 0
        self._last: dict[str, str] = {}

    def render(self, jobs: Sequence[Tracked]) -> None:
        if self.tty:
            if self._drawn:
                self.stream.write(f"\x1b[{self._drawn}F")  # back to the first line of the block
            for job in jobs:
                self.stream.write("\x1b[2K" + job.line(with_time=True) + "\n")
            self._drawn = len(jobs)
        else:
            for job in jobs:
                line = job.line(with_time=False)
                if self._last.get(job.job_id) != line:
                    self._last[job.job_id] = line
                    self.stream.write(line + "\n")
        self.stream.flush()


def _start(
    client: PicflowClient,
    operation: str,
    source: Source,
    *,
    params: dict[str, Any],
    mode: str,
    idempotency_key: str | None,
) -> Tracked:
    if source.path is not None:
        slot = client.create_upload(source.path.name, _content_type(source.path))
        client.put_upload(slot, source.path.read_bytes())
        job_input = {"upload_id": slot["upload_id"]}
    elif source.key is not None:
        job_input = {"key": source.key}
    else:
        assert source.url is not None
        job_input = {"url": source.url}
    created = client.create_job(
        operation, job_input, params=params, mode=mode, idempotency_key=idempotency_key
    )
    return Tracked(source=source, job_id=created["job_id"], status=created["status"])


def _result_name(key: str, index: int, taken: set[str]) -> str:
    name = key.rsplit("/", 1)[-1] or f"result-{index}"
    if name in taken:
        name = f"{index}-{name}"
    taken.add(name)
    return name


def _download(client: PicflowClient, job: Tracked, out_dir: Path) -> None:
    assert job.view is not None
    folder = out_dir / job.job_id
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for result in job.view["results"]:
        dest = folder / _result_name(result["key"], result["index"], taken)
        job.files.append(client.download(result, dest))
    # The job as the API described it, without the presigned URLs (they carry signatures).
    record = {k: v for k, v in job.view.items() if k != "manifest_url"}
    record["results"] = [{k: v for k, v in r.items() if k != "url"} for r in job.view["results"]]
    (folder / "job.json").write_text(
        json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def run(
    client: PicflowClient,
    operation: str,
    target: str,
    *,
    params: dict[str, Any],
    mode: str = "auto",
    out_dir: Path = Path("out"),
    wait: bool = True,
    idempotency_key: str | None = None,
    input_bucket: str | None = None,
    interval: float = 1.0,
    timeout: float = 3600.0,
    stall: float = STALL,
    stdout: TextIO | None = None,
    tty: bool | None = None,
) -> int:
    out = stdout or sys.stdout
    sources = expand_inputs(target, input_bucket)
    jobs = []
    for n, source in enumerate(sources):
        key = idempotency_key if idempotency_key is None or len(sources) == 1 else f"{idempotency_key}-{n}"
        jobs.append(_start(client, operation, source, params=params, mode=mode, idempotency_key=key))
    if not wait:
        for job in jobs:
            print(f"{job.job_id}  {job.status}  {job.source.label}", file=out)
        print("follow with `picflow status <job id>`", file=out)
        return 0

    board = ProgressBoard(out, tty)
    # Give up when no job changed for `stall` seconds, or after `timeout` in all (issue 15, finding 8).
    patience = Patience("jobs", stall=stall, cap=timeout)
    while True:
        for job in jobs:
            if not job.final:
                job.view = client.get_job(job.job_id)
                job.status = job.view["status"]
        board.render(jobs)
        if all(job.final for job in jobs):
            break
        patience.see([_progress_mark(job.view) for job in jobs])
        try:
            patience.check()
        except WaitTimeoutError as exc:
            running = [j.job_id for j in jobs if not j.final]
            raise JobsFailedError(
                f"{len(running)} job(s) still running ({', '.join(running)}): {exc.reason}; "
                "follow with `picflow status <job id>`"
            ) from None
        time.sleep(min(interval, max(patience.remaining(), 0.01)))

    for job in jobs:
        if job.status == "SUCCEEDED":
            _download(client, job, out_dir)
            print(f"{job.job_id}: {len(job.files)} result(s) in {out_dir / job.job_id}", file=out)
    failed = [j for j in jobs if j.status != "SUCCEEDED"]
    if failed:
        detail = "; ".join(f"{j.job_id} ({j.source.label}) {_failure(j)}" for j in failed)
        raise JobsFailedError(f"{len(failed)} of {len(jobs)} job(s) did not succeed: {detail}")
    return 0


def _progress_mark(view: JobView | None) -> tuple[Any, ...]:
    """What moves while a job advances: its status, progress, status reads and step times."""
    if view is None:
        return ()
    timings = json.dumps(view.get("timings") or {}, sort_keys=True, default=str)
    return (view["status"], view.get("progress"), view.get("polls"), timings)


def _failure(job: Tracked) -> str:
    error = job.view.get("error") if job.view is not None else None
    if isinstance(error, dict):
        return f"{job.status} {error.get('type', 'Error')}: {error.get('message', '')}".strip()
    return job.status
