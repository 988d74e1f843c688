"""Real poll jobs on the local stack confirm what bench/polling.py counts: 6 states outside the
poll loop and 2 a status read (WaitToCheck, Check), the done read leaving through Check's
TaskDone Catch straight to Collect (no Choice state a read)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def _states(system: Any, execution_arn: str) -> list[str]:
    events = system.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def test_a_polled_job_costs_6_states_plus_2_a_status_read(system: Any, sample: Any) -> None:
    # GIVEN a task/pic task that stays running for its first three reads (HD redraw's 3 s status
    # cache would hold a 0-scaled local poll loop on one answer)
    system.mock.set_scenario(next=1, polls=3)
    # WHEN a job polls it to the end
    execution, job = system.run(
        system.upload("segmentation/in/p.jpg", sample["product.jpg"], {}, mode="poll")
    )
    assert execution["status"] == "SUCCEEDED", (execution.get("error"), job.get("error"))
    assert job["status"] == "SUCCEEDED"
    # THEN every read is WaitToCheck (FirstWait the first time) and Check, and the done read goes to Collect
    states = _states(system, execution["executionArn"])
    reads = states.count("Check")
    assert reads == int(job["polls"]) >= 2
    assert len(states) == 6 + 2 * reads, states
    assert states[: states.index("Check")] == ["Validate", "Route", "Submit", "AfterSubmit", "FirstWait"]
    assert states[states.index("Check") : -2] == ["Check", *["WaitToCheck", "Check"] * (reads - 1)]
    assert states[-2:] == ["Collect", "Notify"]
