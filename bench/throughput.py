"""Local stack throughput: jobs/s through the real state machine and handlers, mock in its own process.

Starts mock_upstream as its own process (``python -m mock_upstream``, zero latency: no status
cache, no Tencent processing time), deploys template.yaml into moto in this process
(``LocalStack``: the moto server and the Step Functions interpreter here, every Lambda in a worker
process), raises the provider caps to 50, then runs JOBS jobs with IN_FLIGHT in flight (a new one
starts as soon as one ends), round-robin over the three providers (MIX: TaskPic poll, Tencent
sync, HD redraw poll), each through ``StartExecution`` of the job state machine with
``reuse: false`` (paid jobs, not the result cache). A warm-up of WARMUP jobs runs first.

Prints jobs/s, Lambda invocations, state transitions (``StateEntered`` events) and the AWS cost
per 1,000 jobs (bench/aws_prices.py), and the CPU the run took, read from /proc for the whole
process tree from outside it (kernel accounting, not sampling inside the process): this process
(moto, the interpreter, the bench's client), the Lambda workers and the mock. The load average
is printed beside it: the machine is shared.

Goal: every job SUCCEEDED, and jobs/s >= GOAL_FACTOR x the baseline (``--baseline JOBS_PER_S``:
today's main measured back to back with this same bench, e.g. in a worktree; BASELINE_JOBS_PER_S
when not given). Exits non-zero when missed.

``python bench/throughput.py [--jobs N] [--in-flight K] [--baseline JOBS_PER_S]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_prices import aws_usd, state_transitions
from picflow_cli.local.stack import LocalStack
from PIL import Image

from mock_upstream.process import MockProcess
from mock_upstream.testing import MockUpstream

JOBS = 150
IN_FLIGHT = 20
WARMUP = 9
GOAL_FACTOR = 2.5
BASELINE_JOBS_PER_S = 1.83  # main before issue 19 (f1582ad), this bench, 20 in flight (docs/performance.md)
MIX: list[tuple[str, dict[str, Any], str]] = [
    ("segmentation", {"output_type": 1}, "poll"),  # TaskPic
    ("replace_background", {"prompt": "a marble table"}, "sync"),  # Tencent
    ("face_enhance", {}, "poll"),  # HD redraw
]
ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 640), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


# --- CPU of a process tree, from /proc ----------------------------------------------------------


def _stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and of its waited-for children)."""
    found: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        found[int(entry)] = (ppid, (utime + stime + cutime + cstime) / CLOCK_TICKS)
    return found


def tree_cpu(root: int, exclude: int | None = None) -> float:
    """CPU seconds of ``root`` and its live descendants (and of those they reaped), not ``exclude``'s."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid == exclude or pid not in stats:
            continue
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def own_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` itself (user + system), without its children."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Cpu:
    moto: float  # this process: moto server, interpreter, bench client
    lambdas: float  # the fork server and its worker processes
    mock: float  # the mock upstream's process tree

    @classmethod
    def now(cls, mock_pid: int) -> Cpu:
        me = os.getpid()
        everything = tree_cpu(me, exclude=mock_pid)
        moto = own_cpu(me)
        return cls(moto=moto, lambdas=everything - moto, mock=tree_cpu(mock_pid))

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.moto - other.moto, self.lambdas - other.lambdas, self.mock - other.mock)

    @property
    def total(self) -> float:
        return self.moto + self.lambdas + self.mock


# --- the run ---------------------------------------------------------------------------------------


def run_jobs(stack: LocalStack, key: str, jobs: int, in_flight: int) -> dict[str, Any]:
    """``jobs`` jobs, ``in_flight`` at a time; one thread per slot starts a job and waits for its end."""
    info = stack.info
    assert info is not None
    assert stack.runtime is not None
    sfn = stack.client("stepfunctions")
    arns: list[str] = []
    statuses: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(jobs))
    ended = threading.Condition()
    running: set[str] = set()

    def slot() -> None:
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                return
            operation, params, mode = MIX[index % len(MIX)]
            job_id = f"bench-{index}-{uuid.uuid4().hex[:10]}"
            request = {
                "job_id": job_id,
                "operation": operation,
                "params": params,
                "mode": mode,
                "input": {"bucket": info.input_bucket, "key": key},
                "source": "bench",
                "reuse": False,
            }
            arn = sfn.start_execution(
                stateMachineArn=info.job_state_machine_arn, name=job_id, input=json.dumps(request)
            )["executionArn"]
            with ended:
                running.add(arn)
                ended.notify_all()
            with ended:
                while arn in running:
                    ended.wait()
            with lock:
                arns.append(arn)

    def watcher(stop: threading.Event) -> None:
        # One ListExecutions a tick tells which of the running jobs ended (describing each would
        # load moto with in_flight requests a tick).
        while not stop.wait(0.1):
            with ended:
                if not running:
                    continue
            still = set()
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=info.job_state_machine_arn, statusFilter="RUNNING"
            )
            for page in pages:
                still.update(execution["executionArn"] for execution in page["executions"])
            with ended:
                done = running - still
                if done:
                    running.difference_update(done)
                    ended.notify_all()

    invocations_before = len(stack.runtime.invocations)
    calls_before = len(stack.iam.calls)
    stop = threading.Event()
    watch = threading.Thread(target=watcher, args=(stop,), daemon=True)
    watch.start()
    started = time.perf_counter()
    slots = [threading.Thread(target=slot) for _ in range(in_flight)]
    for thread in slots:
        thread.start()
    for thread in slots:
        thread.join()
    elapsed = time.perf_counter() - started
    stop.set()
    watch.join()
    failures: list[str] = []
    for arn in arns:
        described = sfn.describe_execution(executionArn=arn)
        statuses.append(described["status"])
        if described["status"] != "SUCCEEDED":
            failures.append(f"{arn.rsplit(':', 1)[-1]} {described['status']} {described.get('error')}")
    calls = stack.runtime.invocations[invocations_before:]
    aws_calls = Counter(call.action for call in list(stack.iam.calls)[calls_before:])
    return {
        "elapsed": elapsed,
        "arns": arns,
        "statuses": statuses,
        "failures": failures,
        "calls": calls,
        "aws_calls": aws_calls,
    }


DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}


def aws_call_lines(aws_calls: Counter[str], jobs: int) -> list[str]:
    """The AWS requests the handlers and the interpreter made (each one IAM-checked), a job."""
    total = sum(aws_calls.values())
    by_service: Counter[str] = Counter()
    for action, count in aws_calls.items():
        by_service[action.split(":", 1)[0]] += count
    reads = sum(
        n for a, n in aws_calls.items() if a.startswith("dynamodb:") and a.split(":")[1] in DYNAMODB_READS
    )
    writes = by_service["dynamodb"] - reads
    top = ", ".join(f"{action} {count / jobs:.1f}" for action, count in aws_calls.most_common(12))
    return [
        f"AWS requests a job (handlers + interpreter): {total / jobs:.1f}"
        f" ({', '.join(f'{svc} {n / jobs:.1f}' for svc, n in by_service.most_common())});"
        f" DynamoDB reads {reads / jobs:.1f}, writes {writes / jobs:.1f}",
        f"  by action: {top}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    parser.add_argument("--baseline", type=float, default=BASELINE_JOBS_PER_S, help="jobs/s of main before")
    args = parser.parse_args()
    os.environ.setdefault("PICFLOW_LOCAL_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore")  # moto's CloudFormation deprecations

    with MockProcess() as mock:
        upstream_url = mock.base_url
        assert mock.process is not None
        mock_pid = mock.process.pid
        control = MockUpstream(upstream_url)
        control.configure(hd_status_cache_seconds=0, tencent_processing_seconds=0)
        stack = LocalStack(
            upstream_url, parameters={"ProviderConcurrency": "taskpic=50,tencent=50,hdredraw=50"}
        )
        stack.start()
        try:
            assert stack.info is not None
            assert stack.runtime is not None
            key = f"uploads/bench-{uuid.uuid4().hex}.png"  # uploads/ starts no job by itself
            stack.client("s3").put_object(Bucket=stack.info.input_bucket, Key=key, Body=png())
            run_jobs(stack, key, WARMUP, min(args.in_flight, WARMUP))
            load_before = os.getloadavg()
            cpu_before = Cpu.now(mock_pid)
            result = run_jobs(stack, key, args.jobs, args.in_flight)
            cpu = Cpu.now(mock_pid) - cpu_before
            load_after = os.getloadavg()
            sfn = stack.client("stepfunctions")
            transitions_total = sum(state_transitions(sfn, arn) for arn in result["arns"])
            memory = {spec.name: spec.memory_mb for spec in stack.runtime.functions.values()}
            calls = result["calls"]
        finally:
            stack.stop()
            control.close()

    jobs = len(result["arns"])
    ok = sum(1 for status in result["statuses"] if status == "SUCCEEDED")
    rate = jobs / result["elapsed"]
    gb_s = sum(max(call.duration, 0.001) * memory[call.function] / 1024 for call in calls)
    usd = aws_usd(transitions_total, len(calls), gb_s)
    cores = os.cpu_count() or 1
    print(
        f"{jobs} jobs ({', '.join(op for op, _, _ in MIX)} in turn), {args.in_flight} in flight,"
        f" mock in its own process, {cores} cores"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(f"{ok}/{jobs} SUCCEEDED in {result['elapsed']:.1f} s = {rate:.2f} jobs/s")
    for failure in result["failures"]:
        print(f"  not SUCCEEDED: {failure}")
    print(
        f"per job: {len(calls) / jobs:.1f} Lambda invocations, {transitions_total / jobs:.1f} state"
        f" transitions, {gb_s / jobs:.3f} GB-s (local durations)"
    )
    print(f"AWS $ per 1,000 jobs: {usd * 1000 / jobs:.4f} (Step Functions + Lambda, bench/aws_prices.py)")
    for line in aws_call_lines(result["aws_calls"], jobs):
        print(line)
    print(
        f"CPU (from /proc, whole tree): {cpu.total:.1f} s = {cpu.total / result['elapsed']:.2f} of"
        f" {cores} cores; per job {cpu.total / jobs * 1000:.0f} ms: moto process"
        f" {cpu.moto / jobs * 1000:.0f}, Lambda workers {cpu.lambdas / jobs * 1000:.0f},"
        f" mock {cpu.mock / jobs * 1000:.0f}"
    )
    goal = GOAL_FACTOR * args.baseline
    met = ok == jobs and rate >= goal
    print(
        f"SUMMARY jobs_per_s={rate:.2f} in_flight={args.in_flight} ok={ok}/{jobs}"
        f" cpu_ms_per_job={cpu.total / jobs * 1000:.0f} moto_cpu_ms_per_job={cpu.moto / jobs * 1000:.0f}"
        f" load={load_before[0]:.2f} goal>={goal:.2f} ({GOAL_FACTOR}x {args.baseline:.2f})"
        f" {'OK' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
