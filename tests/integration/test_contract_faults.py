"""The fault matrix every provider's client must pass, once, parametrized by provider.

Against mock_upstream over loopback: faults on the paid call (never paid twice, never retried
blindly), and faults on the status read (retried within the policy, or left to the workflow).
What differs between providers is data (:class:`Contract`): routes, how a fault is aimed, how one
paid call and one readable task are made, and the codes the client reports. A synchronous provider
(Tencent) has no status read, so it takes part in the paid-call half only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from contract_support import (
    BEYOND_READ,
    STATUS_RECOVERABLE,
    SUBMIT_FAULTS,
    UNREADABLE,
    assert_paid_once,
    drain,
    sample,
)
from picflow.core.catalogue import TaskState
from picflow.core.errors import (
    OutcomeUnknownError,
    PicflowError,
    RateLimitedError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import Submission
from picflow.net.http import RetryPolicy
from picflow.providers.base import ImageInput, Secret
from picflow.providers.hdredraw import HdRedrawClient
from picflow.providers.taskpic import TaskPicClient
from picflow.providers.tencent import TencentClient

from mock_upstream.testing import MockUpstream

pytestmark = pytest.mark.integration

Client = Any  # a provider's client: picflow.providers.base.ProviderClient


@dataclass(frozen=True)
class Contract:
    name: str
    build: Callable[[httpx.Client, RetryPolicy, MockUpstream], Client]
    # One paid call (a submit; Tencent's answers at once), its files in ``workdir``.
    pay: Callable[[Client, Path], Submission]
    paid_route: str  # the mock journal's name of the paid call
    paid_fault: dict[str, Any]  # how inject_fault aims at it
    rate_limit_code: str | int
    status_fault: dict[str, Any] | None = None  # None: synchronous, no status read
    status_route: str | None = None
    status_failing: int = 503
    unreadable_code: str | None = None
    extra_paid_faults: tuple[Any, ...] = ()
    keeps_no_partial_file: bool = False


def _taskpic(http: httpx.Client, retry: RetryPolicy, mock: MockUpstream) -> TaskPicClient:
    return TaskPicClient(http, Secret("sk-xxxx"), retry=retry)


def _hdredraw(http: httpx.Client, retry: RetryPolicy, mock: MockUpstream) -> HdRedrawClient:
    return HdRedrawClient(http, Secret("test-key"), retry=retry)


def _tencent(http: httpx.Client, retry: RetryPolicy, mock: MockUpstream) -> TencentClient:
    return TencentClient(
        http,
        Secret("AKIDMOCKUPSTREAM"),
        Secret("mock-upstream-secret-key"),
        host=None,
        clock=mock.now,
        retry=retry,
    )


def _upload(name: str) -> ImageInput:
    return ImageInput(file=sample(name), filename=name, content_type="image/png")


CONTRACTS = [
    Contract(
        "taskpic",
        _taskpic,
        lambda c, _: c.submit("segmentation", {"output_type": 2}, _upload("foreground.png"), sync=False),
        paid_route="/task/pic/segmentation",
        paid_fault={"route": "/task/pic/segmentation"},
        rate_limit_code=429,
        status_fault={"route": "/task/*", "method": "GET"},
        status_route="/task/{task_id}",
        status_failing=502,
        unreadable_code="MalformedResponse",
    ),
    Contract(
        "hdredraw",
        _hdredraw,
        lambda c, _: c.submit("redraw", {}, _upload("image.png")),
        paid_route="/api/submit_task",
        paid_fault={"route": "/api/submit_task"},
        rate_limit_code=429,
        status_fault={"route": "/api/check_task_status"},
        status_route="/api/check_task_status",
        unreadable_code="MalformedAnswer",
        # The vendor's "任务提交失败" answer: it may have run, so the job fails (never resubmits).
        extra_paid_faults=(
            pytest.param("provider_error", {}, UpstreamTaskFailedError, False, id="provider_error"),
        ),
    ),
    Contract(
        "tencent",
        _tencent,
        lambda c, workdir: c.replace_background(
            {"prompt": "a marble kitchen counter", "rsp_img_type": "url"},
            "https://example.com/product.jpg",
            workdir=str(workdir),
        ),
        paid_route="ReplaceBackground",
        paid_fault={"action": "ReplaceBackground"},
        rate_limit_code="RequestLimitExceeded",
        keeps_no_partial_file=True,
    ),
]
POLLED = [c for c in CONTRACTS if c.status_fault is not None]


def _paid_faults() -> list[Any]:
    return [
        pytest.param(c, *fault.values, id=f"{c.name}-{fault.id}")
        for c in CONTRACTS
        for fault in [*SUBMIT_FAULTS, *c.extra_paid_faults]
    ]


def _by_name(contracts: list[Contract]) -> dict[str, Any]:
    return {"argvalues": contracts, "ids": [c.name for c in contracts]}


def _task(contract: Contract, client: Client, workdir: Path) -> str:
    task_id = contract.pay(client, workdir).task_id
    assert task_id
    return task_id


# --- faults on the paid call: never paid twice -----------------------------------------------


@pytest.mark.parametrize(("contract", "kind", "params", "error", "charged"), _paid_faults())
def test_paid_call_under_fault_is_sent_once_and_never_retried_blindly(
    contract, http, retry, mock_upstream, sleeps, tmp_path, kind, params, error, charged
):
    # GIVEN the next paid call meets the fault
    client = contract.build(http, retry, mock_upstream)
    mock_upstream.inject_fault(kind, **contract.paid_fault, **params)

    # WHEN the client makes it
    with pytest.raises(PicflowError) as caught:
        contract.pay(client, tmp_path)

    # THEN it sent the paid request once, and a retryable error never follows a charge
    assert type(caught.value) is error
    assert_paid_once(mock_upstream, caught.value, route=contract.paid_route, charged=charged, sleeps=sleeps)
    if contract.keeps_no_partial_file:
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("contract", **_by_name(CONTRACTS))
def test_rate_limited_paid_call_keeps_retry_after_for_the_workflow(
    contract, http, retry, mock_upstream, tmp_path
):
    client = contract.build(http, retry, mock_upstream)
    mock_upstream.inject_fault("rate_limit", **contract.paid_fault, retry_after=7)

    with pytest.raises(RateLimitedError) as caught:
        contract.pay(client, tmp_path)

    assert (caught.value.code, caught.value.http_status, caught.value.retry_after) == (
        contract.rate_limit_code,
        429,
        7.0,
    )


@pytest.mark.parametrize("contract", **_by_name(CONTRACTS))
def test_paid_call_beyond_the_read_timeout_is_outcome_unknown_and_was_charged(
    contract, short_http, retry, mock_upstream, sleeps, tmp_path
):
    # GIVEN a provider that answers after the client's read timeout
    client = contract.build(short_http, retry, mock_upstream)
    mock_upstream.inject_fault("latency", **contract.paid_fault, seconds=BEYOND_READ)

    # WHEN the client makes the paid call
    with pytest.raises(OutcomeUnknownError) as caught:
        contract.pay(client, tmp_path)

    # THEN it gave up without retrying, though the provider went on and charged it
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    drain(mock_upstream, BEYOND_READ)
    assert mock_upstream.count(route=contract.paid_route) == 1
    assert mock_upstream.count(paid=True) == 1
    assert sleeps == []


# --- faults on the status read: retried within the policy ------------------------------------


@pytest.mark.parametrize("contract", **_by_name(POLLED))
def test_rate_limited_status_is_retried_after_the_providers_delay(
    contract, http, retry, mock_upstream, sleeps, tmp_path
):
    client = contract.build(http, retry, mock_upstream)
    task_id = _task(contract, client, tmp_path)
    mock_upstream.inject_fault("rate_limit", **contract.status_fault, retry_after=2)

    assert client.status(task_id).state is TaskState.DONE
    assert sleeps == [2.0]
    assert mock_upstream.count(route=contract.status_route) == 2


@pytest.mark.parametrize("contract", **_by_name(POLLED))
def test_status_that_keeps_failing_gives_up_after_the_policys_attempts(
    contract, http, retry, mock_upstream, sleeps, tmp_path
):
    client = contract.build(http, retry, mock_upstream)
    task_id = _task(contract, client, tmp_path)
    failing = contract.status_failing
    mock_upstream.inject_fault("http_status", **contract.status_fault, status=failing, times=None)

    with pytest.raises(TransientError) as caught:
        client.status(task_id)

    assert (caught.value.code, caught.value.http_status) == (failing, failing)
    assert mock_upstream.count(route=contract.status_route) == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 2.0 for s in sleeps)


@pytest.mark.parametrize(
    ("contract", "kind", "params"),
    [pytest.param(c, *f.values, id=f"{c.name}-{f.id}") for c in POLLED for f in STATUS_RECOVERABLE],
)
def test_status_recovers_from_one_transport_or_server_fault(
    contract, http, retry, mock_upstream, sleeps, tmp_path, kind, params
):
    client = contract.build(http, retry, mock_upstream)
    task_id = _task(contract, client, tmp_path)
    mock_upstream.inject_fault(kind, **contract.status_fault, **params)

    assert client.status(task_id).state is TaskState.DONE
    assert len(sleeps) == 1
    assert mock_upstream.count(route=contract.status_route) == 2


@pytest.mark.parametrize(
    ("contract", "kind"), [pytest.param(c, k, id=f"{c.name}-{k}") for c in POLLED for k in UNREADABLE]
)
def test_unreadable_status_answer_is_transient(contract, http, retry, mock_upstream, tmp_path, kind):
    client = contract.build(http, retry, mock_upstream)
    task_id = _task(contract, client, tmp_path)
    mock_upstream.inject_fault(kind, **contract.status_fault)

    with pytest.raises(TransientError) as caught:
        client.status(task_id)

    assert caught.value.code == contract.unreadable_code
    # The next poll (the workflow's retry) reads it fine.
    assert client.status(task_id).state is TaskState.DONE
    assert mock_upstream.count(paid=True) == 1


@pytest.mark.parametrize("contract", **_by_name(POLLED))
def test_status_beyond_the_read_timeout_is_retried(
    contract, http, short_http, retry, mock_upstream, sleeps, tmp_path
):
    task_id = _task(contract, contract.build(http, retry, mock_upstream), tmp_path)
    client = contract.build(short_http, retry, mock_upstream)
    mock_upstream.inject_fault("latency", **contract.status_fault, seconds=BEYOND_READ)

    assert client.status(task_id).state is TaskState.DONE
    assert len(sleeps) == 1
    drain(mock_upstream, BEYOND_READ)
    assert mock_upstream.count(route=contract.status_route) == 2
