"""Polling cost and detection delay: picflow's Check and schedule against the job-poller baseline.

Every job is a real upstream task on the mock (scenario ``seconds=d``) on the mock's frozen,
controllable clock: nothing really waits. picflow's own ``picflow.job.check.check`` reads the status
through the real provider clients; for picflow the next wait is the one Check returns, for the
baselines (the AWS job-poller sample: a fixed Wait between status checks) a fixed 5 s or 30 s.
Every wait is a Wait state: no Lambda sleeps while polling.

A task that ends exactly on a baseline's poll grid (30 s, 120 s, 600 s for fixed-30) would be
detected with no delay by luck, so each nominal duration D is run as SAMPLES tasks spread
evenly over 0.9·D..1.1·D; polls, state transitions and delays are means over them (max delay
too). State transitions are counted by walking statemachine/job.asl.json itself.

Goal, for every D and provider family: fewer transitions than fixed-5 s, a lower mean delay
than fixed-30 s, and a max delay <= max(2 s, 10% of D). Callback mode: <= 6 transitions for
the wait itself. Prints the cost per 1,000 jobs; exits non-zero when a goal is missed.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from picflow.aws.durations import MemoryDurationHistory
from picflow.aws.services import Services
from picflow.core.catalogue import Provider
from picflow.core.polling import first_wait, task_duration
from picflow.job.check import check
from picflow.net.http import build_client
from picflow.providers.base import ProviderClient, Secret
from picflow.providers.hdredraw import HdRedrawClient
from picflow.providers.registry import Registry
from picflow.providers.taskpic import TaskPicClient
from picflow_cli.local.stack import load_template
from PIL import Image

from mock_upstream.server import ThreadedServer
from mock_upstream.testing import MockUpstream

ROOT = Path(__file__).resolve().parents[1]
DURATIONS = (5, 30, 120, 600)
SAMPLES = 11  # per nominal duration, spread over 0.9·D..1.1·D
FIXED = (5, 30)

# Prices (us-east-1, 2025): Step Functions Standard, Lambda arm64.
USD_PER_TRANSITION = 0.025 / 1000
USD_PER_GB_S = 0.0000133334
USD_PER_REQUEST = 0.20 / 1_000_000

# Stated, not measured: billed duration of one invocation in AWS.
# Loopback timings say nothing about a real upstream's latency.
ASSUMED_MS = {
    "validate": 350,  # S3 HEAD + GET of the input, Pillow header parse, DynamoDB writes, the slot
    "submit": 800,  # presign or upload to the provider, DynamoDB claim
    "check": 150,  # one HTTPS status read + DynamoDB ADD, per read
    "callback": 100,  # verify the secret, SendTaskSuccess
    "collect": 1550,  # free the slot, download a few MB, verify, multipart upload, manifest
    "notify": 100,  # EventBridge PutEvents
}

FAMILIES = {
    # family -> (operation polled, provider, upstream submit route)
    "taskpic": ("segmentation", Provider.TASKPIC, "/task/pic/segmentation"),
    "hdredraw": ("face_enhance", Provider.HDREDRAW, "/api/submit_face_enhance_task"),
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
    """The states a successful job enters: ``checks`` Check iterations in poll style."""
    seen = {"check": 0}

    def result(name: str) -> Any:
        if name == "Validate":
            return {"job": {"style": style}, "cache": {"hit": False}, "slot": {"acquired": True}}
        if name == "Submit":
            return {"Payload": {"state": "collected" if style == "sync" else "pending"}}
        if name == "SubmitAndAwaitCallback":
            return {"state": "done"}
        if name == "Check":
            seen["check"] += 1
            return {"state": "done" if seen["check"] >= checks else "pending"}
        return {}

    doc: dict[str, Any] = {}
    name = asl["StartAt"]
    path: list[str] = []
    while True:
        path.append(name)
        if len(path) > 10_000:
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
            value = result(name)
            if kind == "Pass" and "Parameters" in state:
                value = {k: v for k, v in state["Parameters"].items() if not k.endswith(".$")}
            doc = _put(doc, state.get("ResultPath"), value)
        if state.get("End") or kind in ("Succeed", "Fail"):
            return path
        name = state["Next"]


@dataclass(frozen=True)
class Shape:
    before: int  # states before the submit state (Validate, Route)
    wait: int  # from the submit state up to (not including) Collect, or Notify for a sync result
    after: int  # Collect (if any), Notify

    @property
    def total(self) -> int:
        return self.before + self.wait + self.after


def shape(asl: dict[str, Any], style: str, checks: int = 0) -> Shape:
    path = walk_asl(asl, style, checks)
    start = next(i for i, n in enumerate(path) if n in ("Submit", "SubmitAndAwaitCallback"))
    end = next(i for i, n in enumerate(path) if n in ("Collect", "Notify"))
    return Shape(start, end - start, len(path) - end)


# --- one job through the real Check ---------------------------------------------------------


class FakeStore:
    """The two JobStore calls Check makes."""

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


class MockClock:
    """The mock's frozen clock, moved only by sleeping."""

    def __init__(self, control: MockUpstream) -> None:
        self.control = control
        control.set_clock(running=False)
        self.now = control.now()
        self.inline = 0.0  # seconds slept inside Check invocations

    def __call__(self) -> float:
        return self.now

    def wait_state(self, seconds: float) -> None:
        if seconds:
            self.now = self.control.advance_clock(seconds)

    def inline_sleep(self, seconds: float) -> None:
        self.inline += seconds
        self.wait_state(seconds)


class MockRegistry(Registry):
    def __init__(self, base_url: str) -> None:
        super().__init__(build_client(base_url))

    def client(self, provider: Provider) -> ProviderClient:
        if provider is Provider.TASKPIC:
            return TaskPicClient(self.http(), Secret("sk-xxxx"))
        return HdRedrawClient(self.http(), Secret("test-key"))


@dataclass(frozen=True)
class Run:
    polls: int  # status reads
    checks: int  # Check invocations (= loop iterations of the state machine)
    delay: float  # seconds from the task's end to the read that saw it
    inline: float  # seconds waited inside Check invocations (billed Lambda time)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def submit(http: httpx.Client, family: str, seconds: float, image: bytes) -> str:
    _, _, route = FAMILIES[family]
    headers = MockUpstream.scenario_header(seconds=seconds)
    if family == "taskpic":
        headers["Authorization"] = "Bearer sk-xxxx"
        answer = http.post(route, headers=headers, files={"image_file": ("i.png", image, "image/png")})
        answer.raise_for_status()
        return str(answer.json()["data"]["task_id"])
    answer = http.post(
        route,
        headers=headers,
        data={"user_key": "test-key"},
        files={"input_image": ("i.png", image, "image/png")},
    )
    answer.raise_for_status()
    return str(answer.json()["task_id"])


def run_job(
    svc: Services,
    clock: MockClock,
    http: httpx.Client,
    family: str,
    seconds: float,
    fixed: int | None,
) -> Run:
    operation, provider, _ = FAMILIES[family]
    task_id = submit(http, family, seconds, IMAGE)
    began = clock()
    job_id = uuid.uuid4().hex
    store = svc.store
    assert isinstance(store, FakeStore)
    store.records[job_id] = {"provider_task_id": task_id, "submitted_epoch": began}
    state: dict[str, Any] = {
        "job_id": job_id,
        "job": {"deadline_at": began + 10**6, "max_polls": 10**6},
        "poll": {"errors": 0},
    }
    clock.inline = 0.0
    first = first_wait(provider, svc.durations.recent(operation))
    clock.wait_state(fixed if fixed is not None else first)
    checks = 0
    while True:
        checks += 1
        out = check(operation, state, svc)
        state["poll"] = out
        if out["state"] == "done":
            learned = task_duration(out, clock() - began)
            if fixed is None and learned is not None:  # what Collect records for the next job
                svc.durations.record(operation, learned)
            return Run(int(out["polls"]), checks, clock() - began - seconds, clock.inline)
        clock.wait_state(fixed if fixed is not None else out["wait_seconds"])


IMAGE = png()
# A fixed shuffle of the spread: durations do not arrive sorted.
ORDER = [5, 0, 9, 3, 7, 1, 10, 4, 8, 2, 6]


# --- cost -----------------------------------------------------------------------------------


def memory_sizes() -> dict[str, int]:
    template = load_template(ROOT / "template.yaml")
    default = int(template["Globals"]["Function"]["MemorySize"])
    res = template["Resources"]

    def mb(logical_id: str) -> int:
        return int(res[logical_id]["Properties"].get("MemorySize", default))

    return {
        "validate": mb("ValidateFunction"),
        "slot": mb("SlotFunction"),
        "taskpic": mb("OpSegmentationFunction"),
        "hdredraw": mb("OpFaceEnhanceFunction"),
        "tencent": mb("OpReplaceBackgroundFunction"),
        "callback": mb("CallbackFunction"),
        "collect": mb("CollectFunction"),
        "notify": mb("NotifyFunction"),
    }


def job_cost(
    mem: dict[str, int],
    family: str,
    transitions: float,
    checks: float,
    polls: float,
    inline: float,
    *,
    callback: bool = False,
    sync_seconds: float | None = None,
) -> float:
    """USD per job: transitions + Lambda GB-seconds + Lambda requests."""
    invocations: list[tuple[str, float]] = [
        # Validate takes the provider slot and Collect (or a sync Submit) frees it: the Slot
        # function runs only while a provider is full.
        ("validate", ASSUMED_MS["validate"] / 1000),
        ("notify", ASSUMED_MS["notify"] / 1000),
    ]
    submit_s = ASSUMED_MS["submit"] / 1000
    if sync_seconds is not None:
        # The submit waits for the answer and collects it in the same invocation.
        invocations.append((family, submit_s + sync_seconds + ASSUMED_MS["collect"] / 1000))
    else:
        invocations.append((family, submit_s))
        invocations.append(("collect", ASSUMED_MS["collect"] / 1000))
    if callback:
        invocations.append(("callback", ASSUMED_MS["callback"] / 1000))
    gb_s = sum(mem[fn] / 1024 * s for fn, s in invocations)
    requests = len(invocations)
    if checks:
        gb_s += mem[family] / 1024 * (polls * ASSUMED_MS["check"] / 1000 + inline)
        requests += checks
    return transitions * USD_PER_TRANSITION + gb_s * USD_PER_GB_S + requests * USD_PER_REQUEST


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    os.environ.pop("PICFLOW_WAIT_SCALE", None)  # real waits, on the mock's virtual clock
    asl = json.loads((ROOT / "statemachine" / "job.asl.json").read_text())
    mem = memory_sizes()
    poll0 = shape(asl, "poll", 1)
    per_check = shape(asl, "poll", 2).total - poll0.total
    callback = shape(asl, "callback")
    sync = shape(asl, "sync")

    failures: list[str] = []
    rows: dict[tuple[str, str, int], dict[str, float]] = {}
    with ThreadedServer() as server:
        control = MockUpstream(server.base_url)
        clock = MockClock(control)
        svc = Services(
            store=FakeStore(),  # type: ignore[arg-type]
            providers=MockRegistry(server.base_url),
            clock=clock,
        )
        http = httpx.Client(base_url=server.base_url, timeout=10.0, trust_env=False)
        for family in FAMILIES:
            for nominal in DURATIONS:
                # An operation whose tasks take about D: its history starts empty (the first
                # job polls blind) and is learned from its own jobs, in a shuffled order.
                svc._durations = MemoryDurationHistory()
                spread = [nominal * (0.9 + 0.2 * k / (SAMPLES - 1)) for k in ORDER]
                for strategy, fixed in (("picflow", None), ("fixed-5s", 5), ("fixed-30s", 30)):
                    runs = [run_job(svc, clock, http, family, d, fixed) for d in spread]
                    checks = statistics.mean(r.checks for r in runs)
                    transitions = poll0.total + per_check * (checks - 1)
                    polls = statistics.mean(r.polls for r in runs)
                    inline = statistics.mean(r.inline for r in runs)
                    rows[family, strategy, nominal] = {
                        "polls": polls,
                        "checks": checks,
                        "transitions": transitions,
                        "delay": statistics.mean(r.delay for r in runs),
                        "max_delay": max(r.delay for r in runs),
                        "inline": inline,
                        "cost": 1000 * job_cost(mem, family, transitions, checks, polls, inline),
                    }
        control.reset()
        control.close()
        http.close()

    print(f"Poll mode, {SAMPLES} tasks per duration spread over 0.9·D..1.1·D, means (max delay too).")
    print(
        f"Transitions per job = {poll0.total - per_check} fixed + {per_check} per Check invocation"
        f" (WaitToCheck, Check, Finished), from job.asl.json.\n"
    )
    header = (
        f"{'family':9} {'D s':>4} {'strategy':10} {'reads':>6} {'checks':>6} {'transitions':>11}"
        f" {'delay s':>7} {'max':>6} {'inline s':>8} {'$/1k jobs':>9}  goal"
    )
    print(header)
    print("-" * len(header))
    for family in FAMILIES:
        for nominal in DURATIONS:
            ours = rows[family, "picflow", nominal]
            five = rows[family, "fixed-5s", nominal]
            thirty = rows[family, "fixed-30s", nominal]
            bound = max(2.0, 0.1 * nominal)
            misses = []
            if not ours["transitions"] < five["transitions"]:
                misses.append("transitions >= fixed-5s")
            if not ours["delay"] < thirty["delay"]:
                misses.append("delay >= fixed-30s")
            if not ours["max_delay"] <= bound:
                misses.append(f"max delay > {bound:g} s")
            if misses:
                failures.append(f"{family} {nominal}s: " + ", ".join(misses))
            for strategy in ("picflow", "fixed-5s", "fixed-30s"):
                r = rows[family, strategy, nominal]
                verdict = (
                    ("MISSED: " + "; ".join(misses) if misses else "OK") if strategy == "picflow" else ""
                )
                print(
                    f"{family:9} {nominal:>4} {strategy:10} {r['polls']:>6.1f} {r['checks']:>6.1f}"
                    f" {r['transitions']:>11.1f} {r['delay']:>7.2f} {r['max_delay']:>6.2f}"
                    f" {r['inline']:>8.1f} {r['cost']:>9.2f}  {verdict}"
                )
        print()

    print("Callback and sync modes (transitions from job.asl.json; no polling):")
    print(
        f"  callback: {callback.total} per job = {callback.before} before the submit + {callback.wait}"
        f" for the wait itself (SubmitAndAwaitCallback, AfterCallback) + {callback.after} after"
        f" (Collect, Notify); detection = the provider's callback delivery, not simulated here"
    )
    print(
        f"  sync:     {sync.total} per job = {sync.before} + {sync.wait} (Submit, AfterSubmit) + {sync.after}"
    )
    if callback.total > 6:
        failures.append(f"callback {callback.total} transitions per job > 6")
    print()
    print(
        "Cost per 1,000 jobs, USD (transitions $0.025/1k + Lambda arm64 $0.0000133334/GB-s"
        " + $0.20/M requests)"
    )
    print("memory MB: " + ", ".join(f"{k} {v}" for k, v in mem.items()))
    print("assumed billed ms per invocation: " + ", ".join(f"{k} {v}" for k, v in ASSUMED_MS.items()))
    print("  (+ the inline waits of picflow's Check, counted exactly; sync submits also bill the task's D)")
    head = f"{'family':9} {'mode':16} " + " ".join(f"{f'D={d}s':>9}" for d in DURATIONS)
    print(head)
    print("-" * len(head))
    for family in FAMILIES:
        for strategy in ("picflow", "fixed-5s", "fixed-30s"):
            cells = " ".join(f"{rows[family, strategy, d]['cost']:>9.2f}" for d in DURATIONS)
            print(f"{family:9} {'poll ' + strategy:16} {cells}")
    callback_cost = 1000 * job_cost(mem, "taskpic", callback.total, 0, 0, 0, callback=True)
    print(f"{'taskpic':9} {'callback':16} " + " ".join(f"{callback_cost:>9.2f}" for _ in DURATIONS))
    for family in ("taskpic", "tencent"):
        cells = " ".join(
            f"{1000 * job_cost(mem, family, sync.total, 0, 0, 0, sync_seconds=d):>9.2f}"
            if d < 30
            else f"{'n/a':>9}"
            for d in DURATIONS
        )
        print(f"{family:9} {'sync':16} {cells}")
    print("  (sync: n/a where the task outlives the 30 s function timeout)")
    print()

    worst = {
        family: max(
            rows[family, "picflow", d]["transitions"] / rows[family, "fixed-5s", d]["transitions"]
            for d in DURATIONS
        )
        for family in FAMILIES
    }
    verdict = "OK" if not failures else "MISSED (" + "; ".join(failures) + ")"
    print(
        f"summary: poll transitions <= {max(worst.values()):.0%} of fixed-5s,"
        f" picflow 600 s delay {rows['hdredraw', 'picflow', 600]['delay']:.1f} s vs fixed-30s"
        f" {rows['hdredraw', 'fixed-30s', 600]['delay']:.1f} s, callback {callback.total} transitions/job,"
        f" sync {sync.total}, goal {verdict}"
    )
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
