"""The local stack's waits give up on no progress, not at a fixed length (issue 15, finding 8):
under load a job advancing slowly outlives the nominal wait; a wait that sees nothing happen ends
with one line."""

from __future__ import annotations

import time

import pytest
from picflow_cli.waiting import WaitTimeoutError

pytestmark = pytest.mark.e2e


def test_a_wait_on_an_advancing_job_outlives_its_no_progress_limit(system, sample):
    # GIVEN a polled job whose task ends only at its 12th status read: a dozen Lambda invocations
    system.mock.set_scenario(polls=12)
    key = system.upload("segmentation/in/slow.jpg", sample["product.jpg"], {"crop": 1}, mode="poll")
    job = system.stack.wait_until(lambda: _job(system, key), timeout=30)
    # WHEN waiting with a no-progress limit shorter than the whole job takes
    started = time.monotonic()
    execution = system.stack.wait_for_execution(str(job["job_id"]), timeout=0.75)
    # THEN the wait lasted past that limit and saw the job end
    assert execution["status"] == "SUCCEEDED"
    assert time.monotonic() - started > 0.75


def test_a_wait_that_sees_nothing_happen_ends_with_one_line(system):
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        system.stack.wait_for_execution("no-such-execution", timeout=1.0, cap=60)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("execution no-such-execution still PENDING: nothing changed for 1 s")


def _job(system, key):
    table = system.ddb.Table(system.info.resources["JobsTable"])
    items = [i for i in table.scan()["Items"] if i.get("input", {}).get("key") == key]
    return items[0] if items else None
