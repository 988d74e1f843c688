"""``make demo``: the main job, offline, through the real system.

Starts the mock upstream and the local stack (template.yaml deployed into moto, real
handlers), runs the bundled sample images through all 14 operations (some by S3 upload,
some through the jobs API), one chained pipeline (cutout → background → upscale as
nested executions) and one job that fails on purpose with a documented upstream error,
then writes every input and output to ``out/`` and a visual report ``out/report.html``.
"""

from __future__ import annotations

import gc
import html
import json
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picflow.aws.jobs import from_dynamo
from picflow.core.names import s3_job_id

from picflow_cli.local.stack import LocalStack, repo_root
from picflow_cli.waiting import WaitTimeoutError

__all__ = ["DEMO_JOBS", "DemoJob", "run_demo"]

# A wait gives up when nothing in the stack changed for STALL seconds (no Lambda invocation, no
# status change), or after CAP seconds in all: never at a fixed length (a loaded machine is slow).
STALL = 60.0
CAP = 900.0


@dataclass
class DemoJob:
    operation: str
    sample: str
    params: dict[str, Any]
    via: str = "s3"  # s3 | api
    title: str = ""
    # Filled in as the job runs:
    job_id: str = ""
    key: str = ""
    execution: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    transitions: int = 0
    outputs: list[dict[str, Any]] = field(default_factory=list)


DEMO_JOBS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("segmentation", "product.jpg", {"output_type": 1}, "s3"),
    ("background", "foreground.png", {"prompt": "a sunny beach at noon", "batch_size": 2}, "api"),
    ("idphoto", "portrait.png", {"size": "300x400", "format": "jpg", "bg_color": "3B7DD8"}, "s3"),
    ("replace_background", "product.jpg", {"prompt": "on a marble kitchen counter"}, "api"),
    ("redraw", "image.png", {"upscale": 2, "auto_generate_prompt": True}, "s3"),
    ("vectorize", "logo.jpg", {"color_count": 4}, "s3"),
    ("face_enhance", "portrait.png", {}, "api"),
    ("seamless", "image.png", {"direction": 0, "fit": 0.5}, "s3"),
    ("remove_fabric", "image.png", {}, "s3"),
    ("edit_image", "image.png", {"prompt": "make it a watercolour", "model_version": "v2"}, "api"),
    ("extract_pattern", "image.png", {"aspect_ratio": "1:1"}, "s3"),
    ("remove_diamonds", "image.png", {}, "s3"),
    ("expand_image", "image.png", {"expand_top": 0.2, "expand_left": 0.1}, "api"),
    ("remove_watermark", "image.png", {}, "s3"),
)


def _samples() -> Path:
    return repo_root() / "mock_upstream" / "samples"


class Demo:
    def __init__(self, stack: LocalStack, mock_url: str, out: Path) -> None:
        import boto3
        import httpx

        from mock_upstream.testing import MockUpstream
        from picflow_cli.local.frontdoor import LOCAL_API_KEY

        assert stack.info is not None
        self.stack = stack
        self.info = stack.info
        self.out = out
        self.s3 = stack.client("s3")
        self.sfn = stack.client("stepfunctions")
        self.table = boto3.resource(
            "dynamodb", endpoint_url=self.info.moto_url, region_name="us-east-1"
        ).Table(self.info.resources["JobsTable"])
        self.mock = MockUpstream(mock_url)
        # One client for every API call and upload (a client per call built its TLS context each
        # time: ~30 ms of CPU, three times a job); the API key goes on the front door's calls only.
        self.http = httpx.Client(timeout=30)
        self.api_headers = {"x-api-key": LOCAL_API_KEY}
        self.api_ready: bool | None = None
        # The local stack scales waits to 0, so a job polls as fast as the stack answers: through
        # HD redraw's 3 s status cache (mock time) it would use up its 200 polls on cached
        # "Processing" answers before the cache expires (bench/throughput.py does the same).
        self.mock.configure(hd_status_cache_seconds=0)

    # --- starting jobs ------------------------------------------------------------

    def start_s3(self, job: DemoJob) -> None:
        data = (_samples() / job.sample).read_bytes()
        job.key = f"{job.operation}/demo/{uuid.uuid4().hex[:6]}/{job.sample}"
        put = self.s3.put_object(
            Bucket=self.info.input_bucket, Key=job.key, Body=data, Metadata={"params": json.dumps(job.params)}
        )
        # The input bucket is versioned: the upload's version names its job, as the trigger names it
        # (no scan of the whole table for the record).
        job.job_id = s3_job_id(self.info.input_bucket, job.key, put["VersionId"])

    def start_api(self, job: DemoJob) -> None:
        api = self.info.api_url
        data = (_samples() / job.sample).read_bytes()
        upload = self.http.post(
            f"{api}/uploads",
            json={"filename": job.sample, "content_type": "image/png"},
            headers=self.api_headers,
        )
        upload.raise_for_status()
        slot = upload.json()
        self.http.put(slot["url"], content=data, headers=slot.get("headers") or {}).raise_for_status()
        created = self.http.post(
            f"{api}/jobs",
            json={
                "operation": job.operation,
                "params": job.params,
                "input": {"upload_id": slot["upload_id"]},
            },
            headers={**self.api_headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        created.raise_for_status()
        job.job_id = created.json()["job_id"]
        job.key = slot["key"]

    def close(self) -> None:
        self.http.close()

    def start(self, job: DemoJob) -> None:
        if job.via == "api" and self._api_ready():
            self.start_api(job)
        else:
            job.via = "s3"
            self.start_s3(job)

    def _api_ready(self) -> bool:
        import httpx

        if self.api_ready is None:  # asked once: the front door does not go away mid-demo
            try:
                answer = self.http.get(
                    f"{self.info.api_url}/operations", headers=self.api_headers, timeout=10
                )
            except httpx.HTTPError:
                self.api_ready = False
            else:
                self.api_ready = answer.status_code == 200
        return self.api_ready

    # --- collecting ---------------------------------------------------------------

    def finish(self, job: DemoJob) -> None:
        job.execution = self.stack.wait_for_execution(job.job_id, timeout=STALL, cap=CAP)
        job.record = from_dynamo(self.table.get_item(Key={"job_id": job.job_id})["Item"])
        history = self.sfn.get_execution_history(executionArn=job.execution["executionArn"], maxResults=1000)
        job.transitions = sum(1 for e in history["events"] if e["type"].endswith("StateEntered"))
        folder = self.out / job.job_id
        folder.mkdir(parents=True, exist_ok=True)
        source = job.record.get("input", {})
        if source.get("bucket") and source.get("key"):
            ext = Path(str(source["key"])).suffix or ".png"
            body = self.s3.get_object(Bucket=source["bucket"], Key=source["key"])["Body"].read()
            (folder / f"input{ext}").write_bytes(body)
        for out in (job.record.get("manifest") or {}).get("outputs", []):
            name = Path(str(out["key"])).name
            body = self.s3.get_object(Bucket=self.info.output_bucket, Key=out["key"])["Body"].read()
            (folder / name).write_bytes(body)
            job.outputs.append({**out, "file": f"{job.job_id}/{name}"})

    def start_pipeline(self) -> DemoJob:
        job = DemoJob("pipeline", "product.jpg", {"prompt": "studio lighting", "upscale": 2}, "sfn")
        job.title = "pipeline: segmentation → background → redraw (nested executions)"
        data = (_samples() / job.sample).read_bytes()
        job.key = f"uploads/demo/{uuid.uuid4().hex[:6]}/{job.sample}"
        self.s3.put_object(Bucket=self.info.input_bucket, Key=job.key, Body=data)
        name = f"demo-pipeline-{uuid.uuid4().hex[:8]}"
        started = self.sfn.start_execution(
            stateMachineArn=self.info.pipeline_state_machine_arn,
            name=name,
            input=json.dumps({"input": {"bucket": self.info.input_bucket, "key": job.key}, **job.params}),
        )
        job.execution = {"executionArn": started["executionArn"]}
        return job

    def finish_pipeline(self, job: DemoJob) -> None:
        execution = self.stack.wait_for_arn(job.execution["executionArn"], timeout=STALL, cap=CAP)
        if execution["status"] == "SUCCEEDED":
            job.job_id = str(json.loads(execution["output"])["upscale"]["job_id"])
            self.finish(job)
        job.execution = execution

    def start_failure(self) -> DemoJob:
        """A documented upstream error on purpose: Tencent's content moderation says no.

        The fault hits the next ReplaceBackground call, so the demo's own Tencent job must have
        ended before this starts (the caller's order sees to it).
        """
        job = DemoJob("replace_background", "product.jpg", {"prompt": "a crowded street"}, "s3")
        job.title = "fails on purpose: OperationDenied.ImageIllegalDetected"
        self.mock.inject_fault(
            "provider_error", action="ReplaceBackground", code="OperationDenied.ImageIllegalDetected"
        )
        self.start(job)
        return job


def _cell_images(job: DemoJob) -> str:
    parts = []
    for out in job.outputs:
        size = f" {out['width']}x{out['height']}" if out.get("width") else ""
        label = html.escape(f"{out['kind']}{size}")
        if str(out["content_type"]).startswith("image/"):
            src = html.escape(out["file"])
            parts.append(f'<figure><img src="{src}" alt="{label}"><figcaption>{label}</figcaption></figure>')
        else:
            parts.append(f'<figure><a href="{html.escape(out["file"])}">{label} (EPS)</a></figure>')
    return "".join(parts) or "—"


def _row(job: DemoJob, out: Path) -> str:
    record = job.record
    esc = html.escape
    inputs = sorted((out / job.job_id).glob("input.*")) if job.job_id else []
    input_cell = f'<img src="{esc(job.job_id)}/{esc(inputs[0].name)}" alt="input">' if inputs else "—"
    status = str(record.get("status") or job.execution.get("status", "?"))
    error = record.get("error") or {}
    if error:
        status_cell = f"{esc(status)}<br><small>{esc(str(error.get('type')))}: {esc(str(error.get('code')))}"
        status_cell += f"<br>{esc(str(error.get('message')))}</small>"
    else:
        status_cell = esc(status)
    params = json.dumps(record.get("params", job.params), ensure_ascii=False, indent=1)
    texts = (record.get("manifest") or {}).get("texts") or {}
    prompt = f"<p>prompt: {esc(texts['prompt'])}</p>" if "prompt" in texts else ""
    timing = (
        f"{esc(str(record.get('style', '')))}<br>polls {record.get('polls', 0)}"
        f"<br>transitions {job.transitions}<br>{record.get('duration_seconds', '—')} s"
    )
    cells = [
        f"<b>{esc(job.title or job.operation)}</b><br><small>{esc(job.job_id)}</small><br>via {esc(job.via)}",
        input_cell,
        _cell_images(job),
        f"<pre>{esc(params)}</pre>{prompt}",
        status_cell,
        timing,
        f"{record.get('cost_units', '—')} × {esc(str(record.get('cost_unit', '')))}",
    ]
    classes = ["job", "", "outputs", "", "status", "", ""]
    body = "".join(f'<td class="{c}">{cell}</td>' for c, cell in zip(classes[1:], cells[1:], strict=True))
    return (
        f'<tr class="job {esc(status.lower())}" data-job="{esc(job.job_id)}"><td>{cells[0]}</td>{body}</tr>'
    )


def write_report(jobs: list[DemoJob], out: Path, elapsed: float) -> Path:
    rows = [_row(job, out) for job in jobs]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>picflow demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: .4rem; vertical-align: top; }}
img {{ max-width: 160px; max-height: 160px;
       background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%) 0 0/16px 16px; }}
figure {{ display: inline-block; margin: .2rem; }} figcaption {{ font-size: .75rem; }}
tr.failed td.status {{ color: #b00; }} tr.succeeded td.status {{ color: #070; }}
pre {{ font-size: .75rem; margin: 0; }}
</style></head><body>
<h1>picflow demo</h1>
<p>{len(jobs)} jobs through the real state machine and handlers, offline, in {elapsed:.1f} s.</p>
<table id="jobs"><thead><tr><th>job</th><th>input</th><th>outputs</th><th>params</th><th>status</th>
<th>style · polls · transitions · time</th><th>cost</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p id="image-check">checking images…</p>
<script>
// Tells the reader (and the report's own test) whether every picture actually loaded.
window.addEventListener("load", () => {{
  const images = [...document.images];
  const broken = images.filter(img => !(img.complete && img.naturalWidth > 0));
  const check = document.getElementById("image-check");
  check.dataset.total = images.length;
  check.dataset.broken = broken.length;
  check.textContent = broken.length ? `${{broken.length}} of ${{images.length}} images failed to load`
                                    : `all ${{images.length}} images loaded`;
}});
</script>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_demo(out_dir: str) -> int:
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()
    print("picflow demo: starting the mock upstream and the local stack (template.yaml in moto)…")
    try:
        return _run(out, started)
    except WaitTimeoutError as exc:
        # A wait that saw nothing change: one line, no traceback (issue 15, finding 8).
        print(f"picflow demo: FAILED after {time.monotonic() - started:.1f} s: {exc}", file=sys.stderr)
        return 1


def _run(out: Path, started: float) -> int:
    from mock_upstream.process import MockProcess

    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = now - mark
        mark = now

    # The mock runs in a process of its own (its requests, renders and callbacks off the GIL of this
    # one, which runs moto; ~17 % of its busy time), its clock frozen as the in-process mock's was.
    # It starts while this process imports moto's server and CloudFormation, which the stack start
    # needs first (~1 s of CPU: overlapped, not waited for).
    with MockProcess("--frozen-clock") as mock:
        import moto.cloudformation.parsing  # noqa: F401

        import picflow_cli.local.server  # noqa: F401

        phase("mock")
        stack = LocalStack(mock.base_url)
        info = stack.start()
        # What the stack start built (moto, botocore's models, every module: ~0.5 M objects) lives
        # to the end: out of the collector, whose full passes over it took ~1-3 s of the jobs' CPU.
        gc.freeze()
        phase("stack")
        demo: Demo | None = None
        try:
            print(f"  API {info.api_url}  S3 {info.moto_url}  upstream {mock.base_url}")
            demo = Demo(stack, mock.base_url, out)
            jobs = [DemoJob(op, sample, params, via) for op, sample, params, via in DEMO_JOBS]
            # Everything runs at once, as on AWS: the pipeline beside the jobs, and the failure as
            # soon as the one other Tencent job (the fault's only other taker) has ended.
            pipeline = demo.start_pipeline()
            for job in jobs:
                demo.start(job)
            tencent = [job for job in jobs if job.operation == "replace_background"]
            for job in tencent:
                demo.finish(job)
            failure = demo.start_failure()
            for job in jobs:
                if job not in tencent:
                    demo.finish(job)
            for job in jobs:
                status = job.record.get("status")
                print(f"  {job.operation:<20} via {job.via:<3} {status:<10} {len(job.outputs)} output(s)")
            demo.finish_pipeline(pipeline)
            print(f"  {'pipeline':<20} via sfn {pipeline.execution.get('status')}")
            demo.finish(failure)
            error = failure.record.get("error", {})
            print(f"  {'failure on purpose':<20} {failure.record.get('status')} {error.get('code')}")
            phase("jobs")
        finally:
            if demo is not None:
                demo.close()
            # The mock goes down while the stack does: each mostly waits on its own threads.
            mock_stop = threading.Thread(target=mock.stop, name="mock-stop")
            mock_stop.start()
            stack.stop()
            mock_stop.join()
    phase("stop")
    elapsed = time.monotonic() - started
    report = write_report([*jobs, pipeline, failure], out, elapsed)
    phase("report")
    ok = all(j.record.get("status") == "SUCCEEDED" for j in [*jobs, pipeline])
    ok = ok and failure.record.get("status") == "FAILED"
    print(f"picflow demo: {'done' if ok else 'FAILED'} in {elapsed:.1f} s; open {report}")
    print(breakdown(phases, stack.timings))
    # The process ends next: spare the interpreter's exit a last full collection (~1 s).
    gc.freeze()
    return 0 if ok else 1


def breakdown(phases: dict[str, float], stack: dict[str, float]) -> str:
    """Where the demo's wall time went, its stack start split into its own phases."""
    wiring = stack.get("start", 0.0) - sum(stack.get(k, 0.0) for k in ("server", "template", "create_stack"))
    inside = (
        f"moto server {stack.get('server', 0.0):.1f}, template + SAM transform"
        f" {stack.get('template', 0.0):.1f}, create_stack {stack.get('create_stack', 0.0):.1f},"
        f" wiring {wiring:.1f}"
    )
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
    return f"  wall time (s): {parts}; stack start = {inside}"
