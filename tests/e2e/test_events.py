"""Every sample event in events/ replayed through its handler in the local stack.

GIVEN a sample from events/ with its ``${PLACEHOLDERS}`` filled in from the e2e stack and the
state it needs arranged (an input image, a job record, an upstream task, a waiting execution)
WHEN it is passed to the function events/README.md names for it, as ``sam local invoke -e``
would (``local_stack.runtime.invoke``: the real handler, in process)
THEN the handler does what that event asks, checked in the state it leaves behind.

events/README.md is the one table of which event goes with which function: the replays read it,
and a test checks that it covers every event file and every function in template.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from picflow.aws.jobs import JobStore
from picflow.aws.semaphore import Semaphore
from picflow.core.catalogue import OPERATIONS
from picflow.core.names import job_id_for
from picflow_cli.local.stack import load_template, repo_root

pytestmark = pytest.mark.e2e

EVENTS = repo_root() / "events"
_ROW = re.compile(r"^\|\s*`(?P<event>[a-z0-9_]+\.json)`\s*\|\s*`(?P<function>[A-Za-z0-9]+)`\s*\|")
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")

# The sample image each operation's submit gets (the mock's samples fit their operation).
INPUT_FOR = {
    "segmentation": "product.jpg",
    "background": "foreground.png",
    "idphoto": "portrait.png",
    "replace_background": "product.jpg",
    "vectorize": "logo.jpg",
    "face_enhance": "portrait.png",
}
# Placeholders an event carries along in its state but its handler never reads (README).
UNREAD = {
    "INPUT_KEY": "uploads/events/unread.png",
    "TASK_ID": "unread-task",
    "RESULT_URL": "https://results.invalid/unread.png",
}


def event_table() -> dict[str, str]:
    """events/README.md's table: event file -> the LogicalId of the function it is for."""
    rows = (_ROW.match(line) for line in (EVENTS / "README.md").read_text().splitlines())
    return {m["event"]: m["function"] for m in rows if m}


def load_event(name: str, values: dict[str, str]) -> dict[str, Any]:
    text = (EVENTS / name).read_text()
    missing = set(_PLACEHOLDER.findall(text)) - set(values)
    assert not missing, f"{name}: no value for {sorted(missing)}"
    event: dict[str, Any] = json.loads(_PLACEHOLDER.sub(lambda m: values[m[1]], text))
    return event


@dataclass
class Replay:
    """One event file, its function, and what a scenario arranges and checks around it."""

    system: Any
    sample: dict[str, bytes]
    event_file: str
    function: str  # LogicalId, from events/README.md
    job_id: str = field(default_factory=lambda: f"ev-{uuid.uuid4().hex}")

    @property
    def info(self) -> Any:
        return self.system.info

    @property
    def store(self) -> JobStore:
        return JobStore(self.system.ddb.Table(self.info.resources["JobsTable"]))

    def values(self, **extra: str) -> dict[str, str]:
        job_id = extra.get("JOB_ID", self.job_id)
        execution_arn = self.info.job_state_machine_arn.replace(":stateMachine:", ":execution:")
        return {
            "INPUT_BUCKET": self.info.input_bucket,
            "JOB_ID": job_id,
            "EXECUTION_ARN": f"{execution_arn}:{job_id}",
            **extra,
        }

    def event(self, name: str | None = None, **extra: str) -> dict[str, Any]:
        return load_event(name or self.event_file, self.values(**extra))

    def invoke(self, function: str, event: dict[str, Any]) -> dict[str, Any]:
        payload, errored, _ = self.system.stack.runtime.invoke(self.info.resources[function], event)
        out: dict[str, Any] = json.loads(payload)
        assert not errored, out
        return out

    def __call__(self, **extra: str) -> dict[str, Any]:
        """Replay this event (placeholders filled with ``extra`` and the stack's names)."""
        return self.invoke(self.function, self.event(**extra))

    def put_input(self, sample_name: str) -> str:
        """An input image under uploads/ (which the S3 trigger leaves to the API)."""
        key = f"uploads/events/{uuid.uuid4().hex[:8]}/{sample_name}"
        self.system.s3.put_object(Bucket=self.info.input_bucket, Key=key, Body=self.sample[sample_name])
        return key

    def create_job(self, operation: str, key: str | None = None, **fields: Any) -> None:
        """The job record Validate leaves (the submit guard and every later step need one)."""
        source = {"bucket": self.info.input_bucket, "key": key} if key else {}
        assert self.store.create({"job_id": self.job_id, "operation": operation, "input": source, **fields})

    def wait_until(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        return self.system.stack.wait_until(condition, timeout)


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


# --- S3 -----------------------------------------------------------------------------------


@contextmanager
def notifications_suspended(s3: Any, bucket: str) -> Iterator[None]:
    """Upload without S3 delivering the event itself: the replayed sample is the delivery."""
    saved = s3.get_bucket_notification_configuration(Bucket=bucket)
    saved.pop("ResponseMetadata", None)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    try:
        yield
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=saved)


def s3_put(r: Replay) -> None:
    s3, bucket, key = r.system.s3, r.info.input_bucket, "segmentation/catalog/shoe.jpg"
    with notifications_suspended(s3, bucket):
        put = s3.put_object(Bucket=bucket, Key=key, Body=r.sample["product.jpg"])
    # The template versions the bucket; moto's CloudFormation does not apply that, and an
    # unversioned bucket's event has no version id ("" here): the trigger keys on the sequencer.
    version = put.get("VersionId", "")

    [started] = r(VERSION_ID=version)["jobs"]

    assert started["created"] is True
    execution = r.system.stack.wait_for_execution(started["job_id"])
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    job = r.system.job(started["job_id"])
    assert (job["source"], job["operation"]) == ("s3", "segmentation")
    assert (job["input"]["key"], job["input"].get("version_id")) == (key, version or None)
    manifest = json.loads(r.system.output(f"segmentation/catalog/shoe/{started['job_id']}/manifest.json"))
    assert manifest["job_id"] == started["job_id"]
    # S3 delivers at least once: the same record again starts nothing.
    assert r(VERSION_ID=version)["jobs"] == [{"job_id": started["job_id"], "created": False}]


# --- the jobs API ---------------------------------------------------------------------------


def api_create_upload(r: Replay) -> None:
    response = r()

    assert response["statusCode"] == 201
    upload = body(response)
    assert upload["key"] == f"uploads/{upload['upload_id']}/cat.png"
    put = httpx.put(upload["url"], content=r.sample["image.png"], headers=upload["headers"])
    assert put.status_code == 200
    head = r.system.s3.head_object(Bucket=r.info.input_bucket, Key=upload["key"])
    assert (head["ContentType"], head["ContentLength"]) == ("image/png", len(r.sample["image.png"]))


def api_create_job(r: Replay) -> None:
    key = r.put_input("product.jpg")
    notify_url = r.system.mock.sink_url("api-create-job")

    response = r(INPUT_KEY=key, NOTIFY_URL=notify_url)

    assert response["statusCode"] == 202, response["body"]
    created = body(response)
    assert created["job_id"] == job_id_for("api", "order-1234-cutout")  # from its Idempotency-Key
    assert created["created"] is True
    execution = r.system.stack.wait_for_execution(created["job_id"])
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    job = r.system.job(created["job_id"])
    assert (job["params"]["output_type"], job["input"]["key"]) == (1, key)
    assert {o["kind"] for o in job["manifest"]["outputs"]} == {"image", "mask"}
    [notice] = r.system.mock.sink("api-create-job", wait_for=1)
    assert (notice["job_id"], notice["status"]) == (created["job_id"], "SUCCEEDED")
    # A retried POST with the same Idempotency-Key and body answers with the same job.
    replay = r(INPUT_KEY=key, NOTIFY_URL=notify_url)
    assert replay["statusCode"] == 200
    assert (body(replay)["job_id"], body(replay)["created"]) == (created["job_id"], False)


def api_get_job(r: Replay) -> None:
    assert r()["statusCode"] == 404
    r.create_job("idphoto", source="api", params={"size": "300x400"})

    response = r()

    assert response["statusCode"] == 200
    view = body(response)
    assert (view["job_id"], view["status"], view["operation"]) == (r.job_id, "QUEUED", "idphoto")
    assert view["params"] == {"size": "300x400"}


def api_list_jobs(r: Replay) -> None:
    r.create_job("seamless", source="api")

    response = r()

    assert response["statusCode"] == 200
    listed = body(response)["jobs"]
    assert 0 < len(listed) <= 10
    assert {j["status"] for j in listed} == {"QUEUED"}
    assert r.job_id in [j["job_id"] for j in listed]


def api_cancel_job(r: Replay) -> None:
    r.create_job("redraw", source="api")

    response = r()

    assert response["statusCode"] == 200
    assert body(response)["status"] == "CANCELLED"
    job = r.system.job(r.job_id)
    assert (job["status"], job["error"]["type"]) == ("CANCELLED", "Cancelled")
    assert r()["statusCode"] == 409  # a final job stays final


def api_list_operations(r: Replay) -> None:
    response = r()

    assert response["statusCode"] == 200
    catalogue = {o["operation"]: o for o in body(response)["operations"]}
    assert set(catalogue) == set(OPERATIONS)
    rules = {p["name"]: p["required"] for p in catalogue["edit_image"]["params"]}
    assert rules == {"prompt": True, "model_version": False}


# --- the job state machine's tasks ------------------------------------------------------------


def validate(r: Replay) -> None:
    key = r.put_input("product.jpg")

    out = r(INPUT_KEY=key)

    head = r.system.s3.head_object(Bucket=r.info.input_bucket, Key=key)
    assert out["job_id"] == r.job_id
    assert out["params"] == {"output_type": 1, "crop": 0, "format": "png"}  # defaults filled in
    # The version Validate read is pinned (None where the bucket is not versioned).
    assert out["input"] == {"bucket": r.info.input_bucket, "key": key, "version_id": head.get("VersionId")}
    assert out["out_prefix"] == f"jobs/{r.job_id}/"
    meta = out["job"]
    assert (meta["provider"], meta["style"], meta["cost_unit"]) == ("taskpic", "callback", "taskpic.call")
    assert meta["function"] == r.info.resources["OpSegmentationFunction"]  # Submit invokes this name
    job = r.system.job(r.job_id)
    assert job["input"]["sha256"] == hashlib.sha256(r.sample["product.jpg"]).hexdigest()
    assert (job["input"]["width"], job["input"]["height"]) == (640, 640)


def _semaphore(r: Replay) -> Semaphore:
    return Semaphore(r.system.ddb.Table(r.info.resources["SemaphoreTable"]))


def slot_acquire(r: Replay) -> None:
    out = r(**UNREAD)
    try:
        assert (out["acquired"], out["cap"]) == (True, 8)  # taskpic=8 in ProviderConcurrency
        assert r.job_id in _semaphore(r).holders("taskpic")
    finally:
        _semaphore(r).release("taskpic", r.job_id)


def slot_release(r: Replay) -> None:
    assert _semaphore(r).acquire("taskpic", r.job_id, 8, 60).acquired

    assert r(**UNREAD) == {"released": True}

    assert r.job_id not in _semaphore(r).holders("taskpic")
    assert r(**UNREAD) == {"released": False}


def _submit(r: Replay, operation: str, event_file: str | None = None, **extra: str) -> dict[str, Any]:
    key = r.put_input(INPUT_FOR.get(operation, "image.png"))
    r.create_job(operation, key)
    function = r.function if event_file is None else event_table()[event_file]
    return r.invoke(function, r.event(event_file, INPUT_KEY=key, **extra))


def op_submit(operation: str) -> Callable[[Replay], None]:
    def scenario(r: Replay) -> None:
        out = _submit(r, operation)

        job = r.system.job(r.job_id)
        assert job["provider_task_id"] == out["task_id"]
        assert r.system.mock.count(paid=True) == 1
        if OPERATIONS[operation].provider.value == "tencent":  # sync: collected in this call
            assert (out["state"], job["status"]) == ("collected", "SUCCEEDED")
            assert json.loads(r.system.output(out["manifest_key"]))["job_id"] == r.job_id
        else:
            assert (out["state"], job["status"]) == ("pending", "RUNNING")
            # A retried submit follows the task it made: nothing is paid twice.
            assert r(INPUT_KEY=job["input"]["key"])["task_id"] == out["task_id"]
            assert r.system.mock.count(paid=True) == 1

    return scenario


def op_submit_segmentation_callback(r: Replay) -> None:
    r.system.mock.configure_callbacks(drop=True)  # the callback itself is callback.json's business
    token = f"token-{uuid.uuid4().hex}"

    out = _submit(r, "segmentation", TASK_TOKEN=token)

    assert out["state"] == "pending"
    job = r.system.job(r.job_id)
    assert job["task_token"] == token
    callback_url = r.system.mock.task(out["task_id"])["callback_url"]
    prefix = f"{r.info.api_url}/callbacks/{r.job_id}/"
    assert callback_url.startswith(prefix)
    secret = callback_url.removeprefix(prefix)
    assert hashlib.sha256(secret.encode()).hexdigest() == job["callback_secret_sha256"]


def op_check(operation: str) -> Callable[[Replay], None]:
    def scenario(r: Replay) -> None:
        submitted = _submit(r, operation, f"op_submit_{operation}.json")
        r.system.mock.advance_clock(60)  # the upstream task ends

        event = r.event(INPUT_KEY=r.system.job(r.job_id)["input"]["key"], TASK_ID=submitted["task_id"])
        payload, errored, _ = r.system.stack.runtime.invoke(r.info.resources[r.function], event)

        # A task found done is Check's TaskDone signal (its Catch hands the poll state to Collect):
        # the state rides in the error message, as Step Functions' Cause carries it.
        error = json.loads(payload)
        assert errored, error
        assert error["errorType"] == "TaskDone", error
        out = json.loads(error["errorMessage"])
        assert (out["state"], out["task_id"], out["polls"]) == ("done", submitted["task_id"], 1)
        assert [(ref["kind"], ref["url"].startswith("http")) for ref in out["results"]] == [("image", True)]
        assert r.system.job(r.job_id)["polls"] == 1

    return scenario


def collect(r: Replay) -> None:
    key = r.put_input("foreground.png")
    r.create_job("segmentation", key)
    result_url = r.system.s3.generate_presigned_url(
        "get_object", Params={"Bucket": r.info.input_bucket, "Key": key}, ExpiresIn=300
    )

    # The provider of this replay serves its result from moto: a result host of task/pic here only.
    hosts = f"{os.environ['PICFLOW_RESULT_HOSTS']},taskpic={urlsplit(result_url).netloc}"
    with r.system.stack.function_environment(PICFLOW_RESULT_HOSTS=hosts):
        out = r(INPUT_KEY=key, TASK_ID="task-1", RESULT_URL=result_url)

    assert (out["manifest_key"], out["outputs"]) == (f"jobs/{r.job_id}/manifest.json", 1)
    manifest = json.loads(r.system.output(out["manifest_key"]))
    [stored] = manifest["outputs"]
    digest = hashlib.sha256(r.sample["foreground.png"]).hexdigest()
    assert (stored["key"], stored["sha256"]) == (out["primary_key"], digest)
    assert r.system.output(out["primary_key"]) == r.sample["foreground.png"]
    assert r.system.job(r.job_id)["status"] == "SUCCEEDED"


def finalize_failure(r: Replay) -> None:
    r.create_job("segmentation", status="RUNNING")
    caught = r.event(**UNREAD)["state"]["error"]

    out = r(**UNREAD)

    expected = {"type": "UpstreamTaskFailedError", "message": json.loads(caught["Cause"])["errorMessage"]}
    assert out == {"error": expected}
    job = r.system.job(r.job_id)
    assert (job["status"], job["error"]) == ("FAILED", expected)


def batch_report(r: Replay) -> None:
    batch_id = f"batch-ev{uuid.uuid4().hex[:12]}"
    items = [
        {"i": i, "bucket": r.info.input_bucket, "key": f"batches/catalogue/{i}.png", "params": {}}
        for i in (0, 1)
    ]
    r.system.s3.put_object(
        Bucket=r.info.output_bucket, Key=f"batches/{batch_id}/items.json", Body=json.dumps(items).encode()
    )
    r.job_id = f"{batch_id}-0"  # item 0 has its job; item 1 has not started
    r.create_job("remove_fabric", items[0]["key"], batch_id=batch_id, status="FAILED", error={"type": "X"})

    out = r(
        BATCH_ID=batch_id,
        OUTPUT_BUCKET=r.info.output_bucket,
        JOB_STATE_MACHINE_ARN=r.info.job_state_machine_arn,
        PIPELINE_STATE_MACHINE_ARN=r.info.resources["PipelineStateMachine"],
    )

    assert out["counts"]["FAILED"] == 1
    assert out["counts"]["NOT_STARTED"] == 1
    lines = r.system.output(out["results_key"]).decode().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["FAILED", "NOT_STARTED"]


def batch_fetch(r: Replay) -> None:
    batch_id = f"batch-ev{uuid.uuid4().hex[:12]}"
    source = f"batches/{batch_id}/source.png"
    r.system.s3.put_object(Bucket=r.info.input_bucket, Key=source, Body=r.sample["image.png"])
    # A public URL in the local stack: a presigned GET of moto, which the URL allowlist admits.
    url = r.system.s3.generate_presigned_url(
        "get_object", Params={"Bucket": r.info.input_bucket, "Key": source}
    )

    assert r(BATCH_ID=batch_id, IMAGE_URL=url, INPUT_BUCKET=r.info.input_bucket) is None

    copied = r.system.s3.get_object(Bucket=r.info.input_bucket, Key=f"uploads/{batch_id}-0/source")
    assert copied["Body"].read() == r.sample["image.png"]


def notify(r: Replay) -> None:
    r.create_job("segmentation", notify_url=r.system.mock.sink_url(r.job_id))
    r.store.update(r.job_id, {"status": "SUCCEEDED"})

    out = r(**UNREAD)

    assert out["notified"] == {"event": True, "posted": 200}
    # The last state of an execution: what a parent state machine receives.
    expected = (r.job_id, "SUCCEEDED", r.info.output_bucket)
    assert (out["job_id"], out["status"], out["output_bucket"]) == expected
    [notice] = r.system.mock.sink(r.job_id)
    assert (notice["job_id"], notice["status"]) == (r.job_id, "SUCCEEDED")


def callback(r: Replay) -> None:
    system = r.system
    system.mock.configure_callbacks(drop=True)  # the provider's own delivery never comes
    key = system.upload("segmentation/in/p.jpg", r.sample["product.jpg"], {})
    job_id = system.job_for_key(key)["job_id"]
    submit_fn = r.info.resources["OpSegmentationFunction"]
    r.wait_until(  # the submit has returned: the execution waits for its task token
        lambda: any(
            i.function == submit_fn and i.event.get("task_token") and i.event["state"]["job_id"] == job_id
            for i in system.stack.runtime.invocations
        )
    )
    task_id = system.job(job_id)["provider_task_id"]
    system.mock.advance_clock(60)  # the task ends and its result is published (on the mock's next sweep)
    task = r.wait_until(lambda: (found := system.mock.task(task_id))["urls"] and found)
    secret = task["callback_url"].rsplit("/", 1)[1]
    image_url = next(url for name, url in task["urls"].items() if name.startswith("image"))
    values = {"JOB_ID": job_id, "TASK_ID": task_id, "RESULT_URL": image_url}

    refused = r(CALLBACK_SECRET="not-" + secret, **values)
    assert (refused["statusCode"], body(refused)) == (403, {"verdict": "rejected"})
    assert system.sfn.describe_execution(executionArn=r.values(**values)["EXECUTION_ARN"])["status"] == (
        "RUNNING"
    )

    accepted = r(CALLBACK_SECRET=secret, **values)

    assert (accepted["statusCode"], body(accepted)) == (200, {"verdict": "accepted"})
    execution = system.stack.wait_for_execution(job_id)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    job = system.job(job_id)
    assert job["callback_received_at"]
    assert job["polls"] == 0  # left its wait by the callback, not by the polling fallback
    assert json.loads(system.output(job["manifest"]["key"]))["job_id"] == job_id
    assert r(CALLBACK_SECRET=secret, **values)["statusCode"] == 409  # a replay is refused


SCENARIOS: dict[str, Callable[[Replay], None]] = {
    "s3_put.json": s3_put,
    "api_create_upload.json": api_create_upload,
    "api_create_job.json": api_create_job,
    "api_get_job.json": api_get_job,
    "api_list_jobs.json": api_list_jobs,
    "api_cancel_job.json": api_cancel_job,
    "api_list_operations.json": api_list_operations,
    "validate.json": validate,
    "slot_acquire.json": slot_acquire,
    "slot_release.json": slot_release,
    **{f"op_submit_{name}.json": op_submit(name) for name in OPERATIONS},
    "op_submit_segmentation_callback.json": op_submit_segmentation_callback,
    "op_check_segmentation.json": op_check("segmentation"),
    "op_check_redraw.json": op_check("redraw"),
    "collect.json": collect,
    "finalize_failure.json": finalize_failure,
    "notify.json": notify,
    "batch_fetch.json": batch_fetch,
    "batch_report.json": batch_report,
    "callback.json": callback,
}


def test_every_function_has_a_sample_event_and_every_event_a_function():
    template = load_template(repo_root() / "template.yaml")
    functions = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    table = event_table()

    assert functions - set(table.values()) == set(), "functions without a sample event"
    assert set(table.values()) - functions == set(), "events for functions not in template.yaml"
    assert {p.name for p in EVENTS.glob("*.json")} == set(table) == set(SCENARIOS)


@pytest.mark.parametrize("event_file", sorted(SCENARIOS))
def test_sample_event_replayed_through_its_handler(system, sample, event_file):
    SCENARIOS[event_file](Replay(system, sample, event_file, event_table()[event_file]))
