"""Every job ends: each cycle of the job state machine, its Retry loops included, passes a step
that enforces the job's deadline (picflow.core.deadline), and the state machine's TimeoutSeconds
is a backstop longer than the longest deadline plus everything that may run after it.

The graph is read from statemachine/job.asl.json: Next, Default, Choices, Catch, and a Retry as an
edge from a state to itself. The steps that check the deadline are named below with the function
each state runs; the second half of this file proves each of them does raise DeadlineExceededError
once the deadline has passed (and takes no slot, pays nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.core.deadline import SLOT_WAIT_CAP, slot_backoff, wait_within
from picflow.core.errors import DeadlineExceededError
from picflow.core.polling import POLL_CEILING, SUBMIT_GRACE
from picflow.job.check import check
from picflow.job.slot import acquire_slot
from picflow.job.submit import submit
from picflow.job.validate import await_twin
from picflow_cli.local.stack import load_template

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "job.asl.json").read_text())
STATES: dict[str, Any] = ASL["States"]

# State -> the step it runs, each of which calls enforce_deadline (proven below).
DEADLINE_CHECKED = {
    "Twin": "picflow.job.validate.await_twin",
    "AcquireSlot": "picflow.job.slot.acquire_slot",
    "Submit": "picflow.job.submit.submit",
    "SubmitAndAwaitCallback": "picflow.job.submit.submit",
    "Check": "picflow.job.check.check",
}


def _edges(name: str, state: dict[str, Any], *, retries: bool) -> Iterator[str]:
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for choice in state.get("Choices", []):
        yield choice["Next"]
    for catch in state.get("Catch", []):
        yield catch["Next"]
    if retries and state.get("Retry"):
        yield name


def _graph(*, retries: bool) -> dict[str, set[str]]:
    return {name: set(_edges(name, state, retries=retries)) for name, state in STATES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle (the graph is small: a DFS from each node, through larger names only)."""
    found: list[list[str]] = []
    order = sorted(graph)
    for start in order:

        def walk(node: str, path: list[str], start: str = start) -> None:
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append([*path])
                elif nxt > start and nxt not in path:
                    walk(nxt, [*path, nxt])

        walk(start, [start])
    return found


def _retry_worst_seconds(state: dict[str, Any]) -> float:
    """The longest a state's Retry policy can keep it going: every retrier to its last attempt."""
    total = 0.0
    for retrier in state.get("Retry", []):
        interval = float(retrier.get("IntervalSeconds", 1))
        rate = float(retrier.get("BackoffRate", 2.0))
        cap = float(retrier.get("MaxDelaySeconds", 86400))
        attempts = int(retrier.get("MaxAttempts", 3))
        total += sum(min(cap, interval * rate**k) for k in range(attempts))
    return total


def test_every_cycle_of_the_job_workflow_passes_a_deadline_check_retries_included() -> None:
    graph = _graph(retries=True)
    cycles = _cycles(graph)
    # The loops the issue names are all there (a test that found no cycle would prove nothing).
    as_sets = [set(c) for c in cycles]
    for loop in (
        {"Submit", "AfterSubmit", "WaitThrottled"},
        {"SubmitAndAwaitCallback", "AfterCallback", "WaitThrottledCallback"},
        {"Route", "WaitForSlot", "AcquireSlot"},
        {"Route", "WaitForTwin", "Twin"},
        {"WaitToCheck", "Check"},
        {"Submit"},
        {"Check"},
    ):
        assert loop in as_sets, loop

    unchecked = [c for c in cycles if not set(c) & DEADLINE_CHECKED.keys()]
    # What is left is a Retry of one state on no other cycle: bounded by its MaxAttempts, and
    # counted into the backstop below.
    in_loops = {s for c in cycles if len(c) > 1 for s in c}
    for cycle in unchecked:
        assert len(cycle) == 1, f"a loop without a deadline check: {' -> '.join(cycle)}"
        assert cycle[0] not in in_loops
        assert all("MaxAttempts" in r for r in STATES[cycle[0]]["Retry"]), cycle


def test_every_deadline_checked_state_fails_through_the_slot_release() -> None:
    for name in DEADLINE_CHECKED:
        catch_all = [c for c in STATES[name]["Catch"] if "States.ALL" in c["ErrorEquals"]]
        assert [c["Next"] for c in catch_all] == ["ReleaseSlotAfterFailure"], name
    assert STATES["ReleaseSlotAfterFailure"]["Next"] == "RecordFailure"


def _costs() -> dict[str, float]:
    """The longest each state can take once: a Task its function's Timeout per attempt plus its
    Retry delays, a Wait 1 s (cut at the deadline by wait_within), the callback wait its window."""
    template = load_template(ROOT / "template.yaml")
    params = template["Parameters"]
    deadline = int(params["JobDeadlineSeconds"]["MaxValue"])
    default = int(template["Globals"]["Function"]["Timeout"])
    timeouts = {
        logical: int(res["Properties"].get("Timeout", default))
        for logical, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
    }
    operations = max(t for name, t in timeouts.items() if name.startswith("Op"))
    costs: dict[str, float] = {}
    for name, state in STATES.items():
        if state["Type"] == "Task":
            resource = state["Resource"]
            timeout = operations if resource.startswith("arn:") else timeouts[resource[2:-4]]
            costs[name] = timeout * (1 + _attempts(state)) + _retry_worst_seconds(state)
        elif state["Type"] == "Wait":
            costs[name] = 1
        else:
            costs[name] = 0
    costs["SubmitAndAwaitCallback"] += int(params["CallbackTimeoutSeconds"]["MaxValue"]) + SUBMIT_GRACE
    # After a callback that never came (SeedPoll) the first wait is the learned one, not cut:
    # at most a task as long as the deadline plus the polling ceiling.
    costs["WaitToCheck"] = deadline + POLL_CEILING
    return costs


def _longest_after(
    name: str, costs: dict[str, float], graph: dict[str, set[str]], seen: frozenset[str]
) -> float:
    """The longest the execution can run from entering ``name`` past the deadline: a checked
    state entered again raises, so it leaves through its Catch only."""
    state = STATES[name]
    nexts = {c["Next"] for c in state["Catch"]} if name in DEADLINE_CHECKED and seen else graph[name]
    rest = [_longest_after(n, costs, graph, seen | {name}) for n in nexts if n not in seen | {name}]
    return costs[name] + max(rest, default=0.0)


def test_the_state_machine_timeout_is_a_backstop_past_the_longest_deadline_and_what_follows() -> None:
    deadline = int(load_template(ROOT / "template.yaml")["Parameters"]["JobDeadlineSeconds"]["MaxValue"])
    costs, graph = _costs(), _graph(retries=False)
    # The last deadline check passed just before the deadline; the longest the job can go on from there.
    after = max(_longest_after(name, costs, graph, frozenset()) for name in DEADLINE_CHECKED)
    assert after > 0
    assert ASL["TimeoutSeconds"] >= deadline + after, (ASL["TimeoutSeconds"], deadline + after)


def _attempts(state: dict[str, Any]) -> int:
    return sum(int(r.get("MaxAttempts", 3)) for r in state.get("Retry", []))


# --- each checked step raises at the deadline ---------------------------------------------

NOW = 1_700_000_000.0


@dataclass
class FakeSemaphore:
    calls: list[str] = field(default_factory=list)
    free: bool = False

    def acquire(self, name: str, holder: str, cap: int, ttl: float) -> Any:
        from picflow.aws.semaphore import Acquired

        self.calls.append(holder)
        return Acquired(self.free, cap if not self.free else 1, cap)


@dataclass
class FakeRegistry:
    """A provider that must never be called: paying after the deadline fails the test."""

    def client(self, provider: Any) -> Any:
        raise AssertionError("a provider was called after the deadline")


@dataclass
class FakeServices:
    store: JobStore
    semaphore: FakeSemaphore = field(default_factory=FakeSemaphore)
    providers: FakeRegistry = field(default_factory=FakeRegistry)
    clock: Any = field(default=lambda: NOW)


@pytest.fixture
def svc(jobs_table: Any) -> FakeServices:
    store = JobStore(jobs_table)
    store.create({"job_id": "job-1", "operation": "segmentation", "status": "QUEUED"})
    return FakeServices(store)


def _state(deadline_at: float, **extra: Any) -> dict[str, Any]:
    meta = {"provider": "taskpic", "style": "poll", "deadline_at": deadline_at, "max_polls": 200,
            "slot_ttl": 600, "first_wait": 30, "cache_key": "k"}  # fmt: skip
    return {"job_id": "job-1", "operation": "segmentation", "params": {},
            "input": {"bucket": "in", "key": "a.png"}, "job": meta, "reuse": False, **extra}  # fmt: skip


def test_acquire_slot_at_the_deadline_fails_without_taking_a_slot(svc: FakeServices) -> None:
    with pytest.raises(DeadlineExceededError) as caught:
        acquire_slot(_state(NOW), svc)  # type: ignore[arg-type]
    assert caught.value.code == "Deadline"
    assert svc.semaphore.calls == []


def test_acquire_slot_backs_off_while_the_provider_stays_full_and_never_waits_past_the_deadline(
    svc: FakeServices,
) -> None:
    state = _state(NOW + 45)
    waits = []
    for _ in range(6):
        slot = acquire_slot(state, svc)  # type: ignore[arg-type]
        assert slot["acquired"] is False
        waits.append(slot["wait_seconds"])
        state["slot"] = slot
    assert waits == [2, 4, 8, 16, 30, 30]
    near = _state(NOW + 5.5, slot={"tries": 9})
    assert acquire_slot(near, svc)["wait_seconds"] == 6  # type: ignore[arg-type]


def test_slot_backoff_doubles_to_its_cap() -> None:
    assert [slot_backoff(n, 2.0) for n in range(6)] == [2, 4, 8, 16, SLOT_WAIT_CAP, SLOT_WAIT_CAP]
    assert slot_backoff(10_000, 2.0) == SLOT_WAIT_CAP


def test_wait_within_cuts_a_wait_at_just_past_the_deadline() -> None:
    meta = {"deadline_at": NOW + 10.2}
    assert wait_within(meta, NOW, 3600) == 11
    assert wait_within(meta, NOW, 4) == 4
    assert wait_within(meta, NOW + 100, 4) == 0


def test_twin_wait_at_the_deadline_fails(svc: FakeServices) -> None:
    with pytest.raises(DeadlineExceededError):
        await_twin(_state(NOW - 1, cache={"hit": False, "key": "k", "twin": "job-0"}), svc)  # type: ignore[arg-type]


def test_submit_throttled_until_the_deadline_fails_without_paying_and_frees_the_claim(
    svc: FakeServices,
) -> None:
    with pytest.raises(DeadlineExceededError):
        submit("segmentation", _state(NOW - 1), svc=svc)  # type: ignore[arg-type]
    job = svc.store.get("job-1") or {}
    assert "submit_marker" not in job  # nothing was sent: the claim is given back
    assert job["last_error"]["type"] == "DeadlineExceededError"


def test_submit_after_the_deadline_still_follows_a_task_an_earlier_attempt_paid_for(
    svc: FakeServices,
) -> None:
    svc.store.update("job-1", {"provider_task_id": "t-9"})
    out = submit("segmentation", _state(NOW - 1), svc=svc)  # type: ignore[arg-type]
    assert (out["state"], out["task_id"]) == ("pending", "t-9")


def test_check_past_the_deadline_fails(svc: FakeServices) -> None:
    with pytest.raises(DeadlineExceededError):
        check("segmentation", _state(NOW - 1, poll={"state": "pending"}), svc)  # type: ignore[arg-type]


# --- the batch state machine -----------------------------------------------------------------

BATCH = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())
PIPELINE = json.loads((ROOT / "statemachine" / "pipeline.asl.json").read_text())


def _machines(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A machine's States and those of every Map's ItemProcessor and Parallel's branches in it."""
    yield states
    for state in states.values():
        for inner in (state.get("ItemProcessor") or state.get("Iterator") or {},):
            if inner:
                yield from _machines(inner["States"])
        for branch in state.get("Branches", []):
            yield from _machines(branch["States"])


def test_no_state_of_the_batch_workflow_loops_but_by_a_bounded_retry() -> None:
    for states in _machines(BATCH["States"]):
        graph = {name: set(_edges(name, state, retries=True)) for name, state in states.items()}
        for cycle in _cycles(graph):
            assert len(cycle) == 1, f"a batch loop: {' -> '.join(cycle)}"
            assert all("MaxAttempts" in r for r in states[cycle[0]]["Retry"]), cycle


def test_the_batch_timeout_is_a_backstop_past_its_longest_item_and_report() -> None:
    template = load_template(ROOT / "template.yaml")
    default = int(template["Globals"]["Function"]["Timeout"])
    timeouts = {
        logical: int(res["Properties"].get("Timeout", default))
        for logical, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
    }

    def cost(state: dict[str, Any]) -> float:
        resource = str(state.get("Resource", ""))
        if resource.startswith("${"):
            return timeouts[resource[2:-4]] * (1 + _attempts(state)) + _retry_worst_seconds(state)
        if resource.startswith("arn:aws:states:::states:startExecution"):
            # A child job or pipeline: ended by its own backstop at the latest.
            return max(ASL["TimeoutSeconds"], PIPELINE["TimeoutSeconds"]) * (1 + _attempts(state))
        return 0.0

    item = max(sum(cost(s) for s in states.values()) for states in list(_machines(BATCH["States"]))[1:])
    after = sum(cost(s) for s in BATCH["States"].values())
    deadline = int(template["Parameters"]["JobDeadlineSeconds"]["MaxValue"])
    assert "TimeoutSeconds" in BATCH
    assert BATCH["TimeoutSeconds"] > deadline
    assert BATCH["TimeoutSeconds"] >= item + after, (BATCH["TimeoutSeconds"], item + after)
