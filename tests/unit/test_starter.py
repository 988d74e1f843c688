"""picflow.aws.starter: one job and one execution per idempotency key (moto SFN, non-executing)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picflow.aws.jobs import JobStore
from picflow.aws.starter import start_job
from picflow.core.names import job_id_for, s3_job_id

EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
REQUEST = {
    "operation": "segmentation",
    "params": {"output_type": 1},
    "input": {"bucket": "in", "key": "a.png"},
}


@pytest.fixture
def store(jobs_table: Any) -> JobStore:
    return JobStore(jobs_table)


@pytest.fixture
def machine(sfn: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    arn: str = sfn.create_state_machine(
        name="picflow-job", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    monkeypatch.setenv("PICFLOW_STATE_MACHINE_ARN", arn)
    return arn


def executions(sfn: Any, machine: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=machine)["executions"]
    return found


# --- job ids -------------------------------------------------------------------------------


@settings(deadline=None)
@given(namespace=st.sampled_from(["s3", "api", "pipeline"]), key=st.text(max_size=2000))
def test_job_id_for_any_key_is_a_valid_execution_name(namespace: str, key: str) -> None:
    job_id = job_id_for(namespace, key)
    assert EXECUTION_NAME.match(job_id)
    assert job_id.startswith(f"{namespace}-")


@settings(deadline=None)
@given(key=st.text(max_size=200))
def test_job_id_for_is_a_pure_function_of_the_key(key: str) -> None:
    assert job_id_for("api", key) == job_id_for("api", key)
    assert job_id_for("api", key) != job_id_for("api", key + "x")
    assert job_id_for("api", key)[4:] != job_id_for("s3", key)[3:]  # the namespace is hashed in too


def test_s3_job_id_same_object_version_is_the_same_job() -> None:
    assert s3_job_id("in", "seg/a.png", "v1") == s3_job_id("in", "seg/a.png", "v1")
    assert s3_job_id("in", "seg/a.png", "v1") != s3_job_id("in", "seg/a.png", "v2")
    assert s3_job_id("in", "seg/a.png", "v1") != s3_job_id("other", "seg/a.png", "v1")


def test_job_id_for_namespace_and_key_cannot_be_confused() -> None:
    # "a" + "\0" + "b-c" must not equal "a-b" + "\0" + "c": the separator keeps them apart.
    assert job_id_for("a", "b-c") != job_id_for("a-b", "c")


# --- starting ------------------------------------------------------------------------------


def test_start_job_first_time_creates_the_job_and_one_execution(
    store: JobStore, sfn: Any, machine: str
) -> None:
    job_id = job_id_for("api", "key-1")
    result = start_job(REQUEST, job_id=job_id, store=store, sfn=sfn)
    assert result.created is True
    assert result.conflict is False
    (execution,) = executions(sfn, machine)
    assert execution["name"] == job_id
    assert result.execution_arn == execution["executionArn"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started == {**REQUEST, "job_id": job_id}
    job = store.get(job_id)
    assert job is not None
    assert (job["status"], job["operation"], job["execution_arn"]) == (
        "QUEUED",
        "segmentation",
        result.execution_arn,
    )


def test_start_job_duplicate_starts_nothing_and_returns_the_first_execution(
    store: JobStore, sfn: Any, machine: str
) -> None:
    job_id = job_id_for("s3", "in/seg/a.png@v1")
    first = start_job(REQUEST, job_id=job_id, store=store, sfn=sfn)
    second = start_job(REQUEST, job_id=job_id, store=store, sfn=sfn)
    assert (second.created, second.conflict) == (False, False)
    assert second.execution_arn == first.execution_arn
    assert len(executions(sfn, machine)) == 1


def test_start_job_same_key_other_request_is_a_conflict_and_starts_nothing(
    store: JobStore, sfn: Any, machine: str
) -> None:
    job_id = job_id_for("api", "idem-1")
    first = start_job(REQUEST, job_id=job_id, store=store, sfn=sfn, fingerprint="sha-a")
    other = {**REQUEST, "params": {"output_type": 3}}
    second = start_job(other, job_id=job_id, store=store, sfn=sfn, fingerprint="sha-b")
    assert second.conflict is True
    assert second.created is False
    assert second.execution_arn == first.execution_arn
    assert len(executions(sfn, machine)) == 1
    assert store.get(job_id)["params"] == {"output_type": 1}


def test_start_job_record_without_execution_is_started_once(store: JobStore, sfn: Any, machine: str) -> None:
    # GIVEN a first attempt that wrote the job but died before StartExecution
    job_id = job_id_for("api", "crashed")
    store.create({"job_id": job_id, "operation": "segmentation"})
    # WHEN the request is retried
    result = start_job(REQUEST, job_id=job_id, store=store, sfn=sfn)
    # THEN the execution starts now, under the same name, and is recorded
    assert result.created is False
    assert result.execution_arn is not None
    assert [e["name"] for e in executions(sfn, machine)] == [job_id]
    assert store.get(job_id)["execution_arn"] == result.execution_arn


def test_start_job_invalid_name_is_refused_before_anything_is_written(
    store: JobStore, sfn: Any, machine: str
) -> None:
    with pytest.raises(ValueError, match="execution name"):
        start_job(REQUEST, job_id="has spaces/and slashes", store=store, sfn=sfn)
    assert store.get("has spaces/and slashes") is None
    assert executions(sfn, machine) == []
