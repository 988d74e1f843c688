"""Batches through the API front door: a Distributed Map over a prefix or a manifest, failures
injected at the mock, re-runs answered by the result cache, the provider cap held."""

from __future__ import annotations

import json
import uuid

import batch_support as support
import pytest

pytestmark = pytest.mark.e2e

ITEMS = 20
SUBMIT = "/api/submit_remove_fabric_task"


def _max_overlap(system) -> int:
    """Most HD redraw tasks in flight at once at the mock, in the order it saw requests (its
    journal's ``seq``; its clock stands still in tests): +1 at each accepted submit, -1 at each
    task's last status read."""
    journal = system.mock.journal(provider="hd")
    last_read: dict[str, int] = {}
    for entry in journal:
        if entry["route"] == "/api/check_task_status":
            last_read[entry["fields"]["task_id"]] = entry["seq"]
    edges = [(e["seq"], 1) for e in journal if e["route"] == SUBMIT and e["status"] == 200]
    edges += [(t, -1) for t in last_read.values()]
    running = peak = 0
    for _, step in sorted(edges):
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_batch_from_a_prefix_runs_every_item_tolerates_failures_and_reruns_for_free(system, sample, api):
    # GIVEN 20 different images under a prefix, and ~5% of paid submits refused by the provider
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, ITEMS, prefix)
    system.mock.set_seed(1)  # two of the first twenty draws fall under 5 %
    system.mock.inject_fault("http_status", route=SUBMIT, status=400, times=None, probability=0.05)

    # WHEN the prefix goes through remove_fabric as one batch
    started = api.post(
        "/batches",
        json={"operation": "remove_fabric", "prefix": prefix, "tolerated_failure_percentage": 25},
    )
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    execution, view = support.finish(system, api, batch_id)

    # THEN every item ran once as its own job; the refused ones failed, the batch did not
    refused = system.mock.count(route=SUBMIT, status=400)
    assert refused >= 1, "the seed must inject at least one failure"
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert started.json()["max_concurrency"] == 4  # the template's hdredraw cap
    assert view["total"] == ITEMS
    assert view["counts"]["SUCCEEDED"] == ITEMS - refused
    assert view["counts"]["FAILED"] == refused
    assert view["counts"]["NOT_STARTED"] == 0
    assert view["progress"] == 1.0
    assert view["reused"] == 0
    assert view["cost"] == {"units": ITEMS - refused, "unit": "hdredraw.call"}
    paid = system.mock.count(paid=True)
    assert paid == ITEMS - refused
    results = support.results(system, view)
    assert [r["input"]["key"] for r in results] == sorted(keys)
    assert [r["job_id"] for r in results] == [f"{batch_id}-{i}" for i in range(ITEMS)]
    failed = [r for r in results if r["status"] == "FAILED"]
    assert len(failed) == refused
    assert all(r["error"] and not r["outputs"] for r in failed)
    assert all(r["outputs"] and r["outputs"][0]["sha256"] for r in results if r["status"] == "SUCCEEDED")
    # and the provider's cap held at the mock
    assert 1 < _max_overlap(system) <= 4

    # WHEN the same batch is run again, the provider now accepting everything
    system.mock.clear_faults()
    again = api.post("/batches", json={"operation": "remove_fabric", "prefix": prefix})
    assert again.status_code == 202, again.text
    execution2, view2 = support.finish(system, api, again.json()["batch_id"])

    # THEN what was done is reused, unpaid; only the items that failed are paid for
    assert execution2["status"] == "SUCCEEDED", execution2.get("cause")
    assert view2["counts"]["SUCCEEDED"] == ITEMS
    assert view2["reused"] == ITEMS - refused
    assert view2["cost"]["units"] == refused
    assert system.mock.count(paid=True) == paid + refused

    # AND a third run pays for nothing at all
    third = api.post("/batches", json={"operation": "remove_fabric", "prefix": prefix})
    _, view3 = support.finish(system, api, third.json()["batch_id"])
    assert view3["reused"] == ITEMS
    assert system.mock.count(paid=True) == paid + refused


def test_batch_from_a_jsonl_manifest_with_per_item_params(system, sample, api):
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, 3, prefix)
    lines = [
        {"key": keys[0]},
        {"key": keys[1], "params": {"color_count": 8}},
        {"key": keys[2], "params": {"color_count": 3}},
    ]
    manifest = f"{prefix}items.jsonl"
    body = "\n".join(json.dumps(line) for line in lines).encode()
    system.s3.put_object(Bucket=system.info.input_bucket, Key=manifest, Body=body)

    started = api.post(
        "/batches", json={"operation": "vectorize", "params": {"color_count": 5}, "manifest": manifest}
    )
    assert started.status_code == 202, started.text
    execution, view = support.finish(system, api, started.json()["batch_id"])

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert view["counts"]["SUCCEEDED"] == 3
    assert [r["params"]["color_count"] for r in support.results(system, view)] == [5, 8, 3]
    sent = sorted(e["fields"].get("color_count") for e in system.mock.journal(paid=True))
    assert sent == ["3", "5", "8"]


def test_batch_from_a_csv_manifest_with_a_bad_param_is_refused_before_anything_runs(system, api):
    manifest = f"batches/{uuid.uuid4().hex[:8]}/items.csv"
    csv_body = 'key,params\na.png,\nb.png,"{""color_count"": 99}"\n'
    system.s3.put_object(Bucket=system.info.input_bucket, Key=manifest, Body=csv_body.encode())

    refused = api.post("/batches", json={"operation": "vectorize", "manifest": manifest})

    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "line 3" in error["message"]
    assert error["field"] == "params.color_count"
    assert system.mock.count() == 0


def test_batch_past_its_tolerated_failures_fails_with_a_report(system, sample, api):
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    support.images(system, 2, prefix)
    system.mock.inject_fault("http_status", route=SUBMIT, status=400, times=1)

    started = api.post(
        "/batches",
        json={"operation": "remove_fabric", "prefix": prefix, "tolerated_failure_percentage": 0},
    )
    execution, view = support.finish(system, api, started.json()["batch_id"])

    assert execution["status"] == "FAILED"
    assert execution["error"] == "TooManyItemsFailed"
    assert "1 of 2 items failed" in execution["cause"]
    assert view["status"] == "FAILED"
    assert view["counts"]["FAILED"] == 1
    assert len(support.results(system, view)) == 2


def test_batch_replay_with_the_same_key_starts_nothing_new_and_another_body_conflicts(system, sample, api):
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    support.images(system, 1, prefix)
    body = {"operation": "remove_fabric", "prefix": prefix}
    key = {"Idempotency-Key": uuid.uuid4().hex}

    first = api.post("/batches", json=body, headers=key)
    replay = api.post("/batches", json=body, headers=key)
    other = api.post("/batches", json={**body, "tolerated_failure_percentage": 50}, headers=key)
    support.finish(system, api, first.json()["batch_id"])

    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.json()["batch_id"] == first.json()["batch_id"]
    assert replay.json()["created"] is False
    assert other.status_code == 409
    assert system.mock.count(paid=True) == 1


def test_unknown_batch_is_404_and_a_finished_one_cannot_be_stopped(system, sample, api):
    assert api.get("/batches/batch-nope").status_code == 404
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    support.images(system, 1, prefix)
    batch_id = api.post("/batches", json={"operation": "remove_fabric", "prefix": prefix}).json()["batch_id"]
    support.finish(system, api, batch_id)

    stopped = api.delete(f"/batches/{batch_id}")

    assert stopped.status_code == 409
    assert stopped.json()["error"]["type"] == "BatchFinal"


def test_batch_of_url_items_fetches_each_through_the_url_guard_and_a_dead_url_fails_only_its_item(
    system, sample, api
):
    # GIVEN a CSV manifest of two image URLs, one key and one URL that answers 404; the URLs are
    # presigned GETs of moto (the local stack's URL allowlist admits it, as a public host)
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, 3, prefix)

    def url(key: str) -> str:
        return support.public_url(system, key)

    rows = [("url", url(keys[0])), ("key", keys[1]), ("url", url(keys[2])), ("url", url(f"{prefix}gone.png"))]
    csv_body = "key,url\n" + "".join(
        f"{v if c == 'key' else ''},{v if c == 'url' else ''}\n" for c, v in rows
    )
    manifest = f"{prefix}items.csv"
    system.s3.put_object(Bucket=system.info.input_bucket, Key=manifest, Body=csv_body.encode())

    # WHEN it runs through remove_fabric, tolerating a quarter of the items failing
    started = api.post(
        "/batches",
        json={"operation": "remove_fabric", "manifest": manifest, "tolerated_failure_percentage": 25},
    )
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    execution, view = support.finish(system, api, batch_id)

    # THEN the three images ran (each URL copied to its item's key first), the dead URL failed
    # its item with the reason, before any provider call, and the batch succeeded
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert (view["counts"]["SUCCEEDED"], view["counts"]["FAILED"]) == (3, 1)
    assert system.mock.count(paid=True) == 3
    results = support.results(system, view)
    assert [r["input"].get("url") is not None for r in results] == [True, False, True, True]
    assert [r["input"]["key"] for r in results] == [
        f"uploads/{batch_id}-0/source",
        keys[1],
        f"uploads/{batch_id}-2/source",
        f"uploads/{batch_id}-3/source",
    ]
    copied = system.s3.get_object(Bucket=system.info.input_bucket, Key=f"uploads/{batch_id}-0/source")
    assert (
        copied["Body"].read()
        == system.s3.get_object(Bucket=system.info.input_bucket, Key=keys[0])["Body"].read()
    )
    dead = results[3]
    assert dead["status"] == "FAILED"
    assert dead["error"]["type"] == "InputUnavailableError"
    assert "HTTP 40" in dead["error"]["message"]


@pytest.mark.parametrize(
    "hostile",
    [
        "http://169.254.169.254/latest/meta-data/iam/",
        "http://0x7f.1/x.png",
        "file:///etc/passwd",
        "http://[::ffff:10.0.0.1]/a.png",
    ],
)
def test_batch_with_a_hostile_url_is_refused_naming_its_line_before_anything_starts(
    system, api, hostile: str
):
    manifest = f"batches/{uuid.uuid4().hex[:8]}/items.jsonl"
    lines = [{"key": "a.png"}, {"url": hostile}]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    system.s3.put_object(Bucket=system.info.input_bucket, Key=manifest, Body=body)
    before = system.sfn.list_executions(stateMachineArn=system.info.batch_state_machine_arn)["executions"]

    refused = api.post("/batches", json={"operation": "remove_fabric", "manifest": manifest})

    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "UnsafeUrlError"
    assert error["field"] == "manifest"
    assert error["message"].startswith("manifest line 2: ")
    after = system.sfn.list_executions(stateMachineArn=system.info.batch_state_machine_arn)["executions"]
    assert len(after) == len(before)
    assert system.mock.count() == 0


@pytest.mark.slow
def test_pipeline_batch_runs_three_jobs_per_item_reports_one_line_each_and_reruns_for_free(
    system, sample, api
):
    # GIVEN three different images under a prefix
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, 3, prefix)
    paid_before = system.mock.count_by("route", paid=True)

    def paid_since() -> dict[str, int]:
        now = system.mock.count_by("route", paid=True)
        return {
            route: n - paid_before.get(route, 0) for route, n in now.items() if n > paid_before.get(route, 0)
        }

    # WHEN they go through the pipeline (cutout -> background -> upscale) as one batch
    body = {"operation": "pipeline", "params": {"prompt": "studio", "upscale": 2}, "prefix": prefix}
    started = api.post("/batches", json=body)
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    execution, view = support.finish(system, api, batch_id)

    # THEN each item is one line whose outputs are the upscale's, made by its own three jobs
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert started.json()["max_concurrency"] == 4  # min(taskpic 8, hdredraw 4)
    assert (view["total"], view["counts"]["SUCCEEDED"], view["done"]) == (3, 3, 3)
    assert view["cost"] == {"units": 9, "unit": "hdredraw.call+taskpic.call"}
    results = support.results(system, view)
    assert [r["input"]["key"] for r in results] == sorted(keys)
    for i, line in enumerate(results):
        steps = [f"{batch_id}-{i}-{s}" for s in ("cutout", "background", "upscale")]
        assert line["steps"] == steps
        assert line["job_id"] == steps[-1]
        assert line["status"] == "SUCCEEDED"
        upscale = system.job(steps[-1])
        assert upscale["batch_id"] == batch_id
        assert [o["key"] for o in line["outputs"]] == [o["key"] for o in upscale["manifest"]["outputs"]]
    # AND each item's three steps were paid once: three routes (one per step), three calls each
    paid = paid_since()
    assert sorted(paid.values()) == [3, 3, 3], paid

    # WHEN the same prefix runs through the pipeline again
    again = api.post("/batches", json=body)
    execution2, view2 = support.finish(system, api, again.json()["batch_id"])

    # THEN every step is reused and nothing more is paid
    assert execution2["status"] == "SUCCEEDED", execution2.get("cause")
    assert (view2["counts"]["SUCCEEDED"], view2["reused"], view2["cost"]["units"]) == (3, 3, 0)
    assert paid_since() == paid


def test_pipeline_batch_of_url_items_fetches_each_before_its_pipeline_and_a_dead_url_fails_only_its_item(
    system, sample, api
):
    # GIVEN a JSON Lines manifest: an image URL (a presigned GET of moto, which the local stack's
    # URL allowlist admits as a public host), a key, and a URL that answers 404
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    keys = support.images(system, 2, prefix)

    def url(key: str) -> str:
        return support.public_url(system, key)

    lines = [{"url": url(keys[0])}, {"key": keys[1]}, {"url": url(f"{prefix}gone.png")}]
    manifest = f"{prefix}items.jsonl"
    body = "\n".join(json.dumps(line) for line in lines).encode()
    system.s3.put_object(Bucket=system.info.input_bucket, Key=manifest, Body=body)
    paid_before = system.mock.count_by("route", paid=True)

    # WHEN they go through the pipeline as one batch, tolerating a third of the items failing
    started = api.post(
        "/batches",
        json={
            "operation": "pipeline",
            "params": {"prompt": "studio"},
            "manifest": manifest,
            "tolerated_failure_percentage": 34,
        },
    )
    assert started.status_code == 202, started.text
    batch_id = started.json()["batch_id"]
    execution, view = support.finish(system, api, batch_id)

    # THEN the URL item was copied to its key and ran its three steps like the key item; the dead
    # URL failed its item at its cutout, before any provider call; the batch succeeded
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert (view["counts"]["SUCCEEDED"], view["counts"]["FAILED"]) == (2, 1)
    results = support.results(system, view)
    assert [r["input"]["key"] for r in results] == [
        f"uploads/{batch_id}-0/source",
        keys[1],
        f"uploads/{batch_id}-2/source",
    ]
    assert results[0]["input"]["url"] == lines[0]["url"]
    copied = system.s3.get_object(Bucket=system.info.input_bucket, Key=f"uploads/{batch_id}-0/source")
    original = system.s3.get_object(Bucket=system.info.input_bucket, Key=keys[0])
    assert copied["Body"].read() == original["Body"].read()
    for i in (0, 1):
        assert results[i]["status"] == "SUCCEEDED"
        assert results[i]["steps"] == [f"{batch_id}-{i}-{s}" for s in ("cutout", "background", "upscale")]
        assert results[i]["outputs"][0]["sha256"]
    dead = results[2]
    assert (dead["status"], dead["steps"]) == ("FAILED", [f"{batch_id}-2-cutout"])
    assert dead["error"]["type"] == "InputUnavailableError"
    assert "HTTP 40" in dead["error"]["message"]
    # AND each of the two images paid each step once: three routes, two calls each
    now = system.mock.count_by("route", paid=True)
    paid = {r: n - paid_before.get(r, 0) for r, n in now.items() if n > paid_before.get(r, 0)}
    assert sorted(paid.values()) == [2, 2, 2], paid
    assert view["cost"] == {"units": 6, "unit": "hdredraw.call+taskpic.call"}
    # AND the batch chose the fetching pipeline map once; a fetched item's pipeline is a key item's
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in system.sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        if e["type"].endswith("StateEntered")
    ]
    assert entered[:2] == ["Source", "PipelineUrlItems"]
    pipelines = system.info.pipeline_state_machine_arn.replace(":stateMachine:", ":execution:")

    def states(i: int) -> list[str]:
        history = system.sfn.get_execution_history(executionArn=f"{pipelines}:{batch_id}-{i}")["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in history if e["type"].endswith("StateEntered")]

    # (Started: the one Choice a batch pause costs each pipeline item, paused or not)
    assert states(0) == states(1) == ["Defaults", "Start", "Cutout", "Started", "Background", "Upscale"]


def test_pipeline_item_whose_pipeline_fails_between_steps_is_reported_failed_not_running(system, sample, api):
    from picflow.batch.plan import batch_id_for

    # GIVEN one image, and the name of its pipeline's background job already taken by an earlier
    # execution outside the batch (a job refused at Validate): its pipeline will fail starting
    # that step, between jobs, with none of the batch's job records failing
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    support.images(system, 1, prefix)
    idempotency_key = uuid.uuid4().hex
    batch_id = batch_id_for(idempotency_key)
    taken = system.sfn.start_execution(
        stateMachineArn=system.info.job_state_machine_arn,
        name=f"{batch_id}-0-background",
        input=json.dumps({"operation": "nope"}),
    )
    assert system.stack.wait_for_arn(taken["executionArn"], timeout=60)["status"] == "FAILED"

    # WHEN the image goes through the pipeline as a batch tolerating no failure
    started = api.post(
        "/batches",
        json={
            "operation": "pipeline",
            "params": {"prompt": "studio"},
            "prefix": prefix,
            "tolerated_failure_percentage": 0,
        },
        headers={"Idempotency-Key": idempotency_key},
    )
    assert started.status_code == 202, started.text
    assert started.json()["batch_id"] == batch_id
    execution, view = support.finish(system, api, batch_id)

    # THEN the batch failed, and its item is FAILED (not RUNNING) in the report and in GET, saying
    # that its pipeline ended without finishing its jobs
    assert (execution["status"], execution["error"]) == ("FAILED", "TooManyItemsFailed")
    assert (view["counts"]["FAILED"], view["counts"]["RUNNING"], view["done"]) == (1, 0, 1)
    [line] = support.results(system, view)
    assert (line["status"], line["steps"]) == ("FAILED", [f"{batch_id}-0-cutout"])
    assert line["error"]["type"] == "ExecutionEnded"
    assert line["error"]["message"].startswith(f"the pipeline execution {batch_id}-0 ended FAILED")
    assert line["error"]["message"].endswith("without finishing its jobs")
    assert system.job(f"{batch_id}-0-cutout")["status"] == "SUCCEEDED"
