"""Every job ends (issue 15, finding 1): a provider that throttles forever, or a slot that never
frees, ends the job FAILED DeadlineExceededError at its deadline, its slot released, nothing paid.

The deadline is a few seconds here (PICFLOW_JOB_DEADLINE); the local stack's waits are scaled to 0,
so before the deadline checks these jobs looped until the execution history's 25,000-event limit.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

pytestmark = pytest.mark.e2e


def _holders(system, provider: str) -> dict:
    table = system.ddb.Table(system.info.resources["SemaphoreTable"])
    return (table.get_item(Key={"name": provider}).get("Item") or {}).get("holders", {})


@pytest.mark.slow
def test_a_submit_throttled_forever_fails_at_the_deadline_paid_nothing_slot_released(system, sample):
    # GIVEN task/pic answers every submit 429 + Retry-After, without end
    system.mock.inject_fault("rate_limit", route="/api/submit_task", retry_after=1, times=None)
    with system.stack.function_environment(PICFLOW_JOB_DEADLINE="4"):
        key = system.upload("redraw/in/i.png", sample["image.png"], {})
        execution, job = system.run(key)

    # THEN the job ends at its deadline, typed, with nothing paid and its slot free again
    assert execution["status"] == "FAILED", execution
    assert (job["status"], job["error"]["type"], job["error"]["code"]) == (
        "FAILED", "DeadlineExceededError", "Deadline",
    )  # fmt: skip
    assert system.mock.count(route="/api/submit_task") >= 1
    assert system.mock.count(route="/api/submit_task", paid=True) == 0
    assert str(job["job_id"]) not in _holders(system, "taskpic")


def test_a_slot_that_never_frees_fails_the_waiting_job_at_its_deadline(system, sample):
    # GIVEN every Tencent slot (cap 1) is held by a job that never ends
    table = system.ddb.Table(system.info.resources["SemaphoreTable"])

    table.put_item(Item={"name": "tencent", "holders": {"stuck-job": Decimal("9999999999")}, "version": 1})
    paid = system.mock.count(paid=True)
    try:
        with system.stack.function_environment(PICFLOW_JOB_DEADLINE="3"):
            key = system.upload("replace_background/in/i.png", sample["image.png"], {"prompt": "snow"})
            execution, job = system.run(key)
    finally:
        table.delete_item(Key={"name": "tencent"})

    assert execution["status"] == "FAILED", execution
    # (the Slot function may not write the jobs table: RecordFailure types it from the Catch)
    assert job["error"]["type"] == "DeadlineExceededError", job["error"]
    assert "deadline while waiting for a provider slot" in job["error"]["message"]
    assert system.mock.count(paid=True) == paid
