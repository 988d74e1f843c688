"""Load: 200 concurrent jobs through the local stack's API, mixed operations, mock at zero latency.

Deploys template.yaml into moto (``LocalStack``, waits scaled to 0) with every provider cap
raised to the job count, makes every mock task finish at once (``seconds=0``, no status cache,
no Tencent processing time), then POSTs JOBS jobs to ``/jobs`` from 32 client threads at once
and waits for all of them.

The system's own overhead per job is the time from the POST being sent to the execution's end,
minus the time spent waiting on the upstream:

    overhead = (execution stopDate - POST sent) - upstream - waits
    upstream = union of the job's HTTP exchanges with the mock (submit, status, result
               downloads: request sent -> last body byte read), measured at httpx.Client.send
               inside the job's own Lambda invocations
    waits    = the job's Wait states (execution history), time deliberately given to the provider

So overhead is API + Step Functions + Lambda handlers + DynamoDB/S3 (moto) + queueing for a
CPU, all on this machine. Prints throughput, p50/p95 of overhead (and of its parts), the mock's
journal counts and one summary line last. Exits non-zero unless every job ended (SUCCEEDED, or
FAILED with a recorded error type) and every job paid exactly one submit.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.stack import LocalStack
from PIL import Image

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
    """Per job, the intervals its Lambda invocations spent in HTTP exchanges with the upstream."""

    def __init__(self, upstream_netloc: str) -> None:
        self.netloc = upstream_netloc
        self.local = threading.local()
        self.intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.lock = threading.Lock()

    def add(self, job: str, start: float, end: float) -> None:
        with self.lock:
            self.intervals[job].append((start, end))

    def install(self, stack: LocalStack) -> None:
        runtime = stack.runtime
        assert runtime is not None
        invoke = runtime.invoke
        clock = self

        def invoke_for_job(name: str, event: Any) -> tuple[str, bool, str]:
            found = JOB_ID.search(json.dumps(event, default=str))
            clock.local.job = found.group(0) if found else None
            try:
                return invoke(name, event)
            finally:
                clock.local.job = None

        runtime.invoke = invoke_for_job  # type: ignore[method-assign]
        send = httpx.Client.send

        class TimedStream(httpx.SyncByteStream):
            def __init__(self, inner: Any, job: str, started: float) -> None:
                self.inner, self.job, self.started = inner, job, started

            def __iter__(self) -> Iterator[bytes]:
                yield from self.inner
                clock.add(self.job, self.started, time.time())

            def close(self) -> None:
                self.inner.close()

        def timed_send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
            job = getattr(clock.local, "job", None)
            if job is None or urlsplit(str(request.url)).netloc != clock.netloc:
                return send(client, request, **kwargs)
            started = time.time()
            response = send(client, request, **kwargs)
            if kwargs.get("stream"):
                response.stream = TimedStream(response.stream, job, started)
            else:
                clock.add(job, started, time.time())
            return response

        httpx.Client.send = timed_send  # type: ignore[method-assign]

    def busy(self, job: str) -> float:
        total, end = 0.0, float("-inf")
        for start, stop in sorted(self.intervals.get(job, [])):
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
    with ThreadedServer() as server:
        mock = MockUpstream(server.base_url)
        mock.configure(hd_status_cache_seconds=0, tencent_processing_seconds=0)
        mock.set_scenario(seconds=0)  # every task is done when first asked
        caps = f"taskpic={jobs},tencent={jobs},hdredraw={jobs}"
        stack = LocalStack(server.base_url, parameters={"ProviderConcurrency": caps})
        info = stack.start()
        try:
            clock = UpstreamClock(urlsplit(server.base_url).netloc)
            clock.install(stack)
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

            rows: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
            for job_id, execution in executions.items():
                history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
                wall = execution["stopDate"].timestamp() - sent[job_id]
                upstream = clock.busy(job_id)
                waited = waits(history["events"])
                rows[operation_of[job_id]].append((wall, upstream, waited, wall - upstream - waited))
            statuses = [e["status"] for e in executions.values()]
            table = boto3.resource("dynamodb", endpoint_url=info.moto_url).Table(info.resources["JobsTable"])
            failures = [
                (operation_of[j], table.get_item(Key={"job_id": j})["Item"].get("error"))
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
