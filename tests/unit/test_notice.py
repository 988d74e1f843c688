"""The notice body (picflow.job.finish.notice): what a notify_url receiver sees of a finished job,
and nothing of the operator's; its shape is the public schema in docs/openapi.json."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from picflow.aws.services import Services
from picflow.core.results import Notice
from picflow.job.finish import notice
from pydantic import TypeAdapter

BUCKET = "picflow-out"
# What a job record holds besides its outcome: none of it is the receiver's business.
INTERNALS = {
    "balance": {"remaining_count": 977, "remaining_money": 12.5},
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:picflow-job:job-1",
    "cache_key": "segmentation/0f0f/abc",
    "request_sha256": "9" * 64,
    "provider_task_id": "task-31337",
    "task_token": "TOKEN-secret",
    "callback_secret_sha256": "f" * 64,
    "submit_marker": "m-1",
    "callbacks": [{"verdict": "rejected"}],
    "last_error": {"type": "TransientError", "request_id": "req-internal"},
    "input": {"bucket": "picflow-in", "key": "uploads/u/source", "version_id": "v1"},
}
OUTPUT = {
    "kind": "image",
    "index": 0,
    "key": "jobs/job-1/image.png",
    "content_type": "image/png",
    "size": 1234,
    "sha256": "a" * 64,
    "width": 24,
    "height": 16,
    "declared_content_type": "application/octet-stream",
}
JOB = {
    "job_id": "job-1",
    "status": "SUCCEEDED",
    "operation": "segmentation",
    "manifest": {"key": "jobs/job-1/manifest.json", "bucket": BUCKET, "outputs": [OUTPUT], "texts": {}},
    "cost_units": 1,
    "cost_unit": "taskpic.call",
    "completed_at": "2026-12-04T19:00:00Z",
    **INTERNALS,
}


@pytest.fixture
def svc(aws: Any, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    monkeypatch.setenv("PICFLOW_RESULT_URL_TTL", "600")
    return SimpleNamespace(presigner=Services().presigner)


def test_notice_carries_the_outcome_and_nothing_of_the_operators(svc: SimpleNamespace) -> None:
    body = notice(JOB, svc)  # type: ignore[arg-type]
    text = json.dumps(body)
    assert set(body) == set(Notice.__annotations__)
    for name, value in INTERNALS.items():
        assert name not in body
        for leaf in value.values() if isinstance(value, dict) else [value]:
            if isinstance(leaf, str) and len(leaf) > 3:
                assert leaf not in text, name
    assert "123456789012:execution" not in text
    assert (body["job_id"], body["status"], body["operation"]) == ("job-1", "SUCCEEDED", "segmentation")
    assert body["cost"] == {"units": 1, "unit": "taskpic.call"}
    assert body["error"] is None
    TypeAdapter(Notice).validate_python(body)  # the documented schema, extra keys forbidden


def test_notice_results_have_sha256_and_a_presigned_url_for_the_ttl(svc: SimpleNamespace) -> None:
    (result,) = notice(JOB, svc)["results"]  # type: ignore[arg-type]
    assert result["sha256"] == "a" * 64
    assert (result["key"], result["size"], result["width"], result["expires_in"]) == (
        OUTPUT["key"],
        1234,
        24,
        600,
    )
    assert "declared_content_type" not in result
    query = parse_qs(urlsplit(result["url"]).query)
    assert urlsplit(result["url"]).path.endswith("/jobs/job-1/image.png")
    assert query["X-Amz-Expires"] == ["600"]


def test_notice_of_a_failed_job_carries_its_error_and_no_results(svc: SimpleNamespace) -> None:
    failed = {
        **JOB,
        "status": "FAILED",
        "manifest": None,
        "error": {"type": "AuthError", "message": "refused"},
    }
    body = notice(failed, svc)  # type: ignore[arg-type]
    assert (body["status"], body["results"], body["error"]) == (
        "FAILED",
        [],
        {"type": "AuthError", "message": "refused"},
    )


def test_openapi_documents_the_notice_as_a_callback_of_every_route_taking_notify_url() -> None:
    from picflow_cli.openapi import openapi_document

    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    taking = [
        (path, method)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "notify_url"
        in schemas.get(
            op.get("requestBody", {})
            .get("content", {})
            .get("application/json", {})
            .get("schema", {})
            .get("$ref", "")
            .rsplit("/", 1)[-1],
            {},
        ).get("properties", {})
    ]
    assert ("/jobs", "post") in taking
    for path, method in taking:
        (expression,) = doc["paths"][path][method]["callbacks"]["jobNotice"]
        post = doc["paths"][path][method]["callbacks"]["jobNotice"][expression]["post"]
        assert expression == "{$request.body#/notify_url}"
        assert [p["name"] for p in post["parameters"]] == [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        ]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Notice"
    assert set(schemas["Notice"]["properties"]) == set(Notice.__annotations__)
    assert schemas["Notice"]["additionalProperties"] is False
