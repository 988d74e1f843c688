"""picflow.aws.jobs.JobStore on moto's DynamoDB, with the jobs table built from template.yaml."""

from __future__ import annotations

import time
from typing import Any

import pytest
from picflow.aws.jobs import FINAL, JobStatus, JobStore, SubmitClaim
from picflow.core.errors import OutcomeUnknownError


@pytest.fixture
def store(jobs_table: Any) -> JobStore:
    return JobStore(jobs_table)


def new_job(job_id: str = "job-1", **fields: Any) -> dict[str, Any]:
    return {"job_id": job_id, "operation": "segmentation", "params": {}, **fields}


# --- create / get --------------------------------------------------------------------------


def test_create_new_job_returns_true_and_queues_it(store: JobStore) -> None:
    before = int(time.time())
    assert store.create(new_job()) is True
    job = store.get("job-1")
    assert job is not None
    assert job["status"] == JobStatus.QUEUED
    assert job["polls"] == 0
    assert job["created_at"] == job["updated_at"]
    assert before + 30 * 86400 <= job["ttl"] <= int(time.time()) + 30 * 86400


def test_create_ttl_follows_the_configured_days(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PICFLOW_JOB_TTL_DAYS", "2")
    store.create(new_job())
    assert store.get("job-1")["ttl"] <= int(time.time()) + 2 * 86400


def test_create_same_id_twice_returns_false_and_keeps_the_first(store: JobStore) -> None:
    assert store.create(new_job(operation="segmentation")) is True
    assert store.create(new_job(operation="background")) is False
    assert store.get("job-1")["operation"] == "segmentation"


def test_get_unknown_job_is_none(store: JobStore) -> None:
    assert store.get("nope") is None


def test_create_floats_round_trip_and_nones_are_dropped(store: JobStore) -> None:
    store.create(new_job(params={"fit": 0.3, "steps": 30.0, "nested": [{"x": 1.5}]}, notify_url=None))
    job = store.get("job-1")
    assert job is not None
    assert job["params"] == {"fit": 0.3, "steps": 30, "nested": [{"x": 1.5}]}
    assert "notify_url" not in job


# --- transitions ---------------------------------------------------------------------------


def test_update_sets_fields_and_returns_the_new_record(store: JobStore) -> None:
    store.create(new_job())
    out = store.update("job-1", {"status": JobStatus.RUNNING.value, "provider_task_id": "t-9"})
    assert out is not None
    assert (out["status"], out["provider_task_id"]) == ("RUNNING", "t-9")
    assert store.get("job-1") == out


def test_update_unknown_job_returns_none_and_creates_nothing(store: JobStore) -> None:
    assert store.update("ghost", {"status": "RUNNING"}) is None
    assert store.get("ghost") is None


@pytest.mark.parametrize("final", sorted(FINAL))
def test_update_final_job_returns_none_and_leaves_it_final(store: JobStore, final: JobStatus) -> None:
    store.create(new_job())
    assert store.update("job-1", {"status": final.value}) is not None
    assert store.update("job-1", {"status": JobStatus.RUNNING.value}) is None
    assert store.get("job-1")["status"] == final.value


def test_update_final_job_with_allow_final_writes(store: JobStore) -> None:
    store.create(new_job(status=JobStatus.SUCCEEDED.value))
    out = store.update("job-1", {"execution_arn": "arn:x"}, allow_final=True)
    assert out is not None
    assert (out["execution_arn"], out["status"]) == ("arn:x", "SUCCEEDED")


def test_add_polls_counts_and_records_progress(store: JobStore) -> None:
    store.create(new_job())
    assert store.add_polls("job-1", 10) == 1
    assert store.add_polls("job-1", None) == 2
    assert store.add_polls("job-1", 55) == 3
    job = store.get("job-1")
    assert job is not None
    assert (job["polls"], job["progress"]) == (3, 55)


def test_add_polls_without_progress_keeps_the_last_progress(store: JobStore) -> None:
    store.create(new_job())
    store.add_polls("job-1", 40)
    store.add_polls("job-1", None)
    assert store.get("job-1")["progress"] == 40


# --- the submit guard ----------------------------------------------------------------------


def test_claim_submit_first_claim_may_pay(store: JobStore) -> None:
    store.create(new_job())
    assert store.claim_submit("job-1") == SubmitClaim(task_id=None)
    assert store.get("job-1")["submit_marker"]


def test_claim_submit_second_claim_while_marked_raises_outcome_unknown(store: JobStore) -> None:
    store.create(new_job())
    store.claim_submit("job-1")
    with pytest.raises(OutcomeUnknownError) as info:
        store.claim_submit("job-1")
    assert info.value.code == "SubmitInDoubt"


def test_claim_submit_after_release_may_pay_again(store: JobStore) -> None:
    store.create(new_job())
    store.claim_submit("job-1")
    store.release_submit("job-1")
    assert "submit_marker" not in store.get("job-1")
    assert store.claim_submit("job-1") == SubmitClaim(task_id=None)


def test_claim_submit_after_record_submitted_returns_the_task_and_pays_nothing(store: JobStore) -> None:
    # GIVEN a submit that reached the provider and was recorded
    store.create(new_job())
    store.claim_submit("job-1")
    store.record_submitted("job-1", "task-42", {"submitted_epoch": 1.5})
    # WHEN a retry of the step claims again
    claim = store.claim_submit("job-1")
    # THEN it follows the existing task instead of paying
    assert claim == SubmitClaim(task_id="task-42")
    job = store.get("job-1")
    assert job is not None
    assert (job["status"], job["provider_task_id"], job["submitted_epoch"]) == ("RUNNING", "task-42", 1.5)


def test_claim_submit_after_record_submitted_even_when_released_returns_the_task(store: JobStore) -> None:
    store.create(new_job())
    store.claim_submit("job-1")
    store.record_submitted("job-1", "task-42", {})
    store.release_submit("job-1")
    assert store.claim_submit("job-1").task_id == "task-42"


# --- listing -------------------------------------------------------------------------------


@pytest.fixture
def listed(store: JobStore) -> JobStore:
    jobs = [
        ("a", "segmentation", "QUEUED", "2025-01-01T00:00:01.000Z"),
        ("b", "background", "QUEUED", "2025-01-01T00:00:03.000Z"),
        ("c", "segmentation", "QUEUED", "2025-01-01T00:00:02.000Z"),
        ("d", "segmentation", "FAILED", "2025-01-01T00:00:04.000Z"),
    ]
    for job_id, operation, status, created in jobs:
        store.create({"job_id": job_id, "operation": operation, "status": status, "created_at": created})
    return store


def _ids(page: tuple[list[dict[str, Any]], Any]) -> list[str]:
    return [job["job_id"] for job in page[0]]


def test_list_by_status_is_newest_first(listed: JobStore) -> None:
    assert _ids(listed.list(status="QUEUED")) == ["b", "c", "a"]


def test_list_by_operation_is_newest_first(listed: JobStore) -> None:
    assert _ids(listed.list(operation="segmentation")) == ["d", "c", "a"]


def test_list_by_status_and_operation_filters_both(listed: JobStore) -> None:
    assert _ids(listed.list(status="QUEUED", operation="segmentation")) == ["c", "a"]


def test_list_since_keeps_newer_jobs(listed: JobStore) -> None:
    assert _ids(listed.list(status="QUEUED", since="2025-01-01T00:00:02.000Z")) == ["b", "c"]
    assert _ids(listed.list(since="2025-01-01T00:00:03.000Z")) == ["d", "b"]


def test_list_without_filters_is_newest_first(listed: JobStore) -> None:
    assert _ids(listed.list()) == ["d", "b", "c", "a"]


def test_list_pages_with_a_cursor(listed: JobStore) -> None:
    first, cursor = listed.list(status="QUEUED", limit=2)
    assert [j["job_id"] for j in first] == ["b", "c"]
    assert cursor is not None
    rest, end = listed.list(status="QUEUED", limit=2, cursor=cursor)
    assert [j["job_id"] for j in rest] == ["a"]
    assert end is None


def test_iter_all_yields_every_job(listed: JobStore) -> None:
    assert sorted(job["job_id"] for job in listed.iter_all()) == ["a", "b", "c", "d"]
