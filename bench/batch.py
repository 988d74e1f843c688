"""Batch throughput and cost: ITEMS images through one operation as one batch, then the same batch again.

Deploys template.yaml into moto (``LocalStack``, waits scaled to 0 with the local poll floor: each
Wait after a job's first sleeps 0.25 s, ``picflow_cli.local.waits``; the HD redraw cap raised to
CAP so the derived MaxConcurrency is CAP), uploads ITEMS distinct images under a prefix and
starts ``POST /batches`` (face_enhance, HD redraw, poll style) through the API front door; times
it to the end of the batch execution; then runs the same batch again (the result cache answers
every item) and times that.

Per run it prints items/s, Step Functions state transitions per item (the batch execution's own,
the Distributed Map's child per item (one Task state: moto runs map items inline, so it is
counted, not read) and every job execution's, read from their histories), and the cost per
1,000 items: provider calls paid (mock journal) and the AWS orchestration at list prices
(bench/aws_prices.py: transitions, Lambda arm64 GB-s with each invocation's local duration, and
requests; S3 and DynamoDB requests left out), HD redraw status reads per item (mock journal) and
the CPU per item of the whole process tree (the mock's process included) and of this process
alone (moto's server, the interpreter, the bench's client), from /proc: the load average stretches
the seconds, not the CPU. The transitions are counted from the histories in moto's backend in
this process (the events GetExecutionHistory answers, without a request an item after each run).
A ``phases`` line says where the whole bench's wall time went. The summary line is last.

Exits non-zero unless the first run SUCCEEDED with every item's job SUCCEEDED (no fault is
injected here, so no item may fail) and the re-run answered every item from the result cache
with 0 requests to the providers (the mock's journal, every route, paid or not).

Goal (issue 19): at 2,000 items the whole bench (deploy, uploads, both runs) within
GOAL_SECONDS; exits non-zero when over.

``python bench/batch.py [ITEMS]``: 2,000 by default.
"""

from __future__ import annotations

import io
import os
import sys
import time
import uuid
import warnings
from typing import Any

import httpx
from aws_prices import aws_usd, entered, state_transitions
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.stack import ACCOUNT, REGION, LocalStack
from PIL import Image
from throughput import Cpu

from mock_upstream.process import MockProcess
from mock_upstream.testing import MockUpstream

ITEMS = 2000
CAP = 16
GOAL_SECONDS = 600.0  # issue 19: the whole bench (deploy, uploads, both runs) at 2,000 items
OPERATION = "face_enhance"
STATUS_ROUTE = "/api/check_task_status"  # HD redraw's status read (the mock's journal)


def image(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64 + i % 200, 64 + i // 200), (i % 256, (i // 256) % 256, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def entered_states(arns: set[str]) -> int:
    """The billed transitions of these executions (``aws_prices.entered``), read
    from moto's backend in this process: the histories GetExecutionHistory answers, without one
    request an item after each run (~50 ms each under load: minutes of the whole bench)."""
    from moto.stepfunctions.responses import get_backend

    count, found = 0, 0
    for machine in get_backend(ACCOUNT, REGION).state_machines:
        for execution in machine.executions:
            if execution.exec_arn in arns:
                found += 1
                count += entered(execution.to_history_output()["events"])
    if found != len(arns):
        raise RuntimeError(f"{len(arns) - found} of {len(arns)} job executions not found")
    return count


def run(
    stack: LocalStack, api: httpx.Client, mock: MockUpstream, mock_pid: int, prefix: str, items: int
) -> dict[str, Any]:
    assert stack.info is not None
    assert stack.runtime is not None
    sfn = stack.client("stepfunctions")
    paid_before = mock.count(paid=True)
    calls_before = mock.count()
    reads_before = mock.count(route=STATUS_ROUTE)
    invocations_before = len(stack.runtime.invocations)
    cpu_before = Cpu.now(mock_pid)
    started = time.perf_counter()
    answer = api.post("/batches", json={"operation": OPERATION, "prefix": prefix})
    answer.raise_for_status()
    batch_id = answer.json()["batch_id"]
    arn = stack.info.batch_state_machine_arn.replace(":stateMachine:", ":execution:") + f":{batch_id}"
    execution = stack.wait_for_arn(arn, timeout=3600)
    elapsed = time.perf_counter() - started
    cpu = Cpu.now(mock_pid) - cpu_before
    reads = mock.count(route=STATUS_ROUTE) - reads_before
    view = api.get(f"/batches/{batch_id}").json()
    job_arn = stack.info.job_state_machine_arn.replace(":stateMachine:", ":execution:")
    job_transitions = entered_states({f"{job_arn}:{batch_id}-{i}" for i in range(items)})
    map_children = items  # one Task state per item (the Distributed Map's child executions)
    total_transitions = state_transitions(sfn, arn) + map_children + job_transitions
    calls = stack.runtime.invocations[invocations_before:]
    memory = {spec.name: spec.memory_mb for spec in stack.runtime.functions.values()}
    gb_s = sum(max(c.duration, 0.001) * memory[c.function] / 1024 for c in calls)
    aws = aws_usd(total_transitions, len(calls), gb_s)
    return {
        "batch": batch_id,
        "status": execution["status"],
        "succeeded": view["counts"]["SUCCEEDED"],
        "reused": view["reused"],
        "seconds": elapsed,
        "items_per_s": items / elapsed,
        "transitions_per_item": total_transitions / items,
        "status_reads_per_item": reads / items,
        # CPU from /proc (the load does not move it): the whole tree (Lambda workers and the mock
        # included), and this process alone (moto's server and interpreter, the bench's client).
        "cpu_ms_per_item": cpu.total * 1000 / items,
        "moto_cpu_ms_per_item": cpu.moto * 1000 / items,
        "measure_seconds": time.perf_counter() - started - elapsed,  # the histories read after
        "lambda_invocations_per_item": len(calls) / items,
        "provider_calls_per_1000": (mock.count(paid=True) - paid_before) * 1000 / items,
        "provider_requests": mock.count() - calls_before,
        "aws_usd_per_1000": aws * 1000 / items,
    }


def main() -> int:
    os.environ.setdefault("PICFLOW_LOCAL_LOG_LEVEL", "ERROR")
    warnings.filterwarnings("ignore")  # moto's CloudFormation and powertools' shared Metrics
    items = int(sys.argv[1]) if len(sys.argv) > 1 else ITEMS
    began = time.perf_counter()
    # The mock in a process of its own, as the provider is not in the stack's: in this process its
    # requests and renders shared moto's one GIL (~17 % of its busy time in make demo).
    with MockProcess() as server:
        mock = MockUpstream(server.base_url)
        mock.reset()
        # Waits are scaled to 0 here: without this a job polls HD redraw's 3 s status cache
        # (mock time) as fast as the stack answers (throughput.py and the demo do the same).
        mock.configure(hd_status_cache_seconds=0)
        stack = LocalStack(
            server.base_url, parameters={"ProviderConcurrency": f"taskpic=8,tencent=1,hdredraw={CAP}"}
        )
        stack.start()
        phases = {"deploy": time.perf_counter() - began}
        try:
            assert stack.info is not None
            s3 = stack.client("s3")
            prefix = f"batches/bench-{uuid.uuid4().hex[:8]}/"
            for i in range(items):
                s3.put_object(Bucket=stack.info.input_bucket, Key=f"{prefix}{i:05d}.png", Body=image(i))
            phases["uploads"] = time.perf_counter() - began - phases["deploy"]
            with httpx.Client(
                base_url=stack.info.api_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=300
            ) as api:
                assert server.process is not None
                pid = server.process.pid
                rows = {"first run": run(stack, api, mock, pid, prefix, items)}
                rows["re-run (cached)"] = run(stack, api, mock, pid, prefix, items)
        finally:
            stack.stop()
            mock.close()
    wall = time.perf_counter() - began
    print(f"{items} items of {OPERATION} (HD redraw, poll), MaxConcurrency {CAP}, local stack on moto")
    print(f"{'run':<16} {'status':<10} {'ok':>5} {'reused':>6} {'s':>7} {'items/s':>8} "
          f"{'trans/item':>10} {'reads/item':>10} {'λ/item':>7} {'CPU ms/item':>11} {'moto ms':>7} "
          f"{'paid/1k':>8} {'AWS $/1k':>9}")  # fmt: skip
    for name, r in rows.items():
        print(f"{name:<16} {r['status']:<10} {r['succeeded']:>5} {r['reused']:>6} {r['seconds']:>7.1f} "
              f"{r['items_per_s']:>8.2f} {r['transitions_per_item']:>10.1f} "
              f"{r['status_reads_per_item']:>10.1f} "
              f"{r['lambda_invocations_per_item']:>7.1f} {r['cpu_ms_per_item']:>11.0f} "
              f"{r['moto_cpu_ms_per_item']:>7.0f} {r['provider_calls_per_1000']:>8.0f} "
              f"{r['aws_usd_per_1000']:>9.4f}")  # fmt: skip
    # Where the whole bench's wall time went (reading the histories for the transitions is the
    # bench's own measuring, after each run's clock stopped, but inside the whole bench's).
    print(
        f"phases: deploy {phases['deploy']:.1f} s, uploads {phases['uploads']:.1f} s, "
        + ", ".join(
            f"{n} {r['seconds']:.1f} s + {r['measure_seconds']:.1f} s measuring" for n, r in rows.items()
        )
    )
    first, again = rows["first run"], rows["re-run (cached)"]
    checks = {
        "first run SUCCEEDED": first["status"] == "SUCCEEDED",
        f"every first-run item SUCCEEDED ({first['succeeded']}/{items})": first["succeeded"] == items,
        "re-run SUCCEEDED": again["status"] == "SUCCEEDED",
        f"every re-run item reused ({again['reused']}/{items})": again["reused"] == items,
        f"re-run made 0 provider requests ({again['provider_requests']})": again["provider_requests"] == 0,
    }
    if items >= ITEMS:
        checks[f"whole bench {wall:.0f} s <= {GOAL_SECONDS:.0f} s"] = wall <= GOAL_SECONDS
    for check, held in checks.items():
        print(f"{'ok' if held else 'FAILED':<7}{check}")
    ok = all(checks.values())
    print(
        f"SUMMARY items={items} items_per_s={first['items_per_s']:.2f} "
        f"transitions_per_item={first['transitions_per_item']:.1f} "
        f"aws_usd_per_1000={first['aws_usd_per_1000']:.3f} "
        f"provider_calls_per_1000={first['provider_calls_per_1000']:.0f} "
        f"rerun_items_per_s={again['items_per_s']:.2f} "
        f"rerun_aws_usd_per_1000={again['aws_usd_per_1000']:.3f} "
        f"rerun_provider_calls_per_1000={again['provider_calls_per_1000']:.0f} "
        f"wall_s={wall:.0f} load={os.getloadavg()[0]:.2f} "
        f"{'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
