"""Orchestration guarantees: at-most-once paid submits, the provider cap, callbacks, nesting."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.e2e


def test_duplicated_s3_event_starts_one_job_and_pays_once(system, sample):
    key = system.upload("remove_fabric/in/f.png", sample["image.png"], {})
    execution, _ = system.run(key)
    assert execution["status"] == "SUCCEEDED"
    trigger = system.info.resources["S3TriggerFunction"]
    (first,) = [
        i
        for i in system.stack.runtime.invocations
        if i.function == trigger and quote(key, safe="") in json.dumps(i.event)
    ]

    # S3 delivers at least once: the same event again, through Lambda's own invoke path.
    answer = system.stack.client("lambda").invoke(FunctionName=trigger, Payload=json.dumps(first.event))
    replay = json.loads(answer["Payload"].read())

    assert replay["jobs"][0]["created"] is False
    assert system.job_for_key(key)["job_id"] == replay["jobs"][0]["job_id"]
    assert (
        len(system.sfn.list_executions(stateMachineArn=system.info.job_state_machine_arn)["executions"]) >= 1
    )
    assert system.mock.count(route="/api/submit_remove_fabric_task") == 1


@pytest.mark.slow
def test_ten_tencent_jobs_under_a_cap_of_one_never_overlap_upstream(system, sample):
    # Each ReplaceBackground call takes a while at the mock, so overlapping calls would collide.
    system.mock.configure(tencent_processing_seconds=0.05)
    # Ten different prompts: the same image and params would be paid once (the result cache).
    keys = [
        system.upload("replace_background/in/p.jpg", sample["product.jpg"], {"prompt": f"snow {i}"})
        for i in range(10)
    ]

    outcomes = [system.run(key) for key in keys]

    assert [e["status"] for e, _ in outcomes] == ["SUCCEEDED"] * 10
    calls = system.mock.journal(provider="tencent")
    assert [c for c in calls if c.get("error_code") == "RequestLimitExceeded.JobNumExceed"] == []
    assert system.mock.count(provider="tencent", paid=True) == 10


@pytest.mark.slow
def test_callback_that_never_comes_falls_back_to_polling(system, sample):
    system.mock.configure_callbacks(drop=True)
    with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="1"):
        key = system.upload("segmentation/in/p.jpg", sample["product.jpg"], {})
        execution, job = system.run(key)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert job["style"] == "callback"
    assert job["polls"] >= 1
    assert system.mock.count(route="/task/pic/segmentation") == 1


def test_the_callback_window_is_the_heartbeat_and_the_timeout_leaves_room_for_the_submit(system, sample):
    # No history of segmentation's durations (earlier tests on this stack leave some): the window
    # is then the configured one; with history it is shortened to the operation's own p95.
    semaphore = system.ddb.Table(system.info.resources["SemaphoreTable"])
    semaphore.delete_item(Key={"name": "durations#segmentation"})
    with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="300"):
        key = system.upload("segmentation/in/window.jpg", sample["product.jpg"], {"crop": 1})
        execution, job = system.run(key)

    assert execution["status"] == "SUCCEEDED"
    assert job["style"] == "callback"
    events = system.sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)[
        "events"
    ]
    (scheduled,) = [
        e["taskScheduledEventDetails"]
        for e in events
        if e["type"] == "TaskScheduled" and "waitForTaskToken" in e["taskScheduledEventDetails"]["resource"]
    ]
    # The submit restarts the heartbeat once the provider has the task: the window is counted
    # from then. The hard timeout adds SUBMIT_GRACE (120 s) for the submit itself.
    assert scheduled["heartbeatInSeconds"] == 300
    assert scheduled["timeoutInSeconds"] == 420


@pytest.mark.slow
def test_a_slow_submit_does_not_shorten_the_providers_time_to_call_back(system, sample):
    # GIVEN a 6 s callback window, a submit that takes 3 s, and a provider that calls back 4 s
    # after it accepted the task: 7 s after the wait began, but within 6 s of the submit
    # (the window is a real-time Step Functions timer, so the mock's clock runs in real time too)
    system.mock.inject_fault("latency", route="/task/pic/segmentation", seconds=3, times=1)
    system.mock.configure_callbacks(delay=4)
    system.mock.set_clock(running=True)
    try:
        with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="6"):
            key = system.upload("segmentation/in/slow.jpg", sample["product.jpg"], {"crop": 1})
            execution, job = system.run(key)
    finally:
        system.mock.set_clock(running=False)

    # THEN the callback is taken: the job never fell back to polling
    assert execution["status"] == "SUCCEEDED"
    assert [c["verdict"] for c in job["callbacks"]] == ["accepted"]
    assert job.get("polls", 0) == 0
    events = system.sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)[
        "events"
    ]
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    assert "SeedPoll" not in entered


def test_duplicate_callback_is_refused_and_recorded(system, sample):
    system.mock.configure_callbacks(duplicate=1)
    key = system.upload("segmentation/in/p.jpg", sample["product.jpg"], {})
    execution, job = system.run(key)
    system.mock.flush_callbacks()
    assert execution["status"] == "SUCCEEDED"
    job = system.job(job["job_id"])
    verdicts = [c["verdict"] for c in job["callbacks"]]
    assert verdicts[0] == "accepted"
    assert "duplicate" in verdicts[1:]


def test_pipeline_chains_cutout_background_and_upscale_as_nested_jobs(system, sample):
    key = system.upload("uploads/in/p.jpg", sample["product.jpg"])
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    started = system.sfn.start_execution(
        stateMachineArn=system.info.pipeline_state_machine_arn,
        name=name,
        input=json.dumps(
            {"input": {"bucket": system.info.input_bucket, "key": key}, "prompt": "studio", "upscale": 2}
        ),
    )
    execution = system.stack.wait_for_arn(started["executionArn"], timeout=90)

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    out = json.loads(execution["output"])
    assert out["cutout"]["key"].endswith(".png")
    assert out["background"]["key"] != out["cutout"]["key"]
    assert out["upscale"]["bucket"] == system.info.output_bucket
    # Each step's output object fed the next step.
    assert system.job(out["background"]["job_id"])["input"]["key"] == out["cutout"]["key"]
    assert system.job(out["upscale"]["job_id"])["input"]["key"] == out["background"]["key"]
    assert system.mock.count(paid=True) == 3
