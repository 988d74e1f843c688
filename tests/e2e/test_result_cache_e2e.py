"""The result cache through the whole stack: the same image, operation and params are paid once."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_same_image_operation_and_params_again_reuses_the_results_and_pays_nothing(system, sample):
    # GIVEN one paid job
    first = system.upload("remove_fabric/in/a.png", sample["image.png"], {})
    execution, job = system.run(first)
    assert execution["status"] == "SUCCEEDED"
    assert system.mock.count(paid=True) == 1

    # WHEN the same image goes through the same operation again, under another key
    second = system.upload("remove_fabric/in/b.png", sample["image.png"], {})
    execution2, job2 = system.run(second)

    # THEN it succeeds from the earlier results, with copies of its own, and nothing is paid
    assert execution2["status"] == "SUCCEEDED"
    assert json.loads(execution2["output"])["reused"] is True
    assert job2["reused"] is True
    assert job2["reused_from"] == job["job_id"]
    assert job2["cost_units"] == 0
    assert system.mock.count(paid=True) == 1
    (old,) = job["manifest"]["outputs"]
    (new,) = job2["manifest"]["outputs"]
    assert new["key"] != old["key"]
    assert system.output(new["key"]) == system.output(old["key"])
    manifest = json.loads(system.output(job2["manifest"]["key"]))
    assert manifest["reused_from"] == job["job_id"]
    states = [
        e["stateEnteredEventDetails"]["name"]
        for e in system.sfn.get_execution_history(executionArn=execution2["executionArn"])["events"]
        if "stateEnteredEventDetails" in e
    ]
    assert "AcquireSlot" not in states
    assert "Reuse" in states


def test_other_params_or_another_image_are_paid_for(system, sample):
    system.run(system.upload("vectorize/in/a.png", sample["image.png"], {"color_count": 5}))
    system.run(system.upload("vectorize/in/b.png", sample["image.png"], {"color_count": 6}))
    other_image = system.upload("vectorize/in/c.jpg", sample["product.jpg"], {"color_count": 5})
    execution, job = system.run(other_image)

    assert execution["status"] == "SUCCEEDED"
    assert not job.get("reused")
    assert system.mock.count(paid=True) == 3


def test_defaults_spelt_out_are_the_same_params(system, sample):
    system.run(system.upload("vectorize/in/a.png", sample["image.png"], {}))
    _, job = system.run(system.upload("vectorize/in/b.png", sample["image.png"], {"color_count": 5}))

    assert job["reused"] is True
    assert system.mock.count(paid=True) == 1


def _states(system, execution) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in system.sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)[
            "events"
        ]
        if "stateEnteredEventDetails" in e
    ]


def _one_waits_on_the_other(system, keys: list[str]) -> None:
    """One job has submitted its task, the other is in the twin wait (whichever claimed second)."""
    jobs = [str(system.job_for_key(k)["job_id"]) for k in keys]
    arn = system.info.job_state_machine_arn.replace(":stateMachine:", ":execution:")

    def waiting() -> bool:
        states = []
        for job in jobs:
            try:
                states += _states(system, {"executionArn": f"{arn}:{job}"})
            except system.sfn.exceptions.ExecutionDoesNotExist:
                return False
        submitted = any(system.job(job).get("provider_task_id") for job in jobs)
        return submitted and "WaitForTwin" in states

    system.stack.wait_until(waiting, timeout=30)


def test_two_identical_jobs_at_once_pay_once_the_second_waits_for_the_first(system, sample):
    # GIVEN a task that runs until the test moves the mock's clock, and the same image uploaded twice
    system.mock.set_scenario(seconds=3600)
    keys = [system.upload(f"face_enhance/twins/{n}.png", sample["image.png"], {}) for n in "ab"]
    _one_waits_on_the_other(system, keys)

    # WHEN the paying job's task ends
    system.mock.advance_clock(3600)
    outcomes = [system.run(key) for key in keys]

    # THEN both succeed, the provider is paid once, and one job reused the other's results
    assert [e["status"] for e, _ in outcomes] == ["SUCCEEDED", "SUCCEEDED"]
    assert system.mock.count(paid=True) == 1
    (paid,) = [(e, j) for e, j in outcomes if not j.get("reused")]
    (twin,) = [(e, j) for e, j in outcomes if j.get("reused")]
    assert twin[1]["reused_from"] == paid[1]["job_id"]
    states = _states(system, twin[0])
    assert "WaitForTwin" in states  # it waited on the paying job, not on a finished entry
    assert "Submit" not in states
    assert system.output(twin[1]["manifest"]["outputs"][0]["key"]) == system.output(
        paid[1]["manifest"]["outputs"][0]["key"]
    )


def test_a_twin_whose_first_fails_goes_on_and_pays_itself(system, sample):
    # GIVEN the first of two identical jobs fails upstream while the second waits on it
    system.mock.set_scenario(next=1, seconds=3600, outcome="failure")
    keys = [system.upload(f"face_enhance/twins/{n}.png", sample["image.png"], {}) for n in "ab"]
    _one_waits_on_the_other(system, keys)

    system.mock.advance_clock(3600)
    outcomes = [system.run(key) for key in keys]

    # THEN the failure frees the claim: the other job submits on its own and succeeds
    statuses = sorted(e["status"] for e, _ in outcomes)
    assert statuses == ["FAILED", "SUCCEEDED"]
    assert system.mock.count(paid=True) == 2
    (survivor,) = [(e, j) for e, j in outcomes if e["status"] == "SUCCEEDED"]
    assert not survivor[1].get("reused")
    assert "WaitForTwin" in _states(system, survivor[0])
