"""Outputs are never shared between jobs, and a FAILED job leaves no objects (issue 15, findings 2
and 3). Two uploads of ``x/same.png`` (or ``x/same.png`` and ``x/same.jpg``) had one results
prefix, so job 2 overwrote job 1's results (its recorded sha256 no longer matched what its URL
served); a failed job left its partial outputs, listed by no manifest, in the output bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.aws.semaphore import Semaphore
from picflow.aws.services import Services
from picflow.entry.s3events import S3Upload, job_request
from picflow.job.finish import record_failure
from picflow.job.validate import validate

PNG = (Path(__file__).resolve().parents[2] / "mock_upstream" / "samples" / "image.png").read_bytes()


class NoHistory:
    def recent(self, operation: str) -> list[float]:
        return []


@pytest.fixture
def svc(jobs_table: Any, semaphore_table: Any, s3: Any, monkeypatch: pytest.MonkeyPatch) -> Services:
    monkeypatch.setenv("PICFLOW_OPERATION_FUNCTIONS", "segmentation=op-seg")
    monkeypatch.setenv("PICFLOW_OUTPUT_BUCKET", "outputs")
    s3.create_bucket(Bucket="inputs")
    s3.create_bucket(Bucket="outputs")
    return Services(
        store=JobStore(jobs_table), s3=s3, semaphore=Semaphore(semaphore_table), durations=NoHistory()
    )  # type: ignore[arg-type]


def _job_from_upload(svc: Services, key: str, job_id: str) -> dict[str, Any]:
    svc.s3.put_object(Bucket="inputs", Key=key, Body=PNG)
    request = job_request(S3Upload("inputs", key, None, job_id), svc.s3)
    assert request is not None
    return validate({**request, "job_id": job_id, "reuse": False}, svc)  # type: ignore[typeddict-item]


@pytest.mark.parametrize("second", ["segmentation/x/same.png", "segmentation/x/same.jpg"])
def test_two_uploads_of_one_name_get_results_prefixes_of_their_own(svc: Services, second: str) -> None:
    one = _job_from_upload(svc, "segmentation/x/same.png", "s3-job-1")
    two = _job_from_upload(svc, second, "s3-job-2")
    assert one["out_prefix"] == "segmentation/x/same/s3-job-1/"
    assert two["out_prefix"] == "segmentation/x/same/s3-job-2/"
    assert (svc.store.get("s3-job-1") or {})["out_prefix"] == one["out_prefix"]


def test_an_api_job_keeps_its_own_jobs_prefix(svc: Services) -> None:
    svc.s3.put_object(Bucket="inputs", Key="uploads/a.png", Body=PNG)
    out = validate({"job_id": "api-1", "operation": "segmentation", "reuse": False,  # type: ignore[typeddict-item]
                    "input": {"bucket": "inputs", "key": "uploads/a.png"}}, svc)  # fmt: skip
    assert out["out_prefix"] == "jobs/api-1/"


def _failed(svc: Services, job_id: str, prefix: str | None) -> dict[str, Any]:
    state = {"job_id": job_id, "operation": "segmentation", "error": {"Error": "ResultUnavailableError"}}
    if prefix is not None:
        state["out_prefix"] = prefix
    return record_failure(state, svc=svc)


def _keys(svc: Services) -> list[str]:
    return sorted(o["Key"] for o in svc.s3.list_objects_v2(Bucket="outputs").get("Contents", []))


def test_a_failed_job_removes_what_it_stored_and_nothing_else(svc: Services) -> None:
    # GIVEN a job that stored one result of two (no manifest) before failing, and a neighbour's
    for key in ("segmentation/x/same/job-1/image.png", "segmentation/x/same/job-2/image.png",
                "segmentation/x/same/manifest.json"):  # fmt: skip
        svc.s3.put_object(Bucket="outputs", Key=key, Body=b"x")

    out = _failed(svc, "job-1", "segmentation/x/same/job-1/")

    assert out["removed"] == 1
    assert _keys(svc) == ["segmentation/x/same/job-2/image.png", "segmentation/x/same/manifest.json"]
    assert (svc.store.get("job-1") or {})["status"] == "FAILED"


@pytest.mark.parametrize("prefix", [None, "segmentation/x/same/", "jobs/other-job/"])
def test_a_failed_job_never_touches_a_prefix_that_is_not_its_own(svc: Services, prefix: str | None) -> None:
    svc.s3.put_object(Bucket="outputs", Key="segmentation/x/same/image.png", Body=b"x")
    svc.s3.put_object(Bucket="outputs", Key="jobs/other-job/image.png", Body=b"x")
    assert "removed" not in _failed(svc, "job-1", prefix)
    assert len(_keys(svc)) == 2
