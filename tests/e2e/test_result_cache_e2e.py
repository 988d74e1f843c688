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
