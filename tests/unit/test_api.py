"""The jobs API through its Lambda handler, on moto (tables and buckets built from template.yaml).

The state machine is a non-executing stand-in: these tests check what the API asks of Step
Functions (StartExecution's name and input, StopExecution), not what the workflow then does.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import io
import json
import re
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aws_xray_sdk.core  # noqa: F401 - opens its UDP socket on import: here, before sockets are blocked
import boto3
import httpx
import pytest
import requests
import yaml
from moto import mock_aws
from picflow.api import common as api
from picflow.aws import services as workflow
from picflow.aws.jobs import JobStore
from picflow.aws.semaphore import Semaphore
from picflow.core.catalogue import OPERATIONS
from picflow.core.jsonlimits import MAX_BODY_BYTES
from picflow.entry import s3events
from picflow_cli.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
INPUT_BUCKET = "picflow-in"
OUTPUT_BUCKET = "picflow-out"
SAMPLE_JOB = "api-0123456789abcdef0123456789abcdef"


def _png(width: int = 64, height: int = 48) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


# A real image: POST /jobs reads the input's header and refuses what is no image.
PNG = _png()
PUBLIC_IP = "93.184.216.34"
# Values that must never appear in any response.
SECRETS = {
    "task_token": "TOKEN-must-stay-inside",
    "callback_secret_sha256": "f" * 64,
    "submit_marker": "MARKER-x",
}


# --- template.yaml as the one schema -----------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...) as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _any_tag)
RESOURCES = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)["Resources"]  # noqa: S506


def _create_table(logical_id: str, name: str) -> None:
    props = RESOURCES[logical_id]["Properties"]
    schema = {
        k: props[k] for k in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes") if k in props
    }
    boto3.client("dynamodb").create_table(TableName=name, BillingMode=props["BillingMode"], **schema)


def _create_bucket(logical_id: str, name: str) -> None:
    props = RESOURCES[logical_id]["Properties"]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])


# --- the handler and its events ----------------------------------------------------------


@dataclass
class LambdaContext:
    function_name: str = "picflow-ApiFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:picflow-ApiFunction"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


def _load_handler() -> ModuleType:
    # Loaded from its path under its own name: every function's module is called `app`.
    spec = importlib.util.spec_from_file_location("functions_api_app", ROOT / "functions/api/app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What the sample events' placeholders stand for in these tests (events/README.md lists them).
SAMPLE_VALUES = {
    "${JOB_ID}": "api-0123456789abcdef0123456789abcdef",
    "${INPUT_KEY}": "segmentation/cat.png",
    "${NOTIFY_URL}": "https://hooks.example.com/picflow",
}


def sample(name: str) -> dict[str, Any]:
    text = (ROOT / "events" / f"api_{name}.json").read_text()
    for placeholder, value in SAMPLE_VALUES.items():
        text = text.replace(placeholder, value)
    event: dict[str, Any] = json.loads(text)
    return event


def event(
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event, shaped like the samples in events/."""
    out = copy.deepcopy(sample("list_operations"))
    all_headers = {**out["headers"], **({"Content-Type": "application/json"} if body is not None else {})}
    all_headers.update(headers or {})
    out |= {
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None if query is None else {k: [v] for k, v in query.items()},
        "body": raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
    }
    return out


@dataclass
class Api:
    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    store: JobStore
    semaphore: Semaphore
    state_machine_arn: str
    responses: list[str]

    def __call__(self, ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        out = self.handler(ev, LambdaContext())
        self.responses.append(out["body"])
        headers = out.get("multiValueHeaders") or {k: [v] for k, v in out.get("headers", {}).items()}
        assert headers["Content-Type"] == ["application/json"]
        body: dict[str, Any] = json.loads(out["body"])
        return out["statusCode"], body

    def executions(self) -> list[dict[str, Any]]:
        sfn = boto3.client("stepfunctions")
        found = sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]
        return [sfn.describe_execution(executionArn=e["executionArn"]) for e in found]

    def job_count(self) -> int:
        return int(self.store.table.scan(Select="COUNT")["Count"])


def _fake_dns(names: dict[str, str]) -> Callable[..., list[Any]]:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in names:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]

    return getaddrinfo


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    env = {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PICFLOW_JOBS_TABLE": "picflow-jobs",
        "PICFLOW_SEMAPHORE_TABLE": "picflow-semaphore",
        "PICFLOW_INPUT_BUCKET": INPUT_BUCKET,
        "PICFLOW_OUTPUT_BUCKET": OUTPUT_BUCKET,
        "PICFLOW_RESULT_URL_TTL": "120",
        "POWERTOOLS_SERVICE_NAME": "picflow",
        "POWERTOOLS_METRICS_NAMESPACE": "picflow",
        "POWERTOOLS_TRACE_DISABLED": "1",
        # The sample events' key (events/api_*.json) is the template's own: the default tenant's.
        "PICFLOW_DEFAULT_TENANT_KEY": "abcdef1234",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PICFLOW_URL_ALLOWLIST", raising=False)
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        _fake_dns(
            {
                "hooks.example.com": PUBLIC_IP,
                "images.example.com": PUBLIC_IP,
                "internal.example.com": "10.1.2.3",
            }
        ),
    )
    with mock_aws():
        _create_table("JobsTable", env["PICFLOW_JOBS_TABLE"])
        _create_table("SemaphoreTable", env["PICFLOW_SEMAPHORE_TABLE"])
        _create_bucket("InputBucket", INPUT_BUCKET)
        _create_bucket("OutputBucket", OUTPUT_BUCKET)
        arn = boto3.client("stepfunctions").create_state_machine(
            name="picflow-job",
            definition=json.dumps({"StartAt": "Idle", "States": {"Idle": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/picflow-sfn",
        )["stateMachineArn"]
        monkeypatch.setenv("PICFLOW_STATE_MACHINE_ARN", arn)
        # Clients built inside the mock, fresh per test.
        workflow.services.cache_clear()
        api.reset_clients()
        svc = workflow.services()
        yield Api(_load_handler().lambda_handler, svc.store, svc.semaphore, arn, [])
        workflow.services.cache_clear()


def put_input(key: str, body: bytes = PNG) -> str:
    return str(boto3.client("s3").put_object(Bucket=INPUT_BUCKET, Key=key, Body=body)["VersionId"])


def job_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "operation": "background",
        "params": {"prompt": "a beach at dawn", "batch_size": 2},
        "input": {"key": "background/shoe.png"},
    }
    return body | overrides


def assert_error(status: int, body: dict[str, Any], expected_status: int, field: str | None) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "field", "rule"}
    assert body["error"]["field"] == field
    assert body["error"]["message"]


# --- GET /operations, unknown routes -----------------------------------------------------


def test_operations_sample_lists_the_whole_catalogue(client: Api) -> None:
    status, body = client(sample("list_operations"))
    assert status == 200
    assert [op["operation"] for op in body["operations"]] == list(OPERATIONS)
    assert len(body["operations"]) == 14


def test_operations_lists_the_pipeline_with_its_steps_and_the_catalogues_rules(client: Api) -> None:
    _, body = client(sample("list_operations"))

    (pipeline,) = body["pipelines"]
    assert pipeline["pipeline"] == "pipeline"
    assert [(s["step"], s["operation"]) for s in pipeline["steps"]] == [
        ("cutout", "segmentation"),
        ("background", "background"),
        ("upscale", "redraw"),
    ]
    catalogue = {op["operation"]: {p["name"]: p for p in op["params"]} for op in body["operations"]}
    for param in pipeline["params"]:
        # Each batch param is described by the step that takes it, rule and default included.
        assert {k: v for k, v in param.items() if k != "operation"} == catalogue[param["operation"]][
            param["name"]
        ]
    assert [(p["name"], p["operation"], p["required"]) for p in pipeline["params"]] == [
        ("prompt", "background", True),
        ("upscale", "redraw", False),
    ]


def test_the_pipeline_is_not_a_job_operation(client: Api) -> None:
    status, body = client(event("POST", "/jobs", job_body(operation="pipeline", params={})))
    assert_error(status, body, 422, "operation")


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("PUT", "/jobs"), ("POST", "/operations")])
def test_unknown_route_404_json(client: Api, method: str, path: str) -> None:
    status, body = client(event(method, path))
    assert_error(status, body, 404, None)
    assert body["error"]["type"] == "NotFound"


def test_unexpected_failure_500_json_without_internals(
    client: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(job_id: str) -> None:
        raise RuntimeError("s3://secret-bucket/key?X-Amz-Signature=abc")

    monkeypatch.setattr(client.store, "get", broken)
    status, body = client(event("GET", "/jobs/api-x"))
    assert_error(status, body, 500, None)
    assert body["error"]["type"] == "InternalError"
    assert "secret" not in client.responses[-1]
    # The handler's EMF line counts it as a server error.
    assert '"Api5xx":[1.0]' in capsys.readouterr().out


# --- POST /uploads -----------------------------------------------------------------------


def test_upload_sample_presigns_a_put_under_uploads(client: Api) -> None:
    status, body = client(sample("create_upload"))
    assert status == 201
    assert re.fullmatch(r"[0-9a-f]{32}", body["upload_id"])
    assert body["key"] == f"uploads/{body['upload_id']}/cat.png"
    assert body["method"] == "PUT"
    assert body["headers"] == {"Content-Type": "image/png"}
    assert body["expires_in"] == api.UPLOAD_URL_TTL
    query = parse_qs(urlsplit(body["url"]).query)
    assert query["X-Amz-Expires"] == [str(api.UPLOAD_URL_TTL)]
    assert "content-type" in query["X-Amz-SignedHeaders"][0]


def test_upload_then_job_by_upload_id_starts_on_the_uploaded_object(client: Api) -> None:
    # GIVEN an upload URL, used the way a client would
    _, upload = client(
        event("POST", "/uploads", {"filename": "../../etc/my shoe.PNG", "content_type": "image/png"})
    )
    assert upload["key"].endswith("/my_shoe.PNG")
    put = requests.put(upload["url"], data=PNG, headers=upload["headers"], timeout=5)
    assert put.status_code == 200
    # WHEN a job names the upload
    status, created = client(event("POST", "/jobs", job_body(input={"upload_id": upload["upload_id"]})))
    # THEN it runs on that object, pinned to its version
    assert status == 202
    (execution,) = client.executions()
    started = json.loads(execution["input"])
    assert started["input"]["key"] == upload["key"]
    assert started["input"]["version_id"]
    assert execution["name"] == created["job_id"]


def test_upload_key_is_ignored_by_the_s3_trigger() -> None:
    records = [
        {
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": INPUT_BUCKET}, "object": {"key": key, "sequencer": "01"}},
        }
        for key in ("uploads/0a1b/cat.png", "uploads/api-123/source", "segmentation/cat.png")
    ]
    assert [u.key for u in s3events.uploads({"Records": records})] == ["segmentation/cat.png"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"filename": "cat.png", "content_type": "text/html"}, "content_type"),
        ({"filename": "", "content_type": "image/png"}, "filename"),
        ({"filename": "...", "content_type": "image/png"}, "filename"),
        ({"content_type": "image/png"}, "filename"),
        ({"filename": "cat.png", "content_type": "image/png", "acl": "public-read"}, "acl"),
    ],
)
def test_upload_bad_request_422_names_field(client: Api, body: dict[str, Any], field: str) -> None:
    status, out = client(event("POST", "/uploads", body))
    assert_error(status, out, 422, field)


# --- POST /jobs --------------------------------------------------------------------------


def test_create_job_sample_starts_one_execution_with_the_request(client: Api) -> None:
    version = put_input("segmentation/cat.png")
    status, body = client(sample("create_job"))
    assert status == 202
    job_id = body["job_id"]
    assert body == {
        "job_id": job_id,
        "status": "QUEUED",
        "created": True,
        "links": {"self": f"/jobs/{job_id}"},
    }
    (execution,) = client.executions()
    assert execution["name"] == job_id
    assert json.loads(execution["input"]) == {
        "job_id": job_id,
        "operation": "segmentation",
        "params": {"output_type": 1, "format": "png"},
        "input": {"bucket": INPUT_BUCKET, "key": "segmentation/cat.png", "version_id": version},
        "notify_url": "https://hooks.example.com/picflow",
        "mode": "auto",
        "source": "api",
        "tenant": "default",
    }
    record = client.store.get(job_id)
    assert record is not None
    assert record["execution_arn"] == execution["executionArn"]
    assert record["source"] == "api"
    assert record["tenant"] == "default"


def test_create_job_without_key_gets_a_fresh_id_each_time(client: Api) -> None:
    put_input("background/shoe.png")
    ids = [client(event("POST", "/jobs", job_body()))[1]["job_id"] for _ in range(2)]
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"api-[0-9a-f]{32}", i) for i in ids)
    assert sorted(e["name"] for e in client.executions()) == sorted(ids)


def test_idempotency_key_replay_returns_the_same_job_and_starts_once(client: Api) -> None:
    put_input("background/shoe.png")
    headers = {"Idempotency-Key": "order-77"}
    first_status, first = client(event("POST", "/jobs", job_body(), headers=headers))
    # The same body in another key order and spacing is the same request.
    reordered = json.dumps(dict(reversed(list(job_body().items()))), indent=3)
    again_status, again = client(
        event("POST", "/jobs", raw_body=reordered, headers=headers | {"Content-Type": "application/json"})
    )
    assert (first_status, again_status) == (202, 200)
    assert again == {**first, "created": False}
    assert len(client.executions()) == 1


def test_idempotency_key_reused_with_another_body_409(client: Api) -> None:
    put_input("background/shoe.png")
    headers = {"idempotency-key": "order-78"}
    client(event("POST", "/jobs", job_body(), headers=headers))
    other = job_body(params={"prompt": "a snowy street", "batch_size": 2})
    status, body = client(event("POST", "/jobs", other, headers=headers))
    assert_error(status, body, 409, "Idempotency-Key")
    (execution,) = client.executions()
    assert json.loads(execution["input"])["params"]["prompt"] == "a beach at dawn"


def test_idempotency_key_race_with_another_body_starts_nothing_more(client: Api) -> None:
    # GIVEN a job record claimed by a concurrent request whose start has not happened yet
    from picflow.core.names import job_id_for

    put_input("background/shoe.png")
    job_id = job_id_for("api", "order-79")
    client.store.create({"job_id": job_id, "operation": "background", "request_sha256": "0" * 64})
    # WHEN another body arrives with the same key THEN it is refused and starts nothing
    status, body = client(event("POST", "/jobs", job_body(), headers={"Idempotency-Key": "order-79"}))
    assert_error(status, body, 409, "Idempotency-Key")
    assert client.executions() == []


def test_create_job_by_url_streams_the_image_into_the_input_bucket(
    client: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "images.example.com"
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})

    monkeypatch.setattr(api, "fetch_client", lambda: httpx.Client(transport=httpx.MockTransport(upstream)))
    status, body = client(
        event("POST", "/jobs", job_body(input={"url": "https://images.example.com/shoe.png"}))
    )
    assert status == 202
    key = f"uploads/{body['job_id']}/source"
    stored = boto3.client("s3").get_object(Bucket=INPUT_BUCKET, Key=key)
    assert stored["Body"].read() == PNG
    assert stored["ContentType"] == "image/png"
    (execution,) = client.executions()
    assert json.loads(execution["input"])["input"]["key"] == key


def test_create_job_by_url_oversize_stream_422_and_nothing_stored(
    client: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = OPERATIONS["replace_background"].input.max_bytes

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap must hold while streaming
        sent = 0
        while sent <= limit:
            yield b"\x00" * 65536
            sent += 65536

    monkeypatch.setattr(
        api,
        "fetch_client",
        lambda: httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(200, content=chunks()))),
    )
    body = {
        "operation": "replace_background",
        "params": {"prompt": "a marble table"},
        "input": {"url": "https://images.example.com/huge.png"},
    }
    status, out = client(event("POST", "/jobs", body))
    assert_error(status, out, 422, "input.url")
    assert out["error"]["rule"] == f"at most {limit} bytes"
    assert boto3.client("s3").list_objects_v2(Bucket=INPUT_BUCKET).get("KeyCount") == 0
    assert client.executions() == []


def test_create_job_by_url_redirect_to_metadata_422(client: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    monkeypatch.setattr(api, "fetch_client", lambda: httpx.Client(transport=httpx.MockTransport(upstream)))
    status, out = client(event("POST", "/jobs", job_body(input={"url": "https://images.example.com/a.png"})))
    assert_error(status, out, 422, "input.url")
    assert out["error"]["type"] == "UnsafeUrlError"
    assert client.executions() == []


BAD_JOBS: list[tuple[str, dict[str, Any], str]] = [
    ("missing operation", {k: v for k, v in job_body().items() if k != "operation"}, "operation"),
    ("unknown operation", job_body(operation="teleport"), "operation"),
    ("param out of range", job_body(params={"prompt": "x", "batch_size": 9}), "params.batch_size"),
    ("param missing", job_body(params={"batch_size": 1}), "params.prompt"),
    ("unknown param", job_body(params={"prompt": "x", "colour": "red"}), "params.colour"),
    ("params not an object", job_body(params=[1, 2]), "params"),
    (
        "unsupported mode",
        job_body(operation="replace_background", params={"prompt": "x"}, mode="poll"),
        "mode",
    ),
    ("unknown mode", job_body(mode="fast"), "mode"),
    (
        "two inputs",
        job_body(input={"key": "background/shoe.png", "url": "https://images.example.com/a"}),
        "input",
    ),
    ("no input source", job_body(input={}), "input"),
    ("missing input", {k: v for k, v in job_body().items() if k != "input"}, "input"),
    ("unknown input field", job_body(input={"bucket": "other", "key": "a.png"}), "input.bucket"),
    ("malformed upload id", job_body(input={"upload_id": "../../x"}), "input.upload_id"),
    ("upload never made", job_body(input={"upload_id": "0" * 32}), "input.upload_id"),
    ("missing key", job_body(input={"key": "background/none.png"}), "input.key"),
    ("empty object", job_body(input={"key": "background/empty.png"}), "input.key"),
    (
        "oversize object",
        job_body(
            operation="replace_background",
            params={"prompt": "x"},
            input={"key": "replace_background/big.png"},
        ),
        "input.key",
    ),
    ("extra top-level field", job_body(priority="high"), "priority"),
    ("metadata URL", job_body(input={"url": "http://169.254.169.254/latest/meta-data/"}), "input.url"),
    ("decimal loopback", job_body(input={"url": "http://2130706433/a.png"}), "input.url"),
    ("hex loopback", job_body(input={"url": "http://0x7f.1/a.png"}), "input.url"),
    ("private by DNS", job_body(input={"url": "http://internal.example.com/a.png"}), "input.url"),
    ("file scheme", job_body(input={"url": "file:///etc/passwd"}), "input.url"),
    ("user-info", job_body(input={"url": "https://me:pw@images.example.com/a.png"}), "input.url"),
    ("IPv6 mapped", job_body(input={"url": "http://[::ffff:10.0.0.1]/a.png"}), "input.url"),
    ("notify to loopback", job_body(notify_url="http://localhost:8080/hook"), "notify_url"),
    ("notify to CGNAT", job_body(notify_url="http://100.64.1.1/hook"), "notify_url"),
    # URL-valued params are handed to the provider, which fetches them on picflow's behalf.
    *[
        (
            f"{name} {case}",
            job_body(operation="replace_background", params={"prompt": "x", **params}),
            f"params.{name}",
        )
        for case, url in [
            ("to metadata", "http://169.254.169.254/latest/meta-data/"),
            ("file scheme", "file:///etc/passwd"),
            ("to loopback", "http://2130706433/m.png"),
        ]
        for name, params in [
            ("mask_url", {"mask_url": url}),
            ("logo_param.logo_url", {"logo_param": {"logo_url": url}}),
        ]
    ],
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_JOBS, ids=[c[0] for c in BAD_JOBS])
def test_create_job_bad_input_422_names_field_and_starts_nothing(
    client: Api, case: str, body: dict[str, Any], field: str
) -> None:
    put_input("background/shoe.png")
    put_input("background/empty.png", b"")
    put_input("replace_background/big.png", b"\x00" * (OPERATIONS["replace_background"].input.max_bytes + 1))
    status, out = client(
        event("POST", "/jobs", body, headers={"Idempotency-Key": f"k-{case}".replace(" ", "-")})
    )
    assert_error(status, out, 422, field)
    assert out["error"]["rule"]
    assert client.executions() == []
    assert client.job_count() == 0


@pytest.mark.parametrize(
    ("case", "data", "rule"),
    [
        ("text", b"hello, this is no picture at all", "a decodable image"),
        ("GIF", b"GIF89a" + b"\x00" * 64, "a decodable image"),
        ("too wide", _png(300, 60), "ratio within 2:5..5:2"),
    ],
)
def test_create_job_on_an_upload_that_is_no_usable_image_422_before_any_job(
    client: Api, case: str, data: bytes, rule: str
) -> None:
    # The header decides, so the caller hears it now and no FAILED job is left behind.
    put_input(f"replace_background/{case}.png", data)
    body = job_body(
        operation="replace_background",
        params={"prompt": "x"},
        input={"key": f"replace_background/{case}.png"},
    )
    status, out = client(event("POST", "/jobs", body))
    assert_error(status, out, 422, "input.key")
    assert out["error"]["rule"] == rule
    assert client.executions() == []
    assert client.job_count() == 0


@pytest.mark.parametrize(
    ("headers", "raw", "status", "field"),
    [
        ({"Content-Type": "application/json"}, '{"operation": ', 400, "body"),
        ({"Content-Type": "text/plain"}, "operation=background", 415, "Content-Type"),
        ({"Content-Type": "application/json", "Idempotency-Key": "has space"}, None, 422, "Idempotency-Key"),
        ({"Content-Type": "application/json", "Idempotency-Key": "k" * 256}, None, 422, "Idempotency-Key"),
    ],
)
def test_create_job_malformed_request_4xx_names_field(
    client: Api, headers: dict[str, str], raw: str | None, status: int, field: str
) -> None:
    put_input("background/shoe.png")
    got, out = client(event("POST", "/jobs", raw_body=raw or json.dumps(job_body()), headers=headers))
    assert_error(got, out, status, field)
    assert client.executions() == []


# --- GET /jobs/{job_id} ------------------------------------------------------------------


def _finished_job(client: Api, job_id: str) -> dict[str, bytes]:
    """A SUCCEEDED job as Collect leaves it: objects and manifest in S3, the manifest on the record."""
    s3 = boto3.client("s3")
    files = {f"jobs/{job_id}/image.png": PNG, f"jobs/{job_id}/mask.png": PNG + b"mask"}
    outputs = []
    for index, (key, data) in enumerate(files.items()):
        s3.put_object(Bucket=OUTPUT_BUCKET, Key=key, Body=data)
        outputs.append(
            {
                "kind": "image" if index == 0 else "mask",
                "index": 0,
                "key": key,
                "content_type": "image/png",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "width": 8,
                "height": 8,
            }
        )
    s3.put_object(Bucket=OUTPUT_BUCKET, Key=f"jobs/{job_id}/manifest.json", Body=b"{}")
    client.store.create(
        {
            "job_id": job_id,
            "operation": "segmentation",
            "params": {"output_type": 1},
            "source": "api",
            **SECRETS,
        }
    )
    client.store.update(
        job_id,
        {
            "status": "SUCCEEDED",
            "provider": "taskpic",
            "style": "poll",
            "progress": 100,
            "polls": 3,
            "submitted_at": "2026-01-01T00:00:01.000Z",
            "completed_at": "2026-01-01T00:00:09.500Z",
            "duration_seconds": 8.5,
            "cost_units": 1,
            "cost_unit": "taskpic.call",
            "manifest": {
                "bucket": OUTPUT_BUCKET,
                "key": f"jobs/{job_id}/manifest.json",
                "outputs": outputs,
                "texts": {"prompt": "a cat"},
            },
        },
    )
    return files


def test_get_job_sample_returns_results_with_short_lived_urls(client: Api) -> None:
    files = _finished_job(client, SAMPLE_JOB)
    status, body = client(sample("get_job"))
    assert status == 200
    assert (body["status"], body["operation"], body["progress"], body["polls"]) == (
        "SUCCEEDED",
        "segmentation",
        100,
        3,
    )
    assert body["timings"]["duration_seconds"] == 8.5
    assert body["timings"]["completed_at"] == "2026-01-01T00:00:09.500Z"
    assert body["cost"] == {"units": 1, "unit": "taskpic.call"}
    assert body["texts"] == {"prompt": "a cat"}
    assert [r["kind"] for r in body["results"]] == ["image", "mask"]
    for result in body["results"]:
        assert result["expires_in"] == 120
        assert parse_qs(urlsplit(result["url"]).query)["X-Amz-Expires"] == ["120"]
        fetched = requests.get(result["url"], timeout=5)
        assert fetched.content == files[result["key"]]
        assert hashlib.sha256(fetched.content).hexdigest() == result["sha256"]
    assert requests.get(body["manifest_url"], timeout=5).content == b"{}"


def test_get_job_never_shows_secrets_or_markers(client: Api) -> None:
    _finished_job(client, SAMPLE_JOB)
    client(sample("get_job"))
    client(event("GET", "/jobs"))
    client(sample("cancel_job"))  # 409 (already final), still a response to inspect
    assert len(client.responses) == 3
    for text in client.responses:
        for name, value in SECRETS.items():
            assert name not in text
            assert value not in text


def test_get_job_failed_shows_the_recorded_error(client: Api) -> None:
    client.store.create({"job_id": "api-failed", "operation": "redraw"})
    error = {"type": "UpstreamTaskFailedError", "message": "bad image", "provider": "hdredraw", "code": 13}
    client.store.update("api-failed", {"status": "FAILED", "error": error})
    status, body = client(event("GET", "/jobs/api-failed"))
    assert status == 200
    assert body["error"] == error
    assert body["results"] == []


@pytest.mark.parametrize(
    ("path", "status", "field"), [("/jobs/api-unknown", 404, "job_id"), ("/jobs/bad%20id", 422, "job_id")]
)
def test_get_job_unknown_or_malformed_id(client: Api, path: str, status: int, field: str) -> None:
    got, body = client(event("GET", path))
    assert_error(got, body, status, field)


# --- GET /jobs ---------------------------------------------------------------------------


def _three_jobs(client: Api) -> None:
    for job_id, operation in (("api-a", "redraw"), ("api-b", "background"), ("api-c", "redraw")):
        client.store.create({"job_id": job_id, "operation": operation})
    client.store.update("api-b", {"status": "RUNNING"})


def test_list_jobs_filters_by_status_and_operation(client: Api) -> None:
    _three_jobs(client)
    _, running = client(event("GET", "/jobs", query={"status": "RUNNING"}))
    assert [j["job_id"] for j in running["jobs"]] == ["api-b"]
    _, redraws = client(event("GET", "/jobs", query={"operation": "redraw"}))
    assert sorted(j["job_id"] for j in redraws["jobs"]) == ["api-a", "api-c"]
    _, none_since = client(event("GET", "/jobs", query={"since": "2999-01-01"}))
    assert none_since["jobs"] == []
    _, all_since = client(event("GET", "/jobs", query={"since": "2000-01-01T00:00:00Z"}))
    assert len(all_since["jobs"]) == 3


def test_list_jobs_cursor_pages_through_everything(client: Api) -> None:
    _three_jobs(client)
    seen: list[str] = []
    query = {"limit": "1", "status": "QUEUED"}
    for _ in range(5):
        status, page = client(event("GET", "/jobs", query=query))
        assert status == 200
        seen += [j["job_id"] for j in page["jobs"]]
        if not page["cursor"]:
            break
        query = {**query, "cursor": page["cursor"]}
    assert sorted(seen) == ["api-a", "api-c"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"operation": "teleport"}, "operation"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"password": "x"}').decode()}, "cursor"),
        ({"stauts": "FAILED"}, "stauts"),  # misspelt: must not list everything
        ({"status": "FAILED", "page": "2"}, "page"),
    ],
)
def test_list_jobs_bad_query_422_names_field(client: Api, query: dict[str, str], field: str) -> None:
    status, body = client(event("GET", "/jobs", query=query))
    assert_error(status, body, 422, field)


def test_a_route_without_query_parameters_refuses_one(client: Api) -> None:
    status, body = client(event("GET", "/operations", query={"verbose": "1"}))
    assert_error(status, body, 422, "verbose")
    assert body["error"]["rule"] == "no query parameters"


def test_list_jobs_sample(client: Api) -> None:
    _three_jobs(client)
    status, body = client(sample("list_jobs"))
    assert status == 200
    assert {j["job_id"] for j in body["jobs"]} == {"api-a", "api-c"}


# --- DELETE /jobs/{job_id} ---------------------------------------------------------------


def test_cancel_sample_stops_execution_marks_cancelled_and_frees_the_slot(client: Api) -> None:
    # GIVEN a running job holding the only Tencent slot (Validate has not recorded the provider yet)
    put_input("replace_background/shoe.png")
    body = {
        "operation": "replace_background",
        "params": {"prompt": "a marble table"},
        "input": {"key": "replace_background/shoe.png"},
    }
    _, created = client(event("POST", "/jobs", body))
    job_id = created["job_id"]
    client.store.update(job_id, {"status": "RUNNING"})
    assert client.semaphore.acquire("tencent", job_id, 1, 600).acquired
    cancel = sample("cancel_job") | {"path": f"/jobs/{job_id}", "pathParameters": {"job_id": job_id}}
    # WHEN it is cancelled
    status, out = client(cancel)
    # THEN the execution is stopped, the job CANCELLED, the slot free for the next job
    assert status == 200
    assert out["status"] == "CANCELLED"
    assert (out["execution_stopped"], out["slot_released"], out["upstream_cancelled"]) == (True, True, False)
    assert "upstream cancel" in out["note"]
    (execution,) = client.executions()
    assert execution["status"] == "ABORTED"
    record = client.store.get(job_id)
    assert record is not None
    assert record["status"] == "CANCELLED"
    assert record["error"]["type"] == "Cancelled"
    assert client.semaphore.holders("tencent") == {}
    assert client.semaphore.acquire("tencent", "api-next", 1, 600).acquired
    # AND a second cancel is a conflict
    again, conflict = client(cancel)
    assert_error(again, conflict, 409, "job_id")


def test_cancel_finished_job_409_and_untouched(client: Api) -> None:
    _finished_job(client, SAMPLE_JOB)
    status, body = client(sample("cancel_job"))
    assert_error(status, body, 409, "job_id")
    assert "SUCCEEDED" in body["error"]["message"]
    record = client.store.get(SAMPLE_JOB)
    assert record is not None
    assert record["status"] == "SUCCEEDED"


def test_cancel_unknown_job_404(client: Api) -> None:
    status, body = client(event("DELETE", "/jobs/api-unknown"))
    assert_error(status, body, 404, "job_id")


# --- batches: pause and resume -----------------------------------------------------------


@pytest.fixture
def batch_machine(client: Api, monkeypatch: pytest.MonkeyPatch) -> str:
    arn = boto3.client("stepfunctions").create_state_machine(
        name="picflow-batch",
        definition=json.dumps({"StartAt": "Idle", "States": {"Idle": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/picflow-sfn",
    )["stateMachineArn"]
    monkeypatch.setenv("PICFLOW_BATCH_STATE_MACHINE_ARN", arn)
    return str(arn)


def _started_batch(client: Api, items: int = 4) -> str:
    """A running vectorize batch of ``items`` images (at most two in flight)."""
    prefix = f"batches/{uuid.uuid4().hex[:8]}/"
    for i in range(items):
        put_input(f"{prefix}{i}.png")
    body = {"operation": "vectorize", "params": {"color_count": 4}, "prefix": prefix, "max_concurrency": 2}
    status, created = client(event("POST", "/batches", body | {"tolerated_failure_percentage": 50}))
    assert status == 202, created
    return str(created["batch_id"])


def _end(batch_machine: str, batch_id: str) -> None:
    """The batch's execution ends (moto's never run: stopping one ends it ABORTED)."""
    arn = batch_machine.replace(":stateMachine:", ":execution:") + f":{batch_id}"
    boto3.client("stepfunctions").stop_execution(executionArn=arn)


def _flag(batch_id: str) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table("picflow-semaphore")
    item: dict[str, Any] | None = table.get_item(Key={"name": f"batch-pause#{batch_id}"}).get("Item")
    return item


def test_pause_running_batch_sets_its_flag_and_a_second_pause_is_200_unchanged(
    client: Api, batch_machine: str
) -> None:
    # GIVEN a running batch
    batch_id = _started_batch(client)

    # WHEN it is paused, twice
    status, paused = client(event("POST", f"/batches/{batch_id}/pause"))
    again_status, again = client(event("POST", f"/batches/{batch_id}/pause"))

    # THEN the flag is written once; both answers say paused, at the first time
    assert status == 200, paused
    assert paused["paused"] is True
    assert paused["status"] == "RUNNING"  # it drains: started items finish
    assert "BatchPaused" in paused["note"]
    assert (again_status, again["paused_at"]) == (200, paused["paused_at"])
    assert _flag(batch_id) == {
        "name": f"batch-pause#{batch_id}",
        "batch_id": batch_id,
        "paused_at": paused["paused_at"],
    }
    # AND the batch shows paused; pausing stopped nothing itself
    _, view = client(event("GET", f"/batches/{batch_id}"))
    assert (view["paused"], view["paused_at"], view["status"]) == (True, paused["paused_at"], "RUNNING")
    # AND once it has drained and ended, pausing it again is still the same 200
    _end(batch_machine, batch_id)
    assert client(event("POST", f"/batches/{batch_id}/pause"))[0] == 200


def test_pause_a_batch_that_has_ended_is_409_and_writes_nothing(client: Api, batch_machine: str) -> None:
    batch_id = _started_batch(client)
    _end(batch_machine, batch_id)

    status, body = client(event("POST", f"/batches/{batch_id}/pause"))

    assert_error(status, body, 409, "batch_id")
    assert body["error"]["type"] == "BatchFinal"
    assert _flag(batch_id) is None
    _, view = client(event("GET", f"/batches/{batch_id}"))
    assert view["paused"] is False


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pause_or_resume_an_unknown_batch_404(client: Api, batch_machine: str, action: str) -> None:
    status, body = client(event("POST", f"/batches/batch-unknown/{action}"))
    assert_error(status, body, 404, "batch_id")


def test_resume_a_running_batch_is_409_and_starts_nothing(client: Api, batch_machine: str) -> None:
    batch_id = _started_batch(client)
    client(event("POST", f"/batches/{batch_id}/pause"))  # paused, still draining

    status, body = client(event("POST", f"/batches/{batch_id}/resume"))

    assert_error(status, body, 409, "batch_id")
    assert body["error"]["type"] == "BatchRunning"
    sfn = boto3.client("stepfunctions")
    assert len(sfn.list_executions(stateMachineArn=batch_machine)["executions"]) == 1


def _records(client: Api, batch_id: str, statuses: dict[int, str]) -> None:
    for i, status in statuses.items():
        error = {"type": "BatchPaused", "message": "paused"} if status == "CANCELLED" else None
        client.store.create(
            {"job_id": f"{batch_id}-{i}", "batch_id": batch_id, "status": status, "error": error}
        )


def _execution_input(batch_machine: str, batch_id: str) -> dict[str, Any]:
    arn = batch_machine.replace(":stateMachine:", ":execution:") + f":{batch_id}"
    got: dict[str, Any] = json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=arn)["input"]
    )
    return got


def test_resume_an_ended_batch_runs_exactly_the_items_that_did_not_succeed(
    client: Api, batch_machine: str
) -> None:
    # GIVEN a batch of four, paused and ended: item 0 succeeded, 1 was paused, 2 failed, 3 never ran
    batch_id = _started_batch(client)
    client(event("POST", f"/batches/{batch_id}/pause"))
    _records(client, batch_id, {0: "SUCCEEDED", 1: "CANCELLED", 2: "FAILED"})
    _end(batch_machine, batch_id)
    output = boto3.client("s3")
    planned = json.loads(
        output.get_object(Bucket=OUTPUT_BUCKET, Key=f"batches/{batch_id}/items.json")["Body"].read()
    )

    # WHEN it is resumed
    status, created = client(event("POST", f"/batches/{batch_id}/resume"))

    # THEN a new batch <id>-r1 runs items 1-3 as planned, with the original's settings, reuse on
    assert status == 202, created
    new_id = f"{batch_id}-r1"
    assert created == {
        "batch_id": new_id,
        "status": "RUNNING",
        "created": True,
        "total": 3,
        "max_concurrency": 2,
        "resumed_from": batch_id,
        "links": {"self": f"/batches/{new_id}"},
    }
    items = json.loads(
        output.get_object(Bucket=OUTPUT_BUCKET, Key=f"batches/{new_id}/items.json")["Body"].read()
    )
    assert items == planned[1:]
    original, resumed = _execution_input(batch_machine, batch_id), _execution_input(batch_machine, new_id)
    for key in (
        "operation",
        "params",
        "source",
        "max_concurrency",
        "tolerated_failure_percentage",
        "pipeline",
    ):
        assert resumed[key] == original[key], key
    assert (resumed["total"], resumed["reuse"], resumed["resumed_from"]) == (3, True, batch_id)
    _, view = client(event("GET", f"/batches/{new_id}"))
    assert (view["resumed_from"], view["paused"], view["total"]) == (batch_id, False, 3)

    # AND a second resume returns that batch, starting nothing
    again_status, again = client(event("POST", f"/batches/{batch_id}/resume"))
    assert (again_status, again["batch_id"], again["created"]) == (200, new_id, False)
    sfn = boto3.client("stepfunctions")
    assert len(sfn.list_executions(stateMachineArn=batch_machine)["executions"]) == 2

    # AND the resume, once ended, resumes as -r2 over what it left undone
    _records(client, new_id, {1: "SUCCEEDED", 2: "SUCCEEDED", 3: "CANCELLED"})
    _end(batch_machine, new_id)
    status2, created2 = client(event("POST", f"/batches/{new_id}/resume"))
    assert (status2, created2["batch_id"], created2["total"]) == (202, f"{batch_id}-r2", 1)


def test_resume_a_batch_whose_every_item_succeeded_is_409(client: Api, batch_machine: str) -> None:
    batch_id = _started_batch(client, items=2)
    _records(client, batch_id, {0: "SUCCEEDED", 1: "SUCCEEDED"})
    _end(batch_machine, batch_id)

    status, body = client(event("POST", f"/batches/{batch_id}/resume"))

    assert_error(status, body, 409, "batch_id")
    assert body["error"]["type"] == "NothingToResume"


# --- OpenAPI -----------------------------------------------------------------------------


def test_openapi_document_committed_matches_the_code() -> None:
    committed = json.loads((ROOT / "docs/openapi.json").read_text())
    assert committed == openapi_document(), "docs/openapi.json drifted: run python -m picflow_cli.openapi"


def test_openapi_document_is_valid_3_0_with_api_key_on_every_route() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV30SpecValidator

    doc = openapi_document()
    validate(doc, cls=OpenAPIV30SpecValidator)
    assert doc["openapi"].startswith("3.0.")
    assert doc["components"]["securitySchemes"]["api_key"] == {
        "type": "apiKey",
        "name": "x-api-key",
        "in": "header",
    }
    routes = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert routes == {
        ("POST", "/uploads"),
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("DELETE", "/jobs/{job_id}"),
        ("GET", "/operations"),
        ("POST", "/batches"),
        ("GET", "/batches"),
        ("GET", "/batches/{batch_id}"),
        ("DELETE", "/batches/{batch_id}"),
        ("POST", "/batches/{batch_id}/pause"),
        ("POST", "/batches/{batch_id}/resume"),
    }
    for item in doc["paths"].values():
        for operation in item.values():
            assert operation["security"] == [{"api_key": []}]
    text = json.dumps(doc)
    for construct in ('"const"', '{"type": "null"}', '"examples"', '"$schema"', '"exclusiveMinimum": 0'):
        assert construct not in text


def test_template_routes_match_the_resolver() -> None:
    events = RESOURCES["ApiFunction"]["Properties"]["Events"].values()
    in_template = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events}
    in_code = {(m.upper(), p) for p, item in openapi_document()["paths"].items() for m in item}
    assert in_template == in_code


# --- hostile JSON (issue 15, finding 5): 4xx, never a 5xx ------------------------------------

HOSTILE_ROUTES = ["/jobs", "/uploads", "/batches"]


def _deep(levels: int) -> str:
    return '{"operation": "segmentation", "params": ' + '{"a": ' * levels + "1" + "}" * levels + "}"


@pytest.mark.parametrize("path", HOSTILE_ROUTES)
@pytest.mark.parametrize(
    ("raw", "status", "rule"),
    [
        (_deep(1000), 400, "nested"),
        (_deep(3000), 400, "nested"),
        ('{"operation": "segmentation", "params": {"seed": ' + "9" * 5000 + "}}", 400, "digits"),
        ('{"operation": "segmentation", "params": {"seed": 1.' + "5" * 5000 + "}}", 400, "digits"),
        (
            '{"operation": "segmentation", "params": {"prompt": "' + "x" * (MAX_BODY_BYTES + 1) + '"}}',
            413,
            "bytes",
        ),
    ],
    ids=["deep-1000", "deep-3000", "int-5000-digits", "float-5000-digits", "over-the-size-limit"],
)
def test_post_routes_answer_hostile_json_4xx_in_the_error_shape(
    client: Api,
    path: str,
    raw: str,
    status: int,
    rule: str,
) -> None:
    got, body = client(event("POST", path, raw_body=raw, headers={"Content-Type": "application/json"}))
    assert got == status, body
    assert body["error"]["field"] == "body"
    assert rule in body["error"]["rule"]


# --- tenants: one API key each; nothing of one is visible to another ---------------------------


def as_tenant(request: dict[str, Any], key_id: str) -> dict[str, Any]:
    """``request`` as the caller whose API key has the id ``key_id`` (API Gateway's context)."""
    out = copy.deepcopy(request)
    out["requestContext"]["identity"]["apiKeyId"] = key_id
    return out


def test_tenants_never_see_read_cancel_or_list_each_others_jobs(client: Api) -> None:
    put_input("background/shoe.png")
    put_input("tenants/key-b/background/shoe.png")
    key = {"Idempotency-Key": "same-key"}
    # GIVEN a job of the default tenant (the template's key) and one of tenant B, same Idempotency-Key
    status_a, a = client(event("POST", "/jobs", job_body(), headers=key))
    body_b = job_body(input={"key": "tenants/key-b/background/shoe.png"})
    status_b, b = client(as_tenant(event("POST", "/jobs", body_b, headers=key), "key-b"))
    assert (status_a, status_b) == (202, 202)  # B's key is B's: it replays nothing of A's
    assert a["job_id"] != b["job_id"]
    assert (client.store.get(a["job_id"]) or {})["tenant"] == "default"
    assert (client.store.get(b["job_id"]) or {})["tenant"] == "key-b"
    # WHEN each asks for, cancels or lists the other's THEN it is exactly an unknown job
    _, unknown = client(as_tenant(event("GET", "/jobs/api-unknown"), "key-b"))
    for method in ("GET", "DELETE"):
        status, body = client(as_tenant(event(method, f"/jobs/{a['job_id']}"), "key-b"))
        assert_error(status, body, 404, "job_id")
        assert body["error"]["message"] == unknown["error"]["message"].replace("api-unknown", a["job_id"])
        status, body = client(event(method, f"/jobs/{b['job_id']}"))
        assert_error(status, body, 404, "job_id")
    assert (client.store.get(a["job_id"]) or {})["status"] != "CANCELLED"
    for query in ({}, {"status": "QUEUED"}, {"operation": "background"}):
        _, mine_a = client(event("GET", "/jobs", query=query))
        _, mine_b = client(as_tenant(event("GET", "/jobs", query=query), "key-b"))
        assert [j["job_id"] for j in mine_a["jobs"]] == [a["job_id"]], query
        assert [j["job_id"] for j in mine_b["jobs"]] == [b["job_id"]], query
    # AND each still reads and cancels its own, which names its tenant and its cost in the view
    # and in the list
    status, view_b = client(as_tenant(event("GET", f"/jobs/{b['job_id']}"), "key-b"))
    assert (status, view_b["tenant"], set(view_b["cost"])) == (200, "key-b", {"units", "unit"})
    _, listed_b = client(as_tenant(event("GET", "/jobs"), "key-b"))
    assert [(j["tenant"], set(j["cost"])) for j in listed_b["jobs"]] == [("key-b", {"units", "unit"})]
    assert client(event("GET", f"/jobs/{a['job_id']}"))[1]["tenant"] == "default"
    assert client(as_tenant(event("DELETE", f"/jobs/{b['job_id']}"), "key-b"))[0] == 200


def test_a_request_without_an_api_key_id_is_refused(client: Api) -> None:
    request = event("GET", "/jobs")
    del request["requestContext"]["identity"]["apiKeyId"]
    status, body = client(request)
    assert status == 403
    assert body["error"]["type"] == "Forbidden"


def test_tenants_never_read_stop_pause_resume_or_replay_each_others_batches(
    client: Api, batch_machine: str
) -> None:
    # GIVEN a batch of the default tenant
    batch_id = _started_batch(client)
    # WHEN tenant B reads, pauses, resumes or stops it THEN it is exactly an unknown batch
    for method, path in (
        ("GET", f"/batches/{batch_id}"),
        ("POST", f"/batches/{batch_id}/pause"),
        ("POST", f"/batches/{batch_id}/resume"),
        ("DELETE", f"/batches/{batch_id}"),
    ):
        status, body = client(as_tenant(event(method, path), "key-b"))
        assert_error(status, body, 404, "batch_id")
        assert body["error"]["message"] == f"no batch {batch_id}"
    assert _flag(batch_id) is None
    # AND its owner still sees it running
    status, view = client(event("GET", f"/batches/{batch_id}"))
    assert (status, view["status"], view["paused"]) == (200, "RUNNING", False)


def test_uploads_land_under_the_callers_root_and_only_its_own_jobs_may_name_them(client: Api) -> None:
    # GIVEN an upload of the default tenant and one of tenant B
    _, up_a = client(event("POST", "/uploads", {"filename": "a.png", "content_type": "image/png"}))
    _, up_b = client(
        as_tenant(event("POST", "/uploads", {"filename": "b.png", "content_type": "image/png"}), "key-b")
    )
    assert up_a["key"].startswith("uploads/")
    assert up_b["key"].startswith("tenants/key-b/uploads/")
    put_input(up_a["key"])
    put_input(up_b["key"])
    # WHEN each names the other's upload (by id or by key), or an object that does not exist
    _, missing = client(as_tenant(event("POST", "/jobs", job_body(input={"key": "no/such.png"})), "key-b"))

    def create(field: str, value: str) -> dict[str, Any]:
        return event("POST", "/jobs", job_body(input={field: value}))

    cases = [
        (as_tenant(create("upload_id", up_a["upload_id"]), "key-b"), "upload_id"),
        (as_tenant(create("key", up_a["key"]), "key-b"), "key"),
        (create("upload_id", up_b["upload_id"]), "upload_id"),
        (create("key", up_b["key"]), "key"),
    ]
    for request, field in cases:
        status, body = client(request)
        # THEN each is refused as an object that does not exist, and no job starts
        assert_error(status, body, 422, f"input.{field}")
        assert body["error"]["type"] == missing["error"]["type"] == "InputNotFound"
    assert client.store.list(limit=100)[0] == []
    # AND each still runs a job on its own upload
    assert client(event("POST", "/jobs", job_body(input={"upload_id": up_a["upload_id"]})))[0] == 202
    own_b = as_tenant(event("POST", "/jobs", job_body(input={"upload_id": up_b["upload_id"]})), "key-b")
    assert client(own_b)[0] == 202


def test_a_batch_names_only_its_tenants_objects(client: Api, batch_machine: str) -> None:
    sfn = boto3.client("stepfunctions")
    # GIVEN images of the default tenant (uploads/, batches/) and of tenant B (under its root)
    tag = uuid.uuid4().hex[:8]
    for key in (f"uploads/{tag}/a.png", f"batches/{tag}/a.png"):
        put_input(key)
    own_b = f"tenants/key-b/batches/{tag}/b.png"
    put_input(own_b)
    put_input(f"tenants/key-b/uploads/{tag}/b.png")

    def post(body: dict[str, Any], tenant: str | None) -> tuple[int, dict[str, Any]]:
        request = event("POST", "/batches", {"operation": "vectorize", "params": {}} | body)
        return client(request if tenant is None else as_tenant(request, tenant))

    def manifest(name: str, *keys: str) -> str:
        key = f"{name}/{tag}/m.jsonl"
        body = "\n".join(json.dumps({"key": k}) for k in keys).encode()
        boto3.client("s3").put_object(Bucket=INPUT_BUCKET, Key=key, Body=body)
        return key

    # WHEN B names the default tenant's prefix, a manifest of its own with one of the default
    # tenant's keys on line 2, or the default tenant's manifest
    status, body = post({"prefix": "uploads/"}, "key-b")
    assert_error(status, body, 422, "prefix")
    mixed = manifest("tenants/key-b/uploads", own_b, f"batches/{tag}/a.png")
    status, body = post({"manifest": mixed}, "key-b")
    # THEN each is refused, naming the line, before anything starts
    assert_error(status, body, 422, "manifest")
    assert "manifest line 2" in body["error"]["message"]
    assert f"batches/{tag}/a.png" in body["error"]["message"]
    theirs = manifest("uploads", f"batches/{tag}/a.png")
    status, body = post({"manifest": theirs}, "key-b")
    _, unknown = post({"manifest": "tenants/key-b/no-such.jsonl"}, "key-b")
    assert_error(status, body, 422, "manifest")
    assert body["error"]["type"] == unknown["error"]["type"] == "InputNotFound"
    # AND the default tenant cannot name B's objects either: not by manifest, and a prefix over
    # tenants/ lists only its own images (a key there outside any tenant's root is the default's)
    status, body = post({"manifest": manifest("uploads", own_b)}, None)
    assert_error(status, body, 422, "manifest")
    assert sfn.list_executions(stateMachineArn=batch_machine)["executions"] == []
    put_input(f"tenants/{tag}.png")
    status, created = post({"prefix": "tenants/"}, None)
    assert status == 202, created
    items = json.loads(
        boto3.client("s3")
        .get_object(Bucket=OUTPUT_BUCKET, Key=f"batches/{created['batch_id']}/items.json")["Body"]
        .read()
    )
    assert [item["key"] for item in items] == [f"tenants/{tag}.png"]
    # AND B's own prefix and manifest run, and its batch carries its tenant
    status, created_b = post({"prefix": f"tenants/key-b/batches/{tag}/"}, "key-b")
    assert status == 202, created_b
    arn = batch_machine.replace(":stateMachine:", ":execution:") + f":{created_b['batch_id']}"
    assert json.loads(sfn.describe_execution(executionArn=arn)["input"])["tenant"] == "key-b"
    assert post({"manifest": manifest("tenants/key-b/uploads", own_b)}, "key-b")[0] == 202


def test_get_batches_lists_only_the_callers_batches(client: Api, batch_machine: str) -> None:
    # GIVEN two batches of the default tenant and one of tenant B
    mine = {_started_batch(client, items=1) for _ in range(2)}
    prefix = f"tenants/key-b/batches/{uuid.uuid4().hex[:8]}/"
    put_input(f"{prefix}0.png")
    body = {"operation": "vectorize", "params": {}, "prefix": prefix}
    status, theirs = client(as_tenant(event("POST", "/batches", body), "key-b"))
    assert status == 202, theirs

    def listed(tenant: str | None, **query: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            request = event("GET", "/batches", query=query or None)
            status, page = client(request if tenant is None else as_tenant(request, tenant))
            assert status == 200, page
            found += page["batches"]
            if not page["cursor"]:
                return found
            query = {**query, "cursor": page["cursor"]}

    # WHEN each lists its batches, a page at a time THEN it sees only its own
    assert {b["batch_id"] for b in listed(None, limit="1")} == mine
    [only] = listed("key-b")
    assert (only["batch_id"], only["tenant"], only["operation"], only["total"]) == (
        theirs["batch_id"],
        "key-b",
        "vectorize",
        1,
    )
    status, body = client(event("GET", "/batches", query={"cursor": "not-a-token"}))
    assert_error(status, body, 422, "cursor")
