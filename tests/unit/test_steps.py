"""picflow.job.steps: a step's untyped failure reaches the job record and Step Functions typed
from the error tree (issue 15, finding 6: ValueError and ClientError reached job records)."""

from __future__ import annotations

from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError
from picflow.aws.jobs import JobStore
from picflow.core.errors import InternalError, TransientError
from picflow.job.finish import record_failure
from picflow.job.steps import records_errors, typed_error


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (_client_error("NoSuchVersion", 404), InternalError, "NoSuchVersion"),
        (_client_error("AccessDenied", 403), InternalError, "AccessDenied"),
        (_client_error("SlowDown", 503), TransientError, "SlowDown"),
        (_client_error("ProvisionedThroughputExceededException", 400), TransientError, None),
        (_client_error("Weird", 500), TransientError, "Weird"),
        (EndpointConnectionError(endpoint_url="http://x"), TransientError, "EndpointConnectionError"),
        # boto3's transfer manager (Collect's upload) wraps S3's SlowDown past botocore's retries.
        (S3UploadFailedError("Failed to upload: SlowDown"), TransientError, "S3UploadFailedError"),
        (ValueError("secret-bearing text"), InternalError, "ValueError"),
        (KeyError("PICFLOW_X"), InternalError, "KeyError"),
    ],
)
def test_typed_error_maps_every_untyped_failure_into_the_tree(
    exc: Exception, kind: type, code: str | None
) -> None:
    typed = typed_error(exc)
    assert type(typed) is kind
    assert typed.code == (code or typed.code)
    assert "secret-bearing" not in typed.message


@pytest.fixture
def store(jobs_table: Any) -> JobStore:
    store = JobStore(jobs_table)
    store.create({"job_id": "j", "operation": "segmentation", "status": "RUNNING"})
    return store


def test_records_errors_raises_and_records_the_typed_error(store: JobStore) -> None:
    @records_errors
    def step(state: dict[str, Any], svc: Any) -> None:
        raise ValueError("x-amz-meta-mode: bogus")

    svc = type("S", (), {"store": store})()
    with pytest.raises(InternalError) as caught:
        step({"job_id": "j"}, svc=svc)
    assert isinstance(caught.value.__cause__, ValueError)
    assert (store.get("j") or {})["last_error"]["type"] == "InternalError"


def test_record_failure_types_an_untyped_error_of_a_step_without_records_errors(store: JobStore) -> None:
    svc = type("S", (), {"store": store, "clock": lambda self: 1.0, "cache": None})()
    caught = {"Error": "ClientError", "Cause": '{"errorMessage": "An error occurred (AccessDenied)"}'}
    out = record_failure({"job_id": "j", "operation": "segmentation", "error": caught}, svc=svc)
    assert (out["error"]["type"], out["error"]["code"]) == ("InternalError", "ClientError")
    kept = {"Error": "States.Timeout", "Cause": "x"}
    state = {"job_id": "j", "operation": "segmentation", "error": kept}
    assert record_failure(state, svc=svc)["error"]["type"] == "States.Timeout"
