"""Fixtures for the clients' contract tests: the real clients over loopback to mock_upstream.

Every client gets a ``RetryPolicy`` whose ``sleep`` only records the waits, so retries are
visible (and honoured ``Retry-After`` values checkable) without anyone sleeping. Results are
fetched with plain httpx and decoded with Pillow, or stored through ``picflow.job.results`` (the
path the workflow takes) into an in-memory stand-in for S3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from contract_support import BUCKET, READ_TIMEOUT
from picflow.core.tasks import ResultRef
from picflow.job.results import collect_results
from picflow.net.http import RetryPolicy, build_client

from mock_upstream.testing import MockUpstream


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the clients asked for, in order (nothing really sleeps)."""
    return []


@pytest.fixture
def retry(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps.append)


@pytest.fixture(autouse=True)
def mock_is_every_result_host(mock_upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mock serves every provider's results on loopback: name it each provider's result host
    and exempt it from the public-address rule, as the local stack does (and nothing else)."""
    from urllib.parse import urlsplit

    from picflow.core.catalogue import SPECS

    netloc = urlsplit(mock_upstream.url("")).netloc
    monkeypatch.setenv("PICFLOW_RESULT_HOSTS", ",".join(f"{p.value}={netloc}" for p in SPECS))
    monkeypatch.setenv("PICFLOW_URL_ALLOWLIST", netloc)


@pytest.fixture
def http(mock_upstream: MockUpstream) -> Iterator[httpx.Client]:
    """The layer's own transport, pointed at the mock."""
    with build_client(mock_upstream.url("")) as client:
        yield client


@pytest.fixture
def short_http(mock_upstream: MockUpstream) -> Iterator[httpx.Client]:
    """A client whose reads give up after READ_TIMEOUT, for latency beyond the read timeout."""
    with build_client(mock_upstream.url(""), timeout=httpx.Timeout(5.0, read=READ_TIMEOUT)) as client:
        yield client


class FakeS3:
    """The two calls ``collect_results`` makes, kept in memory (moto adds ~0.5 s per test)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}

    def upload_file(
        self,
        path: str,
        bucket: str,
        key: str,
        ExtraArgs: dict[str, Any],  # noqa: N803
        Config: Any = None,  # noqa: N803 - the transfer settings (threads, part size): no effect here
    ) -> None:
        with open(path, "rb") as fh:
            self.objects[bucket, key] = {"Body": fh.read(), **ExtraArgs}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.objects[Bucket, Key] = {"Body": Body, "ContentType": ContentType}


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def collect(s3: FakeS3, http: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Store refs through ``picflow.job.results.collect_results``; returns the manifest."""

    def run(refs: list[ResultRef] | tuple[ResultRef, ...], provider: str) -> dict[str, Any]:
        job = {"job_id": "job-1", "operation": "contract"}
        return collect_results(
            refs, http=http, s3=s3, bucket=BUCKET, prefix="out/job-1/", provider=provider, job=job
        )

    return run
