"""Load: 200 concurrent jobs through the local stack's API, mixed operations, mock at zero latency.

Deploys template.yaml into moto (``LocalStack``, waits scaled to 0) with every provider cap
raised to the job count, makes every mock task finish at once (``seconds=0``, no status cache,
no Tencent processing time), then POSTs JOBS jobs to ``/jobs`` from 32 client threads at once
and waits for all of them.

The system's own overhead per job is the time from the POST being sent to the execution's end,
minus the time spent waiting on the upstream:

    overhead = (execution stopDate - POST sent) - upstream - waits
    upstream = union of the mock's time answering the job's requests (submit, status, result
               downloads), timed around the mock's exchange handler in this process
               (UpstreamClock: the handlers run in Lambda worker processes, out of reach; the
               mock runs here)
    waits    = the job's Wait states (execution history), time deliberately given to the provider

So overhead is API + Step Functions + Lambda handlers + DynamoDB/S3 (moto) + queueing for a
CPU, all on this machine. Prints throughput, p50/p95 of overhead (and of its parts), the mock's
journal counts and one summary line last. Exits non-zero unless every job ended (SUCCEEDED, or
FAILED with a recorded error type) and every job paid exactly one submit.
"""

from __future__ import annotations

import io
import os
import re
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.stack import LocalStack
from PIL import Image

from mock_upstream.app import MockApp
from mock_upstream.server import ThreadedServer
from mock_upstream.testing import MockUpstream

JOBS = 200
CLIENT_THREADS = 32
MIX: list[tuple[str, dict[str, Any], str]] = [
    ("segmentation", {"output_type": 1}, "poll"),
    ("background", {"prompt": "a sunny beach", "batch_size": 1}, "poll"),
    ("idphoto", {"size": "300x400"}, "sync"),
    ("replace_background", {"prompt": "a marble table"}, "auto"),
    ("face_enhance", {}, "auto"),
    ("remove_watermark", {}, "auto"),
    ("vectorize", {"color_count": 4}, "auto"),
    ("edit_image", {"prompt": "make it blue"}, "auto"),
]
JOB_ID = re.compile(r"api-[0-9a-f]{32,40}")


def png(index: int) -> bytes:
    """A distinct image per job, so no job can be answered from another's result (picflow.aws.cache)."""
    buffer = io.BytesIO()
    Image.new("RGB", (640, 640), (index % 256, index // 256, 40)).save(buffer, "PNG")
    return buffer.getvalue()


class UpstreamClock:
    """Per provider task, the intervals the mock spent answering its requests (submit, status,
    result downloads), timed around ``Mock.exchange`` in this process.

    The handlers run in Lambda worker processes (``picflow_cli.local.runtime``), where this
    process cannot time their HTTP exchanges; the mock runs here (``ThreadedServer``), so each
    exchange is timed from the server's side: from the request's arrival in the mock's handler to
    its answer (loopback transfer not included). A job's upstream time is the union of its task's
    intervals (the job record's ``provider_task_id``); result files are tied to their task by the
    token in their URL. Tencent's sync answers name no task: a Tencent job's upstream time is 0
    here, so its overhead is an upper bound (its wall time less its waits).
    """

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], float, float]] = []
        self.lock = threading.Lock()
        self.app: Any = None

    def install(self, app: MockApp) -> None:
        self.app = app
        mock = app.mock
        exchange = mock.exchange
        clock = self

        async def timed(ctx: Any, entry: dict[str, Any], work: Any) -> Any:
            started = time.time()
            try:
                return await exchange(ctx, entry, work)
            finally:
                with clock.lock:
                    clock.spans.append((entry, started, time.time()))

        mock.exchange = timed  # type: ignore[method-assign]

    def by_task(self) -> dict[str, list[tuple[float, float]]]:
        token_task = {
            urlsplit(url).path.split("/files/", 1)[-1].split("/", 1)[0]: task_id
            for task_id, task in self.app.mock.state.tasks.items()
            for url in task.urls.values()
        }
        spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for entry, start, end in self.spans:
            task = entry.get("task_id")
            if not task and str(entry.get("path", "")).startswith("/files/"):
                task = token_task.get(str(entry["path"]).split("/")[2])
            if task:
                spans[str(task)].append((start, end))
        return spans


def busy(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def waits(history: list[dict[str, Any]]) -> float:
    total, entered = 0.0, None
    for event in history:
        if event["type"] == "WaitStateEntered":
            entered = event["timestamp"].timestamp()
        elif event["type"] == "WaitStateExited" and entered is not None:
            total += event["timestamp"].timestamp() - entered
            entered = None
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    os.environ.setdefault("PICFLOW_LOCAL_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore", message="Dimension .* has already been added")
    warnings.filterwarnings("ignore", message="Tried to parse AWS")  # moto's CloudFormation gaps
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else JOBS
    clock = UpstreamClock()
    app = MockApp()
    clock.install(app)
    with ThreadedServer(app) as server:
        mock = MockUpstream(server.base_url)
        mock.configure(hd_status_cache_seconds=0, tencent_processing_seconds=0)
        mock.set_scenario(seconds=0)  # every task is done when first asked
        caps = f"taskpic={jobs},tencent={jobs},hdredraw={jobs}"
        stack = LocalStack(server.base_url, parameters={"ProviderConcurrency": caps})
        info = stack.start()
        try:
            run = uuid.uuid4().hex[:8]
            s3 = stack.client("s3")
            keys = [f"uploads/load-{run}/{i}.png" for i in range(jobs)]  # uploads/ starts nothing itself
            for index, key in enumerate(keys):
                s3.put_object(Bucket=info.input_bucket, Key=key, Body=png(index))
            api = httpx.Client(base_url=info.api_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=120)
            sent: dict[str, float] = {}
            operation_of: dict[str, str] = {}

            def start(index: int) -> None:
                operation, params, mode = MIX[index % len(MIX)]
                body = {"operation": operation, "params": params, "input": {"key": keys[index]}, "mode": mode}
                headers = {"Idempotency-Key": f"load-{run}-{index}"}
                at = time.time()
                for attempt in range(3):  # a reset connection: the key makes the retry safe
                    try:
                        answer = api.post("/jobs", json=body, headers=headers)
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                assert answer.status_code in (200, 202), answer.text
                job_id = answer.json()["job_id"]
                sent[job_id], operation_of[job_id] = at, operation

            began = time.time()
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                list(pool.map(start, range(jobs)))
            submitted = time.time() - began
            sfn = stack.client("stepfunctions")
            executions = {j: stack.wait_for_execution(j, timeout=900) for j in sent}
            finished = max(e["stopDate"].timestamp() for e in executions.values())
            elapsed = finished - began

            table = boto3.resource("dynamodb", endpoint_url=info.moto_url).Table(info.resources["JobsTable"])
            records: dict[str, dict[str, Any]] = {
                j: dict(table.get_item(Key={"job_id": j})["Item"]) for j in executions
            }
            task_spans = clock.by_task()
            rows: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
            for job_id, execution in executions.items():
                history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
                wall = execution["stopDate"].timestamp() - sent[job_id]
                upstream_s = busy(task_spans.get(str(records[job_id].get("provider_task_id", "")), []))
                waited = waits(history["events"])
                rows[operation_of[job_id]].append((wall, upstream_s, waited, wall - upstream_s - waited))
            statuses = [e["status"] for e in executions.values()]
            failures = [
                (operation_of[j], records[j].get("error"))
                for j, e in executions.items()
                if e["status"] != "SUCCEEDED"
            ]
            paid = mock.count(paid=True)
            by_route = mock.count_by("route")
            api.close()
        finally:
            stack.stop()
            mock.reset()
            mock.close()

    everything = [r for per_op in rows.values() for r in per_op]
    print(
        f"{'operation':20} {'jobs':>5} {'wall p50':>9} {'upstream p50':>13} {'overhead p50':>13} {'p95':>7}"
    )
    for operation, per_op in sorted(rows.items()):
        overhead = [r[3] for r in per_op]
        print(
            f"{operation:20} {len(per_op):>5} {statistics.median(r[0] for r in per_op):>9.2f}"
            f" {statistics.median(r[1] for r in per_op):>13.3f} {statistics.median(overhead):>13.2f}"
            f" {pct(overhead, 0.95):>7.2f}"
        )
    overhead = [r[3] for r in everything]
    upstream = [r[1] for r in everything]
    print(
        f"\n{jobs} jobs: {jobs / elapsed:.2f} jobs/s ({elapsed:.1f} s from the first POST to the last end;"
        f" all {jobs} POSTs answered within {submitted:.1f} s)"
    )
    print(
        f"per job (s): wall p50 {statistics.median(r[0] for r in everything):.2f}"
        f" p95 {pct([r[0] for r in everything], 0.95):.2f};"
        f" upstream p50 {statistics.median(upstream):.3f} p95 {pct(upstream, 0.95):.3f};"
        f" Wait states total {sum(r[2] for r in everything):.2f}"
    )
    for operation, error in failures:
        print(f"FAILED {operation}: {error}")
    print("mock journal by route: " + ", ".join(f"{k} {v}" for k, v in sorted(by_route.items())))
    ok = statuses.count("SUCCEEDED")
    classified = all(error and error.get("type") for _, error in failures)
    good = len(statuses) == jobs and classified and paid == jobs
    print(
        f"SUMMARY jobs={jobs} succeeded={ok} jobs_per_s={jobs / elapsed:.2f}"
        f" failed={len(failures)} overhead_p50_s={statistics.median(overhead):.2f}"
        f" overhead_p95_s={pct(overhead, 0.95):.2f}"
        f" upstream_p50_s={statistics.median(upstream):.3f} paid_submits={paid}"
        f" upstream_calls={sum(by_route.values())} {'OK' if good else 'FAILED'}"
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
