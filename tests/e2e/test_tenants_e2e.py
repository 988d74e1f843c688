"""Tenants through the whole stack: one API key each (made by `picflow tenants add` against the
local stack, or added to the front door as the usage plan holds them). Two tenants x every route
(jobs get/list/cancel, uploads, batches get/list/delete/pause/resume, results) and every way in
(API, S3 upload under the tenant's root, batch): no tenant reads, writes, cancels, batches over or
is charged for another's, and identical images are paid once per tenant, never shared."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from io import BytesIO
from typing import Any
from urllib.parse import unquote, urlsplit

import batch_support as support
import httpx
import pytest
from picflow_cli.local.frontdoor import LOCAL_API_KEY, UsageLimits
from picflow_cli.main import main

pytestmark = pytest.mark.e2e

OPERATION = "remove_watermark"
JSONL = "application/x-ndjson"


def _add_tenant(system, capsys: pytest.CaptureFixture[str], name: str) -> dict[str, Any]:
    """`picflow tenants add NAME` against the running local stack; its --json answer."""
    capsys.readouterr()
    code = main(["tenants", "add", name, "--endpoint-url", system.info.moto_url, "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    tenant: dict[str, Any] = json.loads(out)
    return tenant


def _client(system, key: str) -> httpx.Client:
    return httpx.Client(base_url=system.info.api_url, headers={"x-api-key": key}, timeout=30)


@pytest.fixture
def tenants(system) -> Iterator[dict[str, httpx.Client]]:
    """The default tenant (the stack's own key) and tenant B (a key added like `tenants add`)."""
    value, _key_id = system.stack.frontdoor.add_api_key()
    clients = {name: _client(system, key) for name, key in (("default", LOCAL_API_KEY), ("b", value))}
    yield clients
    for client in clients.values():
        client.close()


def _job(client: httpx.Client, upload_png: bytes, key: str) -> dict:
    slot = client.post("/uploads", json={"filename": "p.png", "content_type": "image/png"}).json()
    assert httpx.put(slot["url"], content=upload_png, headers=slot["headers"]).status_code == 200
    body = {"operation": OPERATION, "params": {}, "input": {"upload_id": slot["upload_id"]}}
    answer = client.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert answer.status_code == 202, answer.text
    return answer.json()


def _all_jobs(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every job GET /jobs lists for this caller, all pages, by id."""
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = client.get("/jobs", params=params).json()
        found |= {j["job_id"]: j for j in page["jobs"]}
        if not page["cursor"]:
            return found
        params["cursor"] = page["cursor"]


def test_two_tenants_never_see_each_others_jobs_by_any_route(system, sample, tenants):
    a, b = tenants["default"], tenants["b"]
    # GIVEN a job each under the same Idempotency-Key, and an S3-triggered job (the default tenant's)
    job_a = _job(a, sample["image.png"], "tenant-matrix")
    job_b = _job(b, sample["image.png"], "tenant-matrix")
    assert job_a["job_id"] != job_b["job_id"]
    s3_key = system.upload(f"{OPERATION}/tenants/s.png", sample["image.png"], {})
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
        # AND its owner still reads it, results and cost included
        view = owner.get(f"/jobs/{job_id}").json()
        assert (view["status"], len(view["results"]), view["cost"]["unit"]) == (
            "SUCCEEDED",
            1,
            "hdredraw.call",
        )
    listed = {name: set(_all_jobs(client)) for name, client in tenants.items()}
    assert {job_a["job_id"], s3_job} <= listed["default"]
    assert job_b["job_id"] not in listed["default"]
    assert listed["b"] == {job_b["job_id"]}


def test_tenants_add_makes_a_key_the_front_door_takes_with_the_usage_plans_limits(system, capsys):
    name = f"acme-{uuid.uuid4().hex[:6]}"
    # GIVEN a tenant added with the CLI against the running local stack
    tenant = _add_tenant(system, capsys, name)
    assert tenant["s3_prefix"] == f"tenants/{tenant['tenant']}/"
    # WHEN it calls the API with the printed key THEN the front door takes it as that tenant's
    with _client(system, tenant["api_key"]) as client:
        slot = client.post("/uploads", json={"filename": "x.png", "content_type": "image/png"})
        assert slot.status_code == 201, slot.text
        assert slot.json()["key"].startswith(f"{tenant['s3_prefix']}uploads/")
        assert client.get("/jobs").json()["jobs"] == []
    # AND the same name twice is refused in one line, and a made-up key still is not a key
    assert main(["tenants", "add", name, "--endpoint-url", system.info.moto_url]) == 2
    assert "exists already" in capsys.readouterr().err
    with _client(system, "not-a-key") as stranger:
        assert stranger.get("/jobs").status_code == 403

    # AND each key gets the template's usage plan on its own: its throttle and its quota
    assert system.stack.frontdoor.limits == UsageLimits(rate=50, burst=100, quota=100000)
    throttled, _ = system.stack.frontdoor.add_api_key(UsageLimits(rate=0.001, burst=2))
    capped, _ = system.stack.frontdoor.add_api_key(UsageLimits(rate=1000, burst=1000, quota=2))
    for key, kind in ((throttled, "THROTTLED"), (capped, "QUOTA_EXCEEDED")):
        with _client(system, key) as client:
            assert [client.get("/jobs").status_code for _ in range(2)] == [200, 200]
            refused = client.get("/jobs")
            assert refused.status_code == 429
            assert refused.json()["error"]["type"] == kind
    with _client(system, LOCAL_API_KEY) as other:
        assert other.get("/jobs").status_code == 200  # one tenant's limit is not another's


# --- the matrix: 2 tenants x every route x every way in -------------------------------------


def _png(shade: int) -> bytes:
    """A distinct small image per shade (identical bytes for both tenants)."""
    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (48, 40), (shade, 90, 200 - shade)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client: httpx.Client, data: bytes, filename: str, content_type: str = "image/png") -> dict:
    slot = client.post("/uploads", json={"filename": filename, "content_type": content_type})
    assert slot.status_code == 201, slot.text
    put = httpx.put(slot.json()["url"], content=data, headers=slot.json()["headers"])
    assert put.status_code == 200
    return dict(slot.json())


def _run_tenant(system, client: httpx.Client, root: str, tag: str) -> dict[str, Any]:
    """One tenant's work by every way in: an API job, an S3 upload under its root, a batch of two
    uploads from a manifest it uploaded; each on images of its own shade. Returns what it made."""
    job_upload = _upload(client, _png(10), "api.png")
    api_job = client.post(
        "/jobs",
        json={"operation": OPERATION, "params": {}, "input": {"upload_id": job_upload["upload_id"]}},
        headers={"Idempotency-Key": f"matrix-{tag}"},
    )
    assert api_job.status_code == 202, api_job.text
    s3_key = f"{root}{OPERATION}/{tag}/s3.png"
    system.s3.put_object(Bucket=system.info.input_bucket, Key=s3_key, Body=_png(20))
    items = [_upload(client, _png(30 + i), f"item{i}.png")["key"] for i in range(2)]
    manifest = _upload(
        client,
        "".join(json.dumps({"key": k}) + "\n" for k in items).encode(),
        "m.jsonl",
        "application/x-ndjson",
    )
    batch = client.post(
        "/batches",
        json={"operation": OPERATION, "manifest": manifest["key"], "tolerated_failure_percentage": 0},
    )
    assert batch.status_code == 202, batch.text
    batch_id = batch.json()["batch_id"]
    execution, view = support.finish(system, client, batch_id)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    s3_job = str(system.job_for_key(s3_key)["job_id"])
    jobs = [api_job.json()["job_id"], s3_job, f"{batch_id}-0", f"{batch_id}-1"]
    for job_id in jobs[:2]:
        assert system.stack.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    return {
        "jobs": jobs,
        "batch": batch_id,
        "batch_view": view,
        "upload": job_upload,
        "manifest": manifest["key"],
        "item_key": items[0],
    }


def _all_batches(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every batch GET /batches lists for this caller, all pages, by id."""
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, str | int] = {"limit": 100}
    while True:
        answer = client.get("/batches", params=params)
        assert answer.status_code == 200, answer.text
        found |= {b["batch_id"]: b for b in answer.json()["batches"]}
        if not answer.json()["cursor"]:
            return found
        params["cursor"] = answer.json()["cursor"]


def _batch_executions(system) -> int:
    return len(system.sfn.list_executions(stateMachineArn=system.info.batch_state_machine_arn)["executions"])


@pytest.mark.slow
def test_two_tenants_by_every_way_in_and_every_route_share_nothing(system, capsys):
    tag = uuid.uuid4().hex[:8]
    made = {n: _add_tenant(system, capsys, f"matrix-{n}-{tag}") for n in ("a", "b")}
    clients = {n: _client(system, t["api_key"]) for n, t in made.items()}
    try:
        # GIVEN tenant A's work by every way in, all paid, then tenant B's on identical images
        done = {n: _run_tenant(system, clients[n], made[n]["s3_prefix"], f"{n}-{tag}") for n in ("a", "b")}

        # THEN B paid for its own results: nothing of A's was reused, and the provider was paid
        # once per job of each tenant (8)
        for n, client in clients.items():
            for job_id in done[n]["jobs"]:
                view = client.get(f"/jobs/{job_id}").json()
                assert (view["status"], view["tenant"], view["cost"]) == (
                    "SUCCEEDED",
                    made[n]["tenant"],
                    {"units": 1, "unit": "hdredraw.call"},
                ), (n, job_id)
                # AND its results live under its own root and are served to it
                for result in view["results"]:
                    assert (
                        unquote(urlsplit(result["url"]).path)
                        .split("/", 2)[2]
                        .startswith(made[n]["s3_prefix"])
                    ), result["url"]
                    assert httpx.get(result["url"]).status_code == 200
            assert done[n]["batch_view"]["tenant"] == made[n]["tenant"]
            assert done[n]["batch_view"]["cost"] == {"units": 2, "unit": "hdredraw.call"}
            assert done[n]["batch_view"]["reused"] == 0
        assert system.mock.count(paid=True) == 8

        unknown_job = clients["a"].get("/jobs/api-unknown").json()["error"]
        unknown_batch = clients["a"].get("/batches/batch-unknown").json()["error"]
        for n, other in (("a", "b"), ("b", "a")):
            theirs, me = done[other], clients[n]
            # AND no read, cancel or list of the other's jobs, whatever way they came in
            for job_id in theirs["jobs"]:
                for method in ("GET", "DELETE"):
                    answer = me.request(method, f"/jobs/{job_id}")
                    assert answer.status_code == 404, (n, method, job_id)
                    assert answer.json()["error"]["type"] == unknown_job["type"]
            listed = _all_jobs(me)
            assert set(listed) == set(done[n]["jobs"])
            assert {j["tenant"] for j in listed.values()} == {made[n]["tenant"]}
            assert sum(j["cost"]["units"] for j in listed.values()) == 4
            # AND no list, read, stop, pause or resume of the other's batch
            batches = _all_batches(me)
            assert set(batches) == {done[n]["batch"]}
            assert batches[done[n]["batch"]]["tenant"] == made[n]["tenant"]
            for method, path in (
                ("GET", ""),
                ("DELETE", ""),
                ("POST", "/pause"),
                ("POST", "/resume"),
            ):
                answer = me.request(method, f"/batches/{theirs['batch']}{path}")
                assert answer.status_code == 404, (n, method, path)
                assert answer.json()["error"]["type"] == unknown_batch["type"]
            # AND no job or batch over the other's objects: its upload, its key, its prefix, its
            # manifest, or its key named on a line of one's own manifest; nothing starts
            before = (_batch_executions(system), len(_all_jobs(me)))
            for field, value in (
                ("upload_id", theirs["upload"]["upload_id"]),
                ("key", theirs["upload"]["key"]),
            ):
                answer = me.post(
                    "/jobs", json={"operation": OPERATION, "params": {}, "input": {field: value}}
                )
                assert answer.status_code == 422, (n, field)
                assert answer.json()["error"]["type"] == "InputNotFound"
            answer = me.post("/batches", json={"operation": OPERATION, "prefix": made[other]["s3_prefix"]})
            assert (answer.status_code, answer.json()["error"]["field"]) == (422, "prefix")
            answer = me.post("/batches", json={"operation": OPERATION, "manifest": theirs["manifest"]})
            assert (answer.status_code, answer.json()["error"]["type"]) == (422, "InputNotFound")
            mine = _upload(
                me,
                (json.dumps({"key": theirs["item_key"]}) + "\n").encode(),
                "x.jsonl",
                "application/x-ndjson",
            )
            answer = me.post("/batches", json={"operation": OPERATION, "manifest": mine["key"]})
            assert answer.status_code == 422
            assert "manifest line 1" in answer.json()["error"]["message"]
            assert (_batch_executions(system), len(_all_jobs(me))) == before
        # AND the other's jobs are still SUCCEEDED (no cancel went through) and nothing more was paid
        for n, client in clients.items():
            assert {client.get(f"/jobs/{j}").json()["status"] for j in done[n]["jobs"]} == {"SUCCEEDED"}
        assert system.mock.count(paid=True) == 8
    finally:
        for client in clients.values():
            client.close()


@pytest.mark.slow
def test_picflow_batch_run_as_a_tenant_reads_only_its_own_objects(system, capsys, tmp_path, monkeypatch):
    from picflow_cli import settings

    for name in (settings.API_URL_ENV, settings.API_KEY_ENV, settings.STATE_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    tag = uuid.uuid4().hex[:8]
    mine, other = (_add_tenant(system, capsys, f"cli-{n}-{tag}") for n in ("mine", "other"))
    flags = ["--api-url", system.info.api_url, "--api-key", mine["api_key"], "--interval", "0.2"]
    bucket = system.info.input_bucket
    # GIVEN an image under the tenant's root, and one under the other tenant's
    own_key, their_key = f"{mine['s3_prefix']}batches/{tag}/a.png", f"{other['s3_prefix']}batches/{tag}/a.png"
    for key, shade in ((own_key, 60), (their_key, 70)):
        system.s3.put_object(Bucket=bucket, Key=key, Body=_png(shade))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["batch", "run", *argv, "--tolerated-failure-percent", "0", *flags])
        out, err = capsys.readouterr()
        return code, out, err

    # WHEN the tenant runs a local manifest of its own key through the CLI
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"key": own_key}) + "\n")
    code, out, err = run(OPERATION, "--manifest", str(manifest))
    # THEN the CLI put the manifest under the tenant's root, where the API let the tenant read it
    assert (code, err) == (0, ""), out
    batch_id = out.splitlines()[-2].split(":")[0]
    with _client(system, mine["api_key"]) as me, _client(system, other["api_key"]) as them:
        view = me.get(f"/batches/{batch_id}").json()
        assert view["source"]["manifest"].startswith(f"{mine['s3_prefix']}uploads/")
        assert me.get(f"/jobs/{batch_id}-0").json()["tenant"] == mine["tenant"]
        assert them.get(f"/batches/{batch_id}").status_code == 404

        # AND a pipeline over its own prefix: the pipeline's three jobs are the tenant's too
        code, out, err = run(
            "pipeline", "--prefix", f"s3://{bucket}/{mine['s3_prefix']}batches/{tag}/", "-p", "prompt=sea"
        )
        assert (code, err) == (0, ""), out
        pipeline_id = out.splitlines()[-2].split(":")[0]
        for step in ("cutout", "background", "upscale"):
            job_id = f"{pipeline_id}-0-{step}"
            assert me.get(f"/jobs/{job_id}").json()["tenant"] == mine["tenant"], step
            assert them.get(f"/jobs/{job_id}").status_code == 404, step

    # AND `picflow batch list` shows each tenant its own batches only
    for tenant, expected in ((mine, {batch_id, pipeline_id}), (other, set())):
        argv = ["batch", "list", "--json", "--api-url", system.info.api_url, "--api-key", tenant["api_key"]]
        assert main(argv) == 0
        assert {b["batch_id"] for b in json.loads(capsys.readouterr().out)["batches"]} == expected
    assert main(["batch", "list", "--api-url", system.info.api_url, "--api-key", other["api_key"]]) == 0
    assert capsys.readouterr().out == "no batches\n"

    # AND a manifest naming the other tenant's key, or the other tenant's prefix, is one line, and
    # nothing runs
    manifest.write_text(json.dumps({"key": their_key}) + "\n")
    paid = system.mock.count(paid=True)
    code, out, err = run(OPERATION, "--manifest", str(manifest))
    assert code != 0
    assert "manifest line 1" in err
    code, out, err = run(OPERATION, "--prefix", f"s3://{bucket}/{other['s3_prefix']}batches/{tag}/")
    assert code != 0
    assert "prefix" in err
    assert system.mock.count(paid=True) == paid
