"""Local stack throughput: jobs/s through the real state machine and handlers, mock at zero latency.

Deploys template.yaml into moto (``LocalStack``, waits scaled to 0) with the provider caps raised
to 50, then starts JOBS executions of a poll operation (HD ``face_enhance``) and JOBS of a sync
Tencent ``replace_background`` at once, and times them until every one has ended. A second,
smaller run is profiled by sampling every thread's stack (the Step Functions interpreter, moto's
request threads and the in-process Lambda runtime each run on their own threads; see Sampler for
why not cProfile): the top cumulative entries of our code (layer, handlers, local stack, mock)
and of moto are printed.

Goal: every job SUCCEEDED, and no fall below GOAL_JOBS_PER_S (a regression floor: the issue sets
no number). Exits non-zero when missed.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from picflow_cli.local.stack import LocalStack
from PIL import Image

from mock_upstream.server import ThreadedServer
from mock_upstream.testing import MockUpstream

JOBS = 60  # per kind (`bench/throughput.py 100` for the 100 + 100 run)
PROFILED_JOBS = 15
GOAL_JOBS_PER_S = 1.0  # a floor against regressions (measured ~1.6 on 2 loaded cores)
ROOT = Path(__file__).resolve().parents[1]
OURS = (str(ROOT / "layers"), str(ROOT / "functions"), str(ROOT / "cli"), str(ROOT / "mock_upstream"))
KINDS = {
    "face_enhance (HD, poll)": ("face_enhance", {}, "poll"),
    "replace_background (Tencent, sync)": ("replace_background", {"prompt": "a marble table"}, "sync"),
}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 640), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def run_jobs(stack: LocalStack, count: int) -> dict[str, Any]:
    info = stack.info
    assert info is not None
    s3 = stack.client("s3")
    sfn = stack.client("stepfunctions")
    key = f"uploads/bench-{uuid.uuid4().hex}.png"  # uploads/ starts no job by itself
    s3.put_object(Bucket=info.input_bucket, Key=key, Body=png())
    names: dict[str, list[str]] = {kind: [] for kind in KINDS}
    started = time.perf_counter()
    for index in range(count):
        for kind, (operation, params, mode) in KINDS.items():
            job_id = f"bench-{operation.replace('_', '-')}-{index}-{uuid.uuid4().hex[:8]}"
            request = {
                "job_id": job_id,
                "operation": operation,
                "params": params,
                "mode": mode,
                "input": {"bucket": info.input_bucket, "key": key},
                "source": "bench",
                "reuse": False,  # one image for every job: measure paid jobs, not the result cache
            }
            sfn.start_execution(
                stateMachineArn=info.job_state_machine_arn, name=job_id, input=json.dumps(request)
            )
            names[kind].append(job_id)
    ended: dict[str, dict[str, float]] = {kind: {"ok": 0, "failed": 0, "last": 0.0} for kind in KINDS}
    for kind, jobs in names.items():
        for job_id in jobs:
            execution = stack.wait_for_execution(job_id, timeout=300)
            ended[kind]["ok" if execution["status"] == "SUCCEEDED" else "failed"] += 1
            ended[kind]["last"] = max(ended[kind]["last"], time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    assert stack.runtime is not None
    return {"elapsed": elapsed, "ended": ended, "invocations": len(stack.runtime.invocations)}


class Sampler:
    """A stdlib sampling profiler over every thread: sys._current_frames() every INTERVAL s.

    cProfile cannot follow this workload: since Python 3.12 it sits on sys.monitoring, one
    tool for the whole process, and its single call stack is scrambled by the interpreter's,
    moto's and the runtime's threads interleaving. Sampling all stacks is what pyinstrument
    and py-spy do: "cumulative" is the share of samples in which a function is on a thread's
    stack, "own" the share in which it is on top, both in thread-seconds.
    """

    INTERVAL = 0.005

    def __init__(self) -> None:
        self.cumulative: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    @staticmethod
    def _where(code: Any) -> str:
        short = code.co_filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
        return f"{short}:{code.co_firstlineno}({code.co_name})"

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.INTERVAL):
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                seen: set[str] = set()
                top = True
                current: Any = frame
                while current is not None:
                    where = self._where(current.f_code)
                    if top:
                        self.own[where] += 1
                        top = False
                    if where not in seen:
                        seen.add(where)
                        self.cumulative[where] += 1
                    current = current.f_back

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def top(self, keep: Callable[[str], bool], n: int = 15) -> list[tuple[float, float, str]]:
        idle = ("threading.py", "selectors.py", "socketserver.py", "queue.py")
        rows = [
            (count * self.INTERVAL, self.own[where] * self.INTERVAL, where)
            for where, count in self.cumulative.items()
            if keep(where) and not where.startswith(idle)
        ]
        rows.sort(reverse=True)
        return rows[:n]


def with_stack(body: Callable[[LocalStack], Any]) -> Any:
    with ThreadedServer() as server:
        control = MockUpstream(server.base_url)
        control.configure(hd_status_cache_seconds=0, tencent_processing_seconds=0)
        stack = LocalStack(
            server.base_url, parameters={"ProviderConcurrency": "taskpic=50,tencent=50,hdredraw=50"}
        )
        stack.start()
        try:
            return body(stack)
        finally:
            stack.stop()
            control.reset()
            control.close()


def main() -> int:
    os.environ.setdefault("PICFLOW_LOCAL_LOG_LEVEL", "ERROR")
    # Lambda runs one invocation per container; here they share the handlers' module-level
    # Metrics, so powertools warns about dimensions left by a concurrent invocation.
    warnings.filterwarnings("ignore", message="Dimension .* has already been added")
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else JOBS

    def both(stack: LocalStack) -> tuple[dict[str, Any], dict[str, Any], Sampler]:
        timed = run_jobs(stack, jobs)
        with Sampler() as sampler:  # a second batch on the same (warm) stack, sampled
            profiled = run_jobs(stack, PROFILED_JOBS)
        return timed, profiled, sampler

    timed, profiled, sampler = with_stack(both)

    total = sum(e["ok"] + e["failed"] for e in timed["ended"].values())
    ok = sum(e["ok"] for e in timed["ended"].values())
    rate = total / timed["elapsed"]
    print(f"{'kind':38} {'jobs':>5} {'ok':>5} {'failed':>6} {'all ended after s':>17}")
    for kind, e in timed["ended"].items():
        print(
            f"{kind:38} {e['ok'] + e['failed']:>5.0f} {e['ok']:>5.0f} {e['failed']:>6.0f} {e['last']:>17.1f}"
        )
    print(
        f"\n{total} jobs in {timed['elapsed']:.1f} s = {rate:.2f} jobs/s;"
        f" {timed['invocations']} Lambda invocations"
        f" ({timed['invocations'] / timed['elapsed']:.0f}/s)"
    )
    print(
        f"profiled batch (same warm stack): {sum(e['ok'] + e['failed'] for e in profiled['ended'].values())}"
        f" jobs, {sampler.samples} samples every {Sampler.INTERVAL * 1000:.0f} ms over all threads;"
        " seconds are thread-seconds"
    )

    def ours(where: str) -> bool:
        return where.startswith(("layers/", "functions/", "cli/", "mock_upstream/"))

    def moto(where: str) -> bool:
        return where.startswith("moto/")

    busy = {
        name: sum(n for where, n in sampler.own.items() if keep(where)) * Sampler.INTERVAL
        for name, keep in (("ours", ours), ("moto", moto), ("all", lambda where: True))
    }
    print(
        f"own (top-of-stack) thread-seconds: ours {busy['ours']:.2f}, moto {busy['moto']:.2f},"
        f" everything {busy['all']:.2f} (the rest: botocore, werkzeug, sockets, locks, sleeps)"
    )
    for title, keep in (("our code (layer, handlers, local stack, mock)", ours), ("moto", moto)):
        print(f"\ntop 15 cumulative, {title}:")
        print(f"{'cum s':>8} {'own s':>8}  function")
        for cumulative, own, where in sampler.top(keep):
            print(f"{cumulative:>8.2f} {own:>8.2f}  {where}")

    goal = ok == total and rate >= GOAL_JOBS_PER_S
    verdict = "OK" if goal else "MISSED"
    print(
        f"\nsummary: {rate:.2f} jobs/s ({ok}/{total} succeeded) on the local stack,"
        f" goal >= {GOAL_JOBS_PER_S} jobs/s"
        f" {verdict}"
    )
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
