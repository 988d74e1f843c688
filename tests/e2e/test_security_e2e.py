"""Security properties of the running system: no secret leaks, refused callbacks, short-lived URLs.

1. Jobs on all three providers (one refused for its credentials, one with a completion notice)
   run with the local stack's known secrets; every log line (all loggers of every function at
   DEBUG, the functions' and this process's stdout/stderr), execution history (exception
   messages and causes), API answer, job record, notice and the mock's journal is searched for
   each secret, raw, base64 and URL-encoded. The per-job callback secrets may reach the
   provider (that is their job) and nowhere else.
2. Provider callbacks with a wrong secret, another job's secret, no secret, for an unknown job or
   a replayed delivery are refused; an unknown job and a wrong secret alike (403 rejected), and
   leave nothing on the job; a result URL off the provider's hosts is refused (422 unsafe_url).
3. Result URLs are presigned for PICFLOW_RESULT_URL_TTL seconds. moto does not enforce
   ``X-Amz-Expires`` (it serves an expired URL), so the test asserts on the signed expiry.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx
import pytest
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.lambda_worker import DEBUG_LOGS_VARIABLE
from picflow_cli.local.stack import LOCAL_CREDENTIALS

pytestmark = pytest.mark.e2e


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        quote(secret, safe=""),
        quote_plus(secret),
    }


@dataclass
class _Everything:
    """Every log line the functions' execution environments wrote since the fixture started."""

    runtime: Any
    since: int

    @property
    def lines(self) -> list[str]:
        return [line for i in self.runtime.invocations[self.since :] for line in i.logs.splitlines()]


@pytest.fixture
def captured_logs(system) -> Iterator[_Everything]:
    """Every record of every logger at DEBUG in every function (lambda_worker's debug mode: each
    record written whole), beside (never before) the handlers' own output, which is kept too."""
    runtime = system.stack.runtime
    with system.stack.function_environment(POWERTOOLS_LOG_LEVEL="DEBUG", **{DEBUG_LOGS_VARIABLE: "1"}):
        yield _Everything(runtime, len(runtime.invocations))


@pytest.fixture
def api(system) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=system.info.api_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=30
    ) as client:
        yield client


@pytest.mark.slow
def test_no_configured_secret_appears_in_anything_captured(system, sample, api, captured_logs, capfd):
    sink = system.mock.sink_url("secrets")
    keys = [
        system.upload("segmentation/sec/p.jpg", sample["product.jpg"], {}, **{"notify-url": sink}),
        system.upload("face_enhance/sec/f.png", sample["image.png"], {}),
    ]
    slot = api.post("/uploads", json={"filename": "p.png", "content_type": "image/png"}).json()
    assert httpx.put(slot["url"], content=sample["image.png"], headers=slot["headers"]).status_code == 200
    answers = [
        api.post(
            "/jobs",
            json={
                "operation": "replace_background",
                "params": {"prompt": "a beach"},
                "input": {"upload_id": slot["upload_id"]},
            },
        )
    ]
    job_ids = [str(system.job_for_key(k)["job_id"]) for k in keys] + [answers[0].json()["job_id"]]
    executions = [system.stack.wait_for_execution(j) for j in job_ids]
    assert [e["status"] for e in executions] == ["SUCCEEDED"] * 3
    # A provider refusing the credentials: the error path must not quote them either.
    system.mock.set_account("default", user_key="rotated-elsewhere")
    refused_key = system.upload("remove_watermark/sec/r.png", sample["image.png"], {})
    execution, refused = system.run(refused_key)
    assert (execution["status"], refused["error"]["type"]) == ("FAILED", "AuthError")
    job_ids.append(str(refused["job_id"]))

    answers += [api.get(f"/jobs/{j}") for j in job_ids] + [api.get("/jobs", params={"limit": 100})]
    history = [
        system.sfn.get_execution_history(executionArn=e["executionArn"], maxResults=1000)["events"]
        for e in [*executions, execution]
    ]
    records = [system.job(j) for j in job_ids]
    notices = system.mock.sink("secrets", wait_for=1)
    journal = system.mock.journal()
    out, err = capfd.readouterr()
    assert any('"name": "picflow' in line for line in captured_logs.lines), "picflow's loggers not captured"
    assert any(j in " ".join(captured_logs.lines) + out + err for j in job_ids)

    everywhere = {
        "logs": "\n".join(captured_logs.lines) + out + err,
        "execution history": json.dumps([executions, execution, history], default=str),
        "API answers": "\n".join(a.text for a in answers),
        "job records": json.dumps(records, default=str),
        "notices": json.dumps(notices, default=str),
        "mock journal": json.dumps(journal, default=str),
    }
    for name, secret in LOCAL_CREDENTIALS.items():
        for form in _forms(secret):
            for where, text in everywhere.items():
                assert form not in text, f"{name} ({form!r}) appears in the {where}"
    # Per-job callback secrets go to the provider (in the callback URL) and nowhere else.
    callback_secrets = [
        e["fields"]["callback_url"].rsplit("/", 1)[1]
        for e in journal
        if "callback_url" in e.get("fields", {})
    ]
    assert len(callback_secrets) == 1
    for secret in callback_secrets:
        for form in _forms(secret):
            for where in ("logs", "API answers", "job records", "notices"):
                assert form not in everywhere[where], f"a callback secret appears in the {where}"


def _callback(system, job_id: str, secret: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{system.info.api_url}/callbacks/{job_id}/{secret}", json=body or {}, timeout=30)


@pytest.mark.slow
def test_callbacks_with_a_wrong_missing_or_replayed_secret_are_refused_alike_and_leave_no_trace(
    system, sample
):
    system.mock.configure_callbacks(drop=True)  # the provider's own deliveries never come
    # Two different images: identical ones would be one paid job and a twin waiting on it.
    keys = [
        system.upload("segmentation/cb/a.jpg", sample["product.jpg"], {}),
        system.upload("segmentation/cb/b.png", sample["image.png"], {}),
    ]
    jobs = [str(system.job_for_key(k)["job_id"]) for k in keys]
    waiting = system.stack.wait_until(
        lambda: all({"task_token", "provider_task_id"} <= set(system.job(j)) for j in jobs)
        and [system.job(j) for j in jobs],
    )
    tasks = [system.mock.task(j["provider_task_id"]) for j in waiting]
    secrets = [t["callback_url"].rsplit("/", 1)[1] for t in tasks]
    system.mock.advance_clock(60)  # both tasks end; their results are published
    task = system.mock.task(waiting[0]["provider_task_id"])
    image = next(url for name, url in task["urls"].items() if name.startswith("image"))
    result = {
        "status": 200,
        "data": {"task_id": task["task_id"], "state": 1, "progress": 100, "image": image},
    }
    job_a = jobs[0]

    before = system.job(job_a)
    wrong = _callback(system, job_a, "not-" + secrets[0], result)
    other = _callback(system, job_a, secrets[1], result)  # job b's secret
    unknown = _callback(system, "no-such-job", secrets[0], result)
    # An unknown job and a wrong secret answer alike: the route is no oracle for job ids.
    assert [(a.status_code, a.json()) for a in (wrong, other, unknown)] == [
        (403, {"verdict": "rejected"})
    ] * 3
    assert _callback(system, job_a, "", result).status_code == 403  # no route: the gateway refuses
    assert httpx.post(f"{system.info.api_url}/callbacks/{job_a}", json=result).status_code == 403

    record = system.job(job_a)
    assert record == before  # rejected attempts are counted (ProviderCallbacks), not written
    assert "callbacks" not in record
    assert "callback_received_at" not in record
    assert system.sfn.describe_execution(executionArn=record["execution_arn"])["status"] == "RUNNING"

    assert _callback(system, job_a, secrets[0], result).status_code == 200
    assert system.stack.wait_for_execution(job_a)["status"] == "SUCCEEDED"
    replay = _callback(system, job_a, secrets[0], result)
    assert (replay.status_code, replay.json()) == (409, {"verdict": "duplicate"})
    verdicts = [c["verdict"] for c in system.job(job_a)["callbacks"]]
    assert verdicts == ["accepted", "duplicate"]
    assert not any(s in json.dumps(system.job(job_a)["callbacks"]) for s in secrets)


@pytest.mark.slow
def test_result_urls_are_signed_for_the_configured_ttl(system, sample, api):
    key = system.upload("remove_watermark/ttl/w.png", sample["image.png"], {})
    _, job = system.run(key)
    for ttl in (60, 3600):
        with system.stack.function_environment(PICFLOW_RESULT_URL_TTL=str(ttl)):
            before = datetime.now(UTC).replace(microsecond=0)
            view = api.get(f"/jobs/{job['job_id']}").json()
        urls = [r["url"] for r in view["results"]] + [view["manifest_url"]]
        assert [r["expires_in"] for r in view["results"]] == [ttl] * len(view["results"])
        for url in urls:
            query = parse_qs(urlsplit(url).query)
            signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
            assert query["X-Amz-Expires"] == [str(ttl)]  # bound into the signature (signed query)
            assert 0 <= (signed_at - before).total_seconds() < 30
            assert "X-Amz-Signature" in query


def test_a_callback_naming_a_result_off_the_providers_hosts_is_refused_and_the_job_keeps_its_own(
    system, sample
):
    # GIVEN a callback job whose provider's own delivery never comes
    system.mock.configure_callbacks(drop=True)
    key = system.upload("segmentation/ssrf/a.jpg", sample["product.jpg"], {})
    job_id = str(system.job_for_key(key)["job_id"])
    waiting = system.stack.wait_until(
        lambda: {"task_token", "provider_task_id"} <= set(system.job(job_id)) and system.job(job_id)
    )
    task = system.mock.task(waiting["provider_task_id"])
    secret = task["callback_url"].rsplit("/", 1)[1]
    system.mock.advance_clock(60)
    # The mock publishes a finished task's files on its next sweep.
    published = system.stack.wait_until(lambda: system.mock.task(task["task_id"])["urls"])
    real = next(url for name, url in published.items() if name.startswith("image"))
    # WHEN the right secret names results on loopback hosts other than the mock: the front door
    # (on the URL allow-list), moto (the buckets), and the metadata service
    for stolen in (
        f"{system.info.api_url}/jobs",
        f"{system.info.moto_url}/picflow-input/secret.png",
        "http://169.254.169.254/latest/meta-data/",
    ):
        forged = {"status": 200, "data": {"task_id": task["task_id"], "state": 1, "image": stolen}}
        answer = _callback(system, job_id, secret, forged)
        # THEN each is refused, nothing is handed to the execution
        assert (answer.status_code, answer.json()) == (422, {"verdict": "unsafe_url"})
    record = system.job(job_id)
    assert "callback_received_at" not in record
    assert system.sfn.describe_execution(executionArn=record["execution_arn"])["status"] == "RUNNING"
    # AND the provider's own result (on the mock, its one result host here) still completes the job
    result = {"status": 200, "data": {"task_id": task["task_id"], "state": 1, "image": real}}
    assert _callback(system, job_id, secret, result).status_code == 200
    assert system.stack.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    outputs = system.job(job_id)["manifest"]["outputs"]
    assert [o["kind"] for o in outputs] == ["image"]


@pytest.mark.parametrize(
    "params",
    [
        {"mask_url": "http://169.254.169.254/latest/meta-data/"},
        {"mask_url": "file:///etc/passwd"},
        {"logo_param": {"logo_url": "http://127.0.0.1:22/"}},
    ],
)
def test_url_valued_params_are_checked_before_a_job_starts(system, sample, api, params):
    slot = api.post("/uploads", json={"filename": "p.png", "content_type": "image/png"}).json()
    assert httpx.put(slot["url"], content=sample["image.png"], headers=slot["headers"]).status_code == 200
    body = {
        "operation": "replace_background",
        "params": {"prompt": "a beach", **params},
        "input": {"upload_id": slot["upload_id"]},
    }
    jobs = system.ddb.Table(system.info.resources["JobsTable"])
    before = jobs.scan(Select="COUNT")["Count"]
    key = "unsafe-" + "-".join(params_path(params))
    answer = api.post("/jobs", json=body, headers={"Idempotency-Key": key})
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["field"]) == ("UnsafeUrlError", "params." + ".".join(params_path(params)))
    assert jobs.scan(Select="COUNT")["Count"] == before  # no job, no execution


def params_path(params: dict[str, Any]) -> list[str]:
    name, value = next(iter(params.items()))
    return [name, *params_path(value)] if isinstance(value, dict) else [name]


def test_url_valued_params_of_an_s3_upload_fail_the_job_before_any_upstream_call(system, sample):
    params = {"prompt": "a beach", "mask_url": "http://169.254.169.254/latest/meta-data/"}
    key = system.upload("replace_background/unsafe/p.png", sample["image.png"], params)
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert job["error"]["type"] == "UnsafeUrlError"
    assert "mask_url" in job["error"]["message"]
    assert system.mock.count() == 0
