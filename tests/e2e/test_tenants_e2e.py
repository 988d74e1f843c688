"""Tenants through the whole stack: one API key each (the front door holds several, as the usage
plan does); a tenant never reads, lists, cancels or replays another's jobs, S3-triggered ones
(the default tenant's) included. Uploads and batches are not scoped yet (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from picflow_cli.local.frontdoor import LOCAL_API_KEY

pytestmark = pytest.mark.e2e


@pytest.fixture
def tenants(system) -> Iterator[dict[str, httpx.Client]]:
    """The default tenant (the stack's own key) and tenant B (a key added like `tenants add`)."""
    value, _key_id = system.stack.frontdoor.add_api_key()
    clients = {
        name: httpx.Client(base_url=system.info.api_url, headers={"x-api-key": key}, timeout=30)
        for name, key in (("default", LOCAL_API_KEY), ("b", value))
    }
    yield clients
    for client in clients.values():
        client.close()


def _job(client: httpx.Client, upload_png: bytes, key: str) -> dict:
    slot = client.post("/uploads", json={"filename": "p.png", "content_type": "image/png"}).json()
    assert httpx.put(slot["url"], content=upload_png, headers=slot["headers"]).status_code == 200
    body = {"operation": "remove_watermark", "params": {}, "input": {"upload_id": slot["upload_id"]}}
    answer = client.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert answer.status_code == 202, answer.text
    return answer.json()


def _all_jobs(client: httpx.Client) -> set[str]:
    """Every job id GET /jobs lists for this caller, all pages."""
    found: set[str] = set()
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = client.get("/jobs", params=params).json()
        found |= {j["job_id"] for j in page["jobs"]}
        if not page["cursor"]:
            return found
        params["cursor"] = page["cursor"]


def test_two_tenants_never_see_each_others_jobs_by_any_route(system, sample, tenants):
    a, b = tenants["default"], tenants["b"]
    # GIVEN a job each under the same Idempotency-Key, and an S3-triggered job (the default tenant's)
    job_a = _job(a, sample["image.png"], "tenant-matrix")
    job_b = _job(b, sample["image.png"], "tenant-matrix")
    assert job_a["job_id"] != job_b["job_id"]
    s3_key = system.upload("remove_watermark/tenants/s.png", sample["image.png"], {})
    s3_job = str(system.job_for_key(s3_key)["job_id"])
    for job_id in (job_a["job_id"], job_b["job_id"], s3_job):
        assert system.stack.wait_for_execution(job_id)["status"] == "SUCCEEDED"

    unknown = b.get("/jobs/api-unknown")
    assert unknown.status_code == 404
    for owner, other, job_id in ((a, b, job_a["job_id"]), (b, a, job_b["job_id"]), (a, b, s3_job)):
        # THEN the other tenant gets an unknown job's answer for a read and a cancel
        for method in ("GET", "DELETE"):
            answer = other.request(method, f"/jobs/{job_id}")
            assert answer.status_code == 404, (method, job_id)
            assert answer.json()["error"]["type"] == unknown.json()["error"]["type"]
        # AND its owner still reads it, results and cost included (units 0 when the result cache
        # served it: the cache is not per tenant yet)
        view = owner.get(f"/jobs/{job_id}").json()
        assert (view["status"], len(view["results"]), view["cost"]["unit"]) == (
            "SUCCEEDED",
            1,
            "hdredraw.call",
        )
    listed = {name: _all_jobs(client) for name, client in tenants.items()}
    assert {job_a["job_id"], s3_job} <= listed["default"]
    assert job_b["job_id"] not in listed["default"]
    assert listed["b"] == {job_b["job_id"]}
