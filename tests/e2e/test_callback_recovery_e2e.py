"""Paid results a callback still brings are not lost (issue 15, finding 4).

task/pic calls a submit's ``callback_url`` when the task ends, its body the task's status answer
(task_id, state, the result URLs). Two ways a job used to lose such a paid result:

- a callback that came after the job's callback wait had timed out was refused by Step Functions
  (the token had expired) and dropped; a job whose status reads then failed ended FAILED;
- a submit whose answer was lost (cut or unreadable after the provider took the task) failed the
  job OutcomeUnknownError at once, though the provider's callback names the task later.
"""

from __future__ import annotations

import hashlib

import pytest

pytestmark = pytest.mark.e2e

SEGMENTATION = "/task/pic/segmentation"


def _fresh_history(system) -> None:
    # The callback window and first wait come from segmentation's duration history when there is
    # some (earlier tests on this stack leave it): start from none, so the configured ones hold.
    semaphore = system.ddb.Table(system.info.resources["SemaphoreTable"])
    semaphore.delete_item(Key={"name": "durations#segmentation"})


def _stored_is_what_the_mock_served(system, job) -> None:
    (paid,) = system.mock.journal(route=SEGMENTATION, paid=True)
    assert job["provider_task_id"] == paid["task_id"]
    served = {
        e["result_sha256"]
        for e in system.mock.journal(provider="files")
        if paid["task_id"] in str(e.get("path")) and e.get("status") == 200
    }
    for out in job["manifest"]["outputs"]:
        data = system.output(out["key"])
        assert hashlib.sha256(data).hexdigest() == out["sha256"]
        assert out["sha256"] in served


@pytest.mark.slow
def test_a_callback_after_the_wait_timed_out_finishes_a_job_whose_status_reads_all_fail(system, sample):
    # GIVEN a 1 s callback window, a provider that calls back 4 s after the task ended, and status
    # reads that all fail (503): polling alone cannot finish this job
    _fresh_history(system)
    system.mock.inject_fault("http_status", route="/task/*", method="GET", status=503, times=None)
    system.mock.configure_callbacks(delay=4)
    system.mock.set_clock(running=True)
    try:
        # Waits at their real length (2 s a failed read): 8 failed reads take > 16 s.
        with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="1", PICFLOW_WAIT_SCALE="1"):
            key = system.upload("segmentation/in/late.jpg", sample["product.jpg"], {"crop": 1})
            execution, job = system.run(key)
    finally:
        system.mock.set_clock(running=False)

    # THEN the late callback's results are collected: SUCCEEDED, paid once, what the mock served
    assert execution["status"] == "SUCCEEDED", (job.get("error"), job.get("callbacks"))
    assert job["style"] == "callback"
    assert job["polls"] >= 1  # it had fallen back to polling
    assert [c["verdict"] for c in job["callbacks"]] == ["accepted"]
    assert system.mock.count(route=SEGMENTATION, paid=True) == 1
    _stored_is_what_the_mock_served(system, job)


@pytest.mark.slow
def test_a_lost_submit_answer_is_recovered_from_the_callback_naming_the_task(system, sample):
    # GIVEN task/pic takes (and bills) the task, but its answer arrives unreadable
    _fresh_history(system)
    system.mock.inject_fault("malformed_json", route=SEGMENTATION, method="POST", times=1)
    with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="30"):
        key = system.upload("segmentation/in/lost.jpg", sample["product.jpg"], {"crop": 1})
        execution, job = system.run(key)

    # THEN the callback names the task: the job follows it, collects and succeeds, paid once
    assert execution["status"] == "SUCCEEDED", job.get("error")
    assert [c["verdict"] for c in job["callbacks"]] == ["accepted"]
    assert system.mock.count(route=SEGMENTATION) == 1
    _stored_is_what_the_mock_served(system, job)


@pytest.mark.slow
def test_a_lost_submit_answer_whose_callback_comes_after_the_wait_is_still_recovered(system, sample):
    # GIVEN the answer lost and the callback 4 s after the task ended, past a 1 s window
    _fresh_history(system)
    system.mock.inject_fault("truncated_body", route=SEGMENTATION, method="POST", times=1)
    system.mock.configure_callbacks(delay=4)
    system.mock.set_clock(running=True)
    try:
        with system.stack.function_environment(
            PICFLOW_CALLBACK_TIMEOUT="1", PICFLOW_WAIT_SCALE="1", PICFLOW_JOB_DEADLINE="40"
        ):
            key = system.upload("segmentation/in/lostlate.jpg", sample["product.jpg"], {"crop": 1})
            execution, job = system.run(key)
    finally:
        system.mock.set_clock(running=False)

    assert execution["status"] == "SUCCEEDED", job.get("error")
    assert job["polls"] >= 1
    assert system.mock.count(route=SEGMENTATION) == 1
    _stored_is_what_the_mock_served(system, job)


@pytest.mark.slow
def test_a_lost_submit_answer_and_no_callback_fails_outcome_unknown_at_the_deadline(system, sample):
    # GIVEN the answer lost and the callback lost too
    _fresh_history(system)
    system.mock.inject_fault("malformed_json", route=SEGMENTATION, method="POST", times=1)
    system.mock.configure_callbacks(drop=True)
    with system.stack.function_environment(PICFLOW_CALLBACK_TIMEOUT="1", PICFLOW_JOB_DEADLINE="4"):
        key = system.upload("segmentation/in/gone.jpg", sample["product.jpg"], {"crop": 1})
        execution, job = system.run(key)

    # THEN the job waits for it until its deadline, then fails with the submit's own error,
    # having paid once and holding no slot
    assert execution["status"] == "FAILED"
    assert job["error"]["type"] == "OutcomeUnknownError", job["error"]
    assert "no callback named the task by the deadline" in job["error"]["message"]
    assert system.mock.count(route=SEGMENTATION) == 1
    semaphore = system.ddb.Table(system.info.resources["SemaphoreTable"])
    holders = (semaphore.get_item(Key={"name": "taskpic"}).get("Item") or {}).get("holders", {})
    assert job["job_id"] not in holders


def test_a_polled_job_whose_submit_answer_was_lost_is_recovered_from_its_callback(system, sample):
    # GIVEN a task/pic job in poll mode (callbacks are configured, so its callback URL goes out
    # too), whose paid submit answer arrives unreadable
    _fresh_history(system)
    system.mock.inject_fault("malformed_json", route=SEGMENTATION, method="POST", times=1)
    key = system.upload("segmentation/in/lost-poll.jpg", sample["product.jpg"], {"crop": 1}, mode="poll")
    execution, job = system.run(key)

    # THEN the callback names the task, the poll loop collects it: SUCCEEDED, paid once
    assert execution["status"] == "SUCCEEDED", job.get("error")
    assert job["style"] == "poll"
    assert [c["verdict"] for c in job["callbacks"]] == ["accepted"]
    assert system.mock.count(route=SEGMENTATION) == 1
    _stored_is_what_the_mock_served(system, job)
