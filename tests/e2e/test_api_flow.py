"""The jobs API through the local front door: the same system, entered over HTTP."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest

from tests.e2e.test_operations import CASES

pytestmark = pytest.mark.e2e

# the `api` fixture: tests/e2e/conftest.py


def _upload(api, data: bytes, name: str) -> str:
    slot = api.post("/uploads", json={"filename": name, "content_type": "image/png"})
    assert slot.status_code == 201, slot.text
    put = httpx.put(slot.json()["url"], content=data, headers=slot.json()["headers"])
    assert put.status_code == 200
    return str(slot.json()["upload_id"])


def _start(api, operation, upload_id, params, key=None, **extra):
    headers = {"Idempotency-Key": key} if key else {}
    body = {"operation": operation, "params": params, "input": {"upload_id": upload_id}, **extra}
    return api.post("/jobs", json=body, headers=headers)


@pytest.mark.parametrize("operation", sorted(CASES))
def test_operation_through_the_api_succeeds_and_serves_its_results(system, sample, api, operation):
    name, params, kinds, _ = CASES[operation]
    upload_id = _upload(api, sample[name], name)

    created = _start(api, operation, upload_id, params)
    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    execution = system.stack.wait_for_execution(job_id)
    view = api.get(f"/jobs/{job_id}").json()

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert view["status"] == "SUCCEEDED"
    assert {r["kind"] for r in view["results"]} >= kinds
    for result in view["results"]:
        body = httpx.get(result["url"]).content  # the presigned URL serves the stored bytes
        assert hashlib.sha256(body).hexdigest() == result["sha256"]


def test_repeated_idempotency_key_starts_one_job_and_pays_once(system, sample, api):
    upload_id = _upload(api, sample["image.png"], "i.png")
    key = f"order-{uuid.uuid4().hex}"

    first = _start(api, "face_enhance", upload_id, {}, key)
    second = _start(api, "face_enhance", upload_id, {}, key)
    system.stack.wait_for_execution(first.json()["job_id"])
    third = _start(api, "face_enhance", upload_id, {}, key)

    assert (first.status_code, second.status_code, third.status_code) == (202, 200, 200)
    assert first.json()["job_id"] == second.json()["job_id"] == third.json()["job_id"]
    executions = system.sfn.list_executions(stateMachineArn=system.info.job_state_machine_arn)["executions"]
    assert [e["name"] for e in executions].count(first.json()["job_id"]) == 1
    assert system.mock.count(route="/api/submit_face_enhance_task") == 1


def test_same_idempotency_key_with_another_body_is_a_conflict(system, sample, api):
    upload_id = _upload(api, sample["image.png"], "i.png")
    key = f"order-{uuid.uuid4().hex}"
    first = _start(api, "expand_image", upload_id, {"expand_top": 0.1}, key)
    other = _start(api, "expand_image", upload_id, {"expand_top": 0.2}, key)
    system.stack.wait_for_execution(first.json()["job_id"])
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "Idempotency-Key"


def test_cancel_stops_a_running_job_and_frees_its_slot(system, sample, api):
    # The task never finishes on its own (a thousand polls), so the job is mid-poll when cancelled.
    system.mock.set_scenario(next=1, polls=1000)
    system.mock.configure(hd_status_cache_seconds=0)
    upload_id = _upload(api, sample["image.png"], "i.png")
    job_id = _start(api, "remove_watermark", upload_id, {}).json()["job_id"]
    system.stack.wait_until(lambda: api.get(f"/jobs/{job_id}").json()["polls"] >= 2, timeout=30)

    cancelled = api.delete(f"/jobs/{job_id}")
    execution = system.stack.wait_for_execution(job_id)

    assert cancelled.status_code == 200, cancelled.text
    # A step already running when the job is marked CANCELLED may end the execution through the
    # failure path before StopExecution lands (a known race, see the closing note); the job stays
    # CANCELLED either way.
    assert execution["status"] in ("ABORTED", "FAILED")
    assert api.get(f"/jobs/{job_id}").json()["status"] == "CANCELLED"
    semaphore = system.ddb.Table(system.info.resources["SemaphoreTable"]).get_item(Key={"name": "hdredraw"})
    assert job_id not in semaphore["Item"].get("holders", {})
    assert api.delete(f"/jobs/{job_id}").status_code == 409
    assert system.mock.count(route="/api/submit_remove_watermark_task", paid=True) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operation": "redraw", "params": {"upscale": 12}, "input": {"key": "x.png"}}, "params.upscale"),
        ({"operation": "nope", "params": {}, "input": {"key": "x.png"}}, "operation"),
        ({"operation": "redraw", "params": {}, "input": {"url": "http://169.254.169.254/x"}}, "input.url"),
        ({"operation": "redraw", "params": {}, "input": {}}, "input"),
    ],
)
def test_bad_requests_are_4xx_naming_the_field_and_start_nothing(system, api, body, field):
    answer = api.post("/jobs", json=body)
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"]["field"] == field
    assert system.mock.count() == 0


def test_api_refuses_requests_without_the_key(system):
    answer = httpx.get(f"{system.info.api_url}/operations")
    assert answer.status_code == 403
