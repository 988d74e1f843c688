"""Polling cost and detection delay: picflow's schedule against fixed and backoff polling.

What is simulated. Each cell is a nominal duration D (5 / 30 / 120 / 600 s), a spread sigma
(0 / 0.2 / 0.5: task durations are log-normal, median D, log standard deviation sigma) and a
history (none: every job starts blind; warm: the operation's history, KEEP durations, as Collect
learns them from earlier jobs of the same distribution, TASKS jobs in a row after WARMUP jobs).
Every task runs on a virtual clock (nothing waits) through the production code: Validate's
first wait (``scaled(first_wait(provider, history))``), then ``picflow.job.check.check`` itself
reading a fake provider (running until the task's end, then done) and returning the next Wait's
seconds, then what Collect records (``task_duration`` into ``MemoryDurationHistory``). The
rounding is production's (``scaled``, PICFLOW_WAIT_SCALE unset). A check at the instant the
task ends sees it done.

Baselines on the same tasks: fixed 5 s and fixed 30 s (the AWS job-poller sample: Wait, Check,
Choice a poll, 3 transitions), exponential backoff (first check 1 s after the submit, then
1 s x 1.5^k capped at 60 s, as a Task Retry: 1 transition a retry, its most favourable form) and
the oracle (one check at the instant the task ends).

Transitions a job are the whole job's (Validate to Notify), counted by walking
statemachine/job.asl.json; the baselines keep picflow's states outside the poll loop. Cost:
transitions + Lambda GB-s (stated billed ms per invocation, memory from template.yaml) +
requests. The bound for a task of duration T: max(2 s, the provider's status cache, 10 % of T)
(``picflow.core.polling.delay_bound``).

Goals (exit 1 on a miss): in every cell >= 99 % of picflow's tasks within the bound (100 % with
no history); warm history, sigma <= 0.5: transitions <= 50 % of fixed 5 s at 120 s and <= 15 %
at 600 s; callback jobs <= 6 transitions; a lost callback noticed within 2x the operation's
p95 duration (warm history: the 95th percentile over tasks of when the poll fallback sees the
task, against 2x the tasks' own p95).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picflow.aws.durations import KEEP, MemoryDurationHistory, recent_for, record_for
from picflow.aws.services import Services
from picflow.core.catalogue import Provider, TaskState, get_operation, validate_params
from picflow.core.polling import callback_window, delay_bound, first_wait, next_wait, scaled, task_duration
from picflow.core.tasks import TaskStatus
from picflow.job.check import check
from picflow_cli.local.stack import load_template

ROOT = Path(__file__).resolve().parents[1]
DURATIONS = (5, 30, 120, 600)
SIGMAS = (0.0, 0.2, 0.5)
HISTORIES = ("none", "warm")
TASKS = 1000  # measured jobs a cell
WARMUP = 2 * KEEP  # jobs that fill the history before a warm cell is measured
SEED = 17
FAMILIES = {"taskpic": "segmentation", "hdredraw": "face_enhance"}  # family -> operation polled
STRATEGIES = ("picflow", "fixed-5s", "fixed-30s", "backoff", "oracle")

# Prices (us-east-1, 2025): Step Functions Standard, Lambda arm64.
USD_PER_TRANSITION = 0.025 / 1000
USD_PER_GB_S = 0.0000133334
USD_PER_REQUEST = 0.20 / 1_000_000

# Stated, not measured: billed duration of one invocation in AWS.
ASSUMED_MS = {
    "validate": 350,  # S3 HEAD + GET of the input, Pillow header parse, DynamoDB writes, the slot
    "submit": 800,  # presign or upload to the provider, DynamoDB claim
    "check": 150,  # one HTTPS status read + DynamoDB ADD, per read
    "callback": 100,  # verify the secret, SendTaskSuccess
    "collect": 1550,  # free the slot, download a few MB, verify, multipart upload, manifest
    "notify": 100,  # EventBridge PutEvents
}


# --- state transitions, from the ASL --------------------------------------------------------


def _lookup(doc: Any, path: str) -> Any:
    for part in path.removeprefix("$.").split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _put(doc: dict[str, Any], path: str | None, value: Any) -> dict[str, Any]:
    if path is None:
        return value if isinstance(value, dict) else doc
    *parents, last = path.removeprefix("$.").split(".")
    target = doc
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    return doc


def walk_asl(asl: dict[str, Any], style: str, checks: int) -> list[str]:
    """The states a successful job enters: ``checks`` Check invocations in poll style. The Check
    that finds the task done raises ``TaskDone`` when Check's Catch names it, else returns done."""
    seen = {"check": 0}

    def result(name: str) -> tuple[Any, str | None]:
        if name == "Validate":
            return {"job": {"style": style}, "cache": {"hit": False}, "slot": {"acquired": True}}, None
        if name == "Submit":
            return {"Payload": {"state": "collected" if style == "sync" else "pending"}}, None
        if name == "SubmitAndAwaitCallback":
            return {"state": "done"}, None
        if name == "Check":
            seen["check"] += 1
            done = seen["check"] >= checks
            # The handler raises TaskDone when done if Check's Catch names it (functions/operations).
            catches = {e for c in asl["States"][name].get("Catch", []) for e in c["ErrorEquals"]}
            if done and "TaskDone" in catches:
                return None, "TaskDone"
            return {"state": "done" if done else "pending"}, None
        return {}, None

    doc: dict[str, Any] = {}
    name = asl["StartAt"]
    path: list[str] = []
    while True:
        path.append(name)
        if len(path) > 100_000:
            raise RuntimeError("the walk does not end")
        state = asl["States"][name]
        kind = state["Type"]
        if kind == "Choice":
            name = state["Default"]
            for rule in state["Choices"]:
                value = _lookup(doc, rule["Variable"])
                if ("StringEquals" in rule and value == rule["StringEquals"]) or (
                    "BooleanEquals" in rule and value is rule["BooleanEquals"]
                ):
                    name = rule["Next"]
                    break
            continue
        if kind in ("Task", "Pass"):
            value, error = result(name)
            if error is not None:
                catch = next(c for c in state["Catch"] if error in c["ErrorEquals"])
                doc = _put(doc, catch.get("ResultPath"), {"Error": error})
                name = catch["Next"]
                continue
            if kind == "Pass" and "Parameters" in state:
                value = {k: v for k, v in state["Parameters"].items() if not k.endswith(".$")}
            doc = _put(doc, state.get("ResultPath"), value)
        if state.get("End") or kind in ("Succeed", "Fail"):
            return path
        name = state["Next"]


@dataclass(frozen=True)
class Shape:
    outside: int  # transitions outside the poll loop (Validate, Route, Submit, ..., Collect, Notify)
    per_check: int  # transitions a Check invocation adds (its Wait, Check, and a Choice if any)

    def transitions(self, checks: int) -> int:
        return self.outside + self.per_check * checks


def poll_shape(asl: dict[str, Any]) -> Shape:
    one, two = len(walk_asl(asl, "poll", 1)), len(walk_asl(asl, "poll", 2))
    return Shape(one - (two - one), two - one)


# --- one job --------------------------------------------------------------------------------


class FakeStore:
    """The JobStore calls Check makes."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def get(self, job_id: str) -> dict[str, Any] | None:
        return self.records.get(job_id)

    def add_polls(self, job_id: str, progress: int | None) -> int:
        record = self.records[job_id]
        record["polls"] = record.get("polls", 0) + 1
        return int(record["polls"])

    def update(self, job_id: str, fields: dict[str, Any]) -> None:
        self.records.setdefault(job_id, {}).update(fields)


EPOCH = 1_700_000_000.0  # the submit, on the virtual clock


class Clock:
    """Seconds since the submit; Check reads them as epoch seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return EPOCH + self.now


class Upstream:
    """A provider whose one task ends at ``ends`` on the virtual clock."""

    def __init__(self, provider: Provider, clock: Clock) -> None:
        self.provider, self.clock, self.ends = provider, clock, 0.0

    def status(self, task_id: str, *, operation: str | None = None) -> TaskStatus:
        done = self.clock.now >= self.ends
        return TaskStatus(self.provider, task_id, TaskState.DONE if done else TaskState.PENDING)


class Providers:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def client(self, provider: Provider) -> Upstream:
        return self.upstream


@dataclass(frozen=True)
class Run:
    checks: int
    delay: float


def run_picflow(svc: Services, clock: Clock, upstream: Upstream, operation: str, duration: float) -> Run:
    """One job: Validate's first wait, then the real Check until done, then what Collect learns."""
    op = get_operation(operation)
    store = svc.store
    assert isinstance(store, FakeStore)
    store.records = {"job": {"provider_task_id": "t-1", "submitted_epoch": EPOCH}}
    clock.now, upstream.ends = 0.0, duration
    state: dict[str, Any] = {
        "job_id": "job",
        "job": {"deadline_at": EPOCH + 1e9, "max_polls": 10**6},
        "poll": {},
    }
    # As Validate: the history of the operation and its params (the operation's while too few).
    params_key = validate_params(op, {}).duration_key()
    clock.now = float(scaled(first_wait(op.provider, recent_for(svc.durations, op.name, params_key))))
    checks = 0
    while True:
        checks += 1
        out = check(operation, state, svc)
        state["poll"] = out
        if out["state"] == "done":
            learned = task_duration(out, clock.now)
            if learned is not None:
                record_for(svc.durations, op.name, params_key, learned)
            return Run(checks, clock.now - duration)
        clock.now += out["wait_seconds"]


def run_grid(first: float, step: Callable[[int, float], float], duration: float) -> Run:
    now, checks = first, 1
    while now < duration:
        now += step(checks, now)
        checks += 1
    return Run(checks, now - duration)


def run_fixed(seconds: int, duration: float) -> Run:
    checks = max(1, math.ceil(duration / seconds))
    return Run(checks, checks * seconds - duration)


def run_backoff(duration: float) -> Run:
    return run_grid(1.0, lambda k, _now: min(60.0, 1.5 ** (k - 1)), duration)


# --- cost -----------------------------------------------------------------------------------


def memory_sizes() -> dict[str, int]:
    template = load_template(ROOT / "template.yaml")
    default = int(template["Globals"]["Function"]["MemorySize"])
    res = template["Resources"]

    def mb(logical_id: str) -> int:
        return int(res[logical_id]["Properties"].get("MemorySize", default))

    return {
        "validate": mb("ValidateFunction"),
        "taskpic": mb("OpSegmentationFunction"),
        "hdredraw": mb("OpFaceEnhanceFunction"),
        "callback": mb("CallbackFunction"),
        "collect": mb("CollectFunction"),
        "notify": mb("NotifyFunction"),
    }


def job_cost(
    mem: dict[str, int], family: str, transitions: float, checks: float, *, callback: bool = False
) -> float:
    """USD a job: transitions + Lambda GB-seconds + Lambda requests."""
    runs = [("validate", "validate"), ("notify", "notify"), (family, "submit"), ("collect", "collect")]
    if callback:
        runs.append(("callback", "callback"))
    gb_s = sum(mem[fn] / 1024 * ASSUMED_MS[step] / 1000 for fn, step in runs)
    gb_s += mem[family] / 1024 * checks * ASSUMED_MS["check"] / 1000
    return transitions * USD_PER_TRANSITION + gb_s * USD_PER_GB_S + (len(runs) + checks) * USD_PER_REQUEST


# --- main -----------------------------------------------------------------------------------


@dataclass
class Cell:
    transitions: float
    cost: float
    mean: float
    p99: float
    max: float
    within: float


def summarise(
    runs: list[Run], durations: list[float], bound: Callable[[float], float], shape: Shape
) -> list[float]:
    delays = sorted(r.delay for r in runs)
    checks = sum(r.checks for r in runs) / len(runs)
    within = sum(r.delay <= bound(d) + 1e-9 for r, d in zip(runs, durations, strict=True)) / len(runs)
    return [shape.transitions(0) + shape.per_check * checks, checks, sum(delays) / len(delays),
            delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)], delays[-1], within]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=TASKS, help="measured jobs a cell")
    parser.add_argument("--families", default=",".join(FAMILIES), help="provider families")
    args = parser.parse_args()
    os.environ.pop("PICFLOW_WAIT_SCALE", None)  # production's whole seconds, on the virtual clock
    asl = json.loads((ROOT / "statemachine" / "job.asl.json").read_text())
    mem = memory_sizes()
    ours = poll_shape(asl)
    sample = Shape(ours.outside, 3)  # the AWS job poller: Wait, Check, Choice a poll
    retry = Shape(ours.outside + 1, 1)  # a Wait, then a Check whose Retry polls: 1 a retry
    callback = len(walk_asl(asl, "callback", 0))
    window = int(load_template(ROOT / "template.yaml")["Parameters"]["CallbackTimeoutSeconds"]["Default"])
    shapes = {"picflow": ours, "fixed-5s": sample, "fixed-30s": sample, "backoff": retry, "oracle": ours}

    failures: list[str] = []
    started = time.process_time()
    print(
        f"Poll jobs on a virtual clock, {args.tasks} tasks a cell (log-normal durations, median D);"
        f" history: none (blind) or warm (last {KEEP} durations as Collect learns them,"
        f" {WARMUP} jobs before the cell)."
    )
    print(
        f"Transitions a job = {ours.outside} outside the poll loop + {ours.per_check} a Check (picflow,"
        f" from job.asl.json); fixed: + 3 a poll; backoff: + 1 + 1 a retry; oracle: picflow's, 1 Check."
    )
    print("bound = max(2 s, status cache, 10 % of the task's duration); delays in s; $ per 1,000 jobs.\n")
    head = (
        f"{'family':8} {'D':>4} {'σ':>3} {'hist':4} {'strategy':9} {'trans/job':>9} {'checks':>7} {'$/1k':>6}"
        f" {'mean':>6} {'p99':>6} {'max':>7} {'in bound':>8}  goal"
    )
    for family in args.families.split(","):
        operation = FAMILIES[family]
        provider = get_operation(operation).provider
        clock = Clock()
        upstream = Upstream(provider, clock)
        print(head)
        print("-" * len(head))
        for nominal in DURATIONS:
            for sigma in SIGMAS:
                for history in HISTORIES:
                    rng = random.Random(f"{SEED}-{family}-{nominal}-{sigma}")
                    durations = [
                        nominal * math.exp(sigma * rng.gauss(0, 1)) for _ in range(WARMUP + args.tasks)
                    ]
                    svc = Services(
                        store=FakeStore(),  # type: ignore[arg-type]
                        providers=Providers(upstream),  # type: ignore[arg-type]
                        durations=MemoryDurationHistory(),
                        clock=clock,
                    )
                    runs: dict[str, list[Run]] = {s: [] for s in STRATEGIES}
                    lost: list[float] = []
                    for k, duration in enumerate(durations):
                        if history == "none":
                            svc._durations = MemoryDurationHistory()
                        recent = recent_for(
                            svc.durations, operation, validate_params(operation, {}).duration_key()
                        )
                        run = run_picflow(svc, clock, upstream, operation, duration)
                        if k < WARMUP:
                            continue
                        lost.append(lost_callback(provider, recent, window, duration))
                        runs["picflow"].append(run)
                        runs["fixed-5s"].append(run_fixed(5, duration))
                        runs["fixed-30s"].append(run_fixed(30, duration))
                        runs["backoff"].append(run_backoff(duration))
                        runs["oracle"].append(Run(1, 0.0))
                    measured = durations[WARMUP:]
                    p95 = sorted(measured)[math.ceil(0.95 * len(measured)) - 1]
                    noticed = sorted(lost)[math.ceil(0.95 * len(lost)) - 1]

                    def bound(d: float, p: Provider = provider) -> float:
                        return delay_bound(p, d)

                    cells = {}
                    for strategy in STRATEGIES:
                        trans, checks, mean, p99, worst, within = summarise(
                            runs[strategy], measured, bound, shapes[strategy]
                        )
                        cost = 1000 * job_cost(mem, family, trans, checks)
                        cells[strategy] = (trans, checks, cost, mean, p99, worst, within)
                    misses = []
                    within = cells["picflow"][6]
                    needed = 1.0 if history == "none" else 0.99
                    if within < needed:
                        misses.append(f"{within:.1%} in bound < {needed:.0%}")
                    ratio = cells["picflow"][0] / cells["fixed-5s"][0]
                    limit = {120: 0.50, 600: 0.15}.get(nominal)
                    if history == "warm" and limit is not None and ratio > limit:
                        misses.append(f"transitions {ratio:.0%} of fixed-5s > {limit:.0%}")
                    if history == "warm" and noticed > 2 * p95:
                        misses.append(f"lost callback p95 {noticed:.0f} s > 2 x p95 {2 * p95:.0f} s")
                    if misses:
                        failures.append(f"{family} D={nominal} σ={sigma} {history}: " + "; ".join(misses))
                    for strategy in STRATEGIES:
                        trans, checks, cost, mean, p99, worst, within = cells[strategy]
                        goal = ""
                        if strategy == "picflow":
                            goal = f"{ratio:.0%} of fixed-5s  " + (
                                "MISSED: " + "; ".join(misses) if misses else "OK"
                            )
                        print(
                            f"{family:8} {nominal:>4} {sigma:>3} {history:4} {strategy:9} {trans:>9.1f}"
                            f" {checks:>7.1f} {cost:>6.2f} {mean:>6.2f} {p99:>6.1f} {worst:>7.1f}"
                            f" {within:>8.1%}  {goal}"
                        )
                    if history == "warm":
                        print(
                            f"{'':31} lost callback (the poll fallback): noticed by {noticed:.0f} s"
                            f" (p95 over tasks) vs the tasks' p95 {p95:.0f} s: {noticed / p95:.2f} x p95"
                        )
                    print()

    print(
        f"Callback jobs: {callback} transitions a job (job.asl.json)"
        f"; $ {1000 * job_cost(mem, 'taskpic', callback, 0, callback=True):.2f} per 1,000 (taskpic)."
    )
    if callback > 6:
        failures.append(f"callback {callback} transitions a job > 6")
    print(f"\n(simulated in {time.process_time() - started:.0f} s CPU)")
    print("goal " + ("OK" if not failures else "MISSED:\n  " + "\n  ".join(failures)))
    return 0 if not failures else 1


def lost_callback(provider: Provider, recent: list[float], window: int, duration: float) -> float:
    """When a lost callback is noticed: the wait's heartbeat (``callback_window`` of the history
    Validate reads) ends, SeedPoll waits the first wait, then Check polls on the schedule."""
    now = float(callback_window(provider, recent, window) + scaled(first_wait(provider, recent)))
    while now < duration:
        now += scaled(next_wait(provider, now, None))
    return now


if __name__ == "__main__":
    sys.exit(main())
