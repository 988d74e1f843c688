"""The whole system offline: template.yaml deployed into moto, real handlers, the mock upstream.

One local stack per session (the `local_stack` fixture in tests/conftest.py, shared with the
chaos suite; deploying takes a few seconds); each test uses keys of its own and resets the
mock, so tests do not see each other's jobs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.stack import LocalStack, StackInfo

from mock_upstream.testing import MockUpstream

SAMPLES = Path(__file__).resolve().parents[2] / "mock_upstream" / "samples"


@dataclass
class System:
    """What a test drives: the stack, its clients and the mock's control helper."""

    stack: LocalStack
    info: StackInfo
    mock: MockUpstream
    s3: Any
    sfn: Any
    ddb: Any

    def upload(self, key: str, data: bytes, params: dict[str, Any] | None = None, **meta: str) -> str:
        """Upload ``data`` to the input bucket under a unique prefix; returns the key."""
        unique = f"{key.split('/', 1)[0]}/{uuid.uuid4().hex[:8]}/{key.split('/', 1)[1]}"
        metadata = dict(meta)
        if params is not None:
            metadata["params"] = json.dumps(params)
        self.s3.put_object(Bucket=self.info.input_bucket, Key=unique, Body=data, Metadata=metadata)
        return unique

    def job_for_key(self, key: str) -> dict[str, Any]:
        """The one job an upload started (fails when there is none or more than one)."""
        table = self.ddb.Table(self.info.resources["JobsTable"])
        items = [i for i in table.scan()["Items"] if i.get("input", {}).get("key") == key]
        assert len(items) == 1, f"expected one job for {key}, found {len(items)}"
        return items[0]

    def run(self, key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait for the job of ``key`` to end; returns (execution, job record)."""
        job = self.job_for_key(key)
        execution = self.stack.wait_for_execution(str(job["job_id"]))
        return execution, self.job(str(job["job_id"]))

    def job(self, job_id: str) -> dict[str, Any]:
        table = self.ddb.Table(self.info.resources["JobsTable"])
        item: dict[str, Any] = table.get_item(Key={"job_id": job_id})["Item"]
        return item

    def output(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.info.output_bucket, Key=key)["Body"].read()
        return body


@pytest.fixture
def system(local_stack: LocalStack, mock_upstream: MockUpstream) -> System:
    import boto3

    info = local_stack.info
    assert info is not None
    ddb = boto3.resource("dynamodb", endpoint_url=info.moto_url, region_name="us-east-1")
    # The result cache outlives tests (one stack per session): each test starts with none, so a
    # test that pays for an image is not answered by an earlier test's results.
    cache = ddb.Table(info.resources["ResultCacheTable"])
    for item in cache.scan(ProjectionExpression="cache_key")["Items"]:
        cache.delete_item(Key={"cache_key": item["cache_key"]})
    return System(
        stack=local_stack,
        info=info,
        mock=mock_upstream,
        s3=local_stack.client("s3"),
        sfn=local_stack.client("stepfunctions"),
        ddb=ddb,
    )


@pytest.fixture
def api(system: System) -> Iterator[httpx.Client]:
    """The jobs API through the local front door, with the local API key."""
    with httpx.Client(
        base_url=system.info.api_url, headers={"x-api-key": LOCAL_API_KEY}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="session")
def sample() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")}
