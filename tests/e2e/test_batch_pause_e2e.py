"""Pausing and resuming a batch through the API front door: items in flight when the pause
lands finish and are paid once, items not started end paused and are paid nothing, and the
resume runs only the rest. Tasks are held at the mock (a 3600 s scenario) until the test moves
its clock, so "in flight" is a fact, not a timing."""

from __future__ import annotations

import json
import uuid

import batch_support as support
import pytest

pytestmark = pytest.mark.e2e

ITEMS = 12
CONCURRENCY = 3


def _submitted(system, job_ids: list[str]) -> list[str]:
    """The jobs among ``job_ids`` whose provider has accepted (and billed) their task."""
    table = system.ddb.Table(system.info.resources["JobsTable"])
    found = []
    for job_id in job_ids:
        item = table.get_item(Key={"job_id": job_id}).get("Item")
        if item and item.get("provider_task_id"):
            found.append(job_id)
    return found


def _states(system, execution_arn: str) -> list[str]:
    events = system.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


@pytest.mark.slow
def test_pause_drains_in_flight_items_ends_the_rest_unpaid_and_resume_runs_only_the_rest(system, api):
    # GIVEN 12 different images, at most 3 in flight, and provider tasks held until the clock moves
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, ITEMS, prefix, tint=(120, 40))
    system.mock.set_scenario(seconds=3600)
    started = api.post(
        "/batches",
        json={"operation": "remove_fabric", "prefix": prefix, "max_concurrency": CONCURRENCY},
    )
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    jobs = [f"{batch_id}-{i}" for i in range(ITEMS)]

    def all_in_flight() -> list[str] | None:
        found = _submitted(system, jobs)
        return found if len(found) == CONCURRENCY else None

    in_flight = system.stack.wait_until(all_in_flight, timeout=60)

    # WHEN the batch is paused while those three are in flight, and then their tasks end
    paused = api.post(f"/batches/{batch_id}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "RUNNING"
    assert api.post(f"/batches/{batch_id}/pause").json()["paused_at"] == paused.json()["paused_at"]
    system.mock.clear_scenarios()
    system.mock.advance_clock(3600)
    execution, view = support.finish(system, api, batch_id)

    # THEN the batch ends (it did not fail: a paused item is no failure) and shows paused
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert view["paused"] is True
    assert view["counts"]["SUCCEEDED"] == CONCURRENCY
    assert view["counts"]["CANCELLED"] == ITEMS - CONCURRENCY
    assert view["counts"]["NOT_STARTED"] == 0
    assert view["cost"] == {"units": CONCURRENCY, "unit": "hdredraw.call"}
    report = json.loads(execution["output"])["report"]
    assert (report["paused"], report["paused_items"]) == (True, ITEMS - CONCURRENCY)
    # AND the in-flight items were collected and paid once; the others paid nothing
    assert system.mock.count(paid=True) == CONCURRENCY
    results = support.results(system, view)
    done = [r for r in results if r["status"] == "SUCCEEDED"]
    assert sorted(r["job_id"] for r in done) == sorted(in_flight)
    assert all(r["outputs"] and r["outputs"][0]["sha256"] for r in done)
    stopped = [r for r in results if r["status"] != "SUCCEEDED"]
    assert {r["status"] for r in stopped} == {"CANCELLED"}
    assert {r["error"]["type"] for r in stopped} == {"BatchPaused"}
    # AND a paused item's job execution succeeded after three states, one Lambda invocation
    arn = system.info.job_state_machine_arn.replace(":stateMachine:", ":execution:")
    paused_job = stopped[0]["job_id"]
    assert system.sfn.describe_execution(executionArn=f"{arn}:{paused_job}")["status"] == "SUCCEEDED"
    assert _states(system, f"{arn}:{paused_job}") == ["Validate", "Route", "Paused"]

    # WHEN the ended batch is resumed
    resumed = api.post(f"/batches/{batch_id}/resume")
    assert resumed.status_code == 202, resumed.text
    new_id = resumed.json()["batch_id"]
    assert (new_id, resumed.json()["total"], resumed.json()["resumed_from"]) == (
        f"{batch_id}-r1",
        ITEMS - CONCURRENCY,
        batch_id,
    )
    execution2, view2 = support.finish(system, api, new_id)

    # THEN it ran only the items that had not succeeded, and every image is paid exactly once
    assert execution2["status"] == "SUCCEEDED", execution2.get("cause")
    assert (view2["total"], view2["counts"]["SUCCEEDED"], view2["reused"]) == (ITEMS - CONCURRENCY,) * 2 + (
        0,
    )
    assert (view2["resumed_from"], view2["paused"]) == (batch_id, False)
    results2 = support.results(system, view2)
    assert sorted(r["index"] for r in results2) == sorted(r["index"] for r in stopped)
    assert sorted(r["input"]["key"] for r in [*done, *results2]) == sorted(keys)
    assert all(r["outputs"] and not r["reused"] for r in results2)
    assert system.mock.count(paid=True) == ITEMS


def test_pause_of_a_pipeline_batch_finishes_the_started_item_and_ends_the_others_at_their_cutout(system, api):
    # GIVEN three images through the pipeline, one item at a time, its tasks held at the mock
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    support.images(system, 3, prefix, tint=(120, 40))
    system.mock.set_scenario(seconds=3600)
    body = {"operation": "pipeline", "params": {"prompt": "studio"}, "prefix": prefix, "max_concurrency": 1}
    started = api.post("/batches", json=body)
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    cutouts = [f"{batch_id}-{i}-cutout" for i in range(3)]
    (first,) = system.stack.wait_until(lambda: _submitted(system, cutouts), timeout=60)

    # WHEN the batch is paused with one cutout in flight, then that task ends
    assert api.post(f"/batches/{batch_id}/pause").status_code == 200
    system.mock.clear_scenarios()
    system.mock.advance_clock(3600)
    execution, view = support.finish(system, api, batch_id)

    # THEN the started item ran all three steps (its later steps do not pause), the others none
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert view["paused"] is True
    assert (view["counts"]["SUCCEEDED"], view["counts"]["CANCELLED"]) == (1, 2)
    results = support.results(system, view)
    (done,) = [r for r in results if r["status"] == "SUCCEEDED"]
    assert done["steps"][0] == first
    assert len(done["steps"]) == 3
    for line in (r for r in results if r["status"] != "SUCCEEDED"):
        assert line["steps"] == [line["job_id"]]
        assert line["job_id"].endswith("-cutout")
        assert line["error"]["type"] == "BatchPaused"
    assert system.mock.count(paid=True) == 3  # the started item's three steps, once each
    # AND a paused item's pipeline ended at Paused without failing
    arn = system.info.pipeline_state_machine_arn.replace(":stateMachine:", ":execution:")
    item = next(r for r in results if r["status"] != "SUCCEEDED")["job_id"].removesuffix("-cutout")
    assert _states(system, f"{arn}:{item}")[-2:] == ["Started", "Paused"]
