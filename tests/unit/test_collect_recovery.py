"""Collect recovers a paid result whose download was refused or cut (issue 15, finding 4: 37 of
500 chaos jobs were paid and FAILED ResultUnavailableError/403): one fresh status read of the
task names fresh URLs, and the results are stored from those. store_results (the download, tested
in test_collect.py) is replaced here by a recorder that refuses the first URLs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.core.catalogue import Provider, TaskState
from picflow.core.errors import ResultUnavailableError, TransientError
from picflow.core.tasks import ResultRef, TaskStatus
from picflow.job import collect as collect_module

OLD = "https://results.example/old.png"
FRESH = "https://results.example/fresh.png"


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect_module, "RECOVERY_PAUSE", 0.0)


@dataclass
class Client:
    state: TaskState = TaskState.DONE
    reads: list[str] = field(default_factory=list)

    def status(self, task_id: str, operation: str | None = None) -> TaskStatus:
        self.reads.append(task_id)
        results = (ResultRef(kind="image", url=FRESH),) if self.state is TaskState.DONE else ()
        return TaskStatus(provider=Provider.TASKPIC, task_id=task_id, state=self.state, results=results)


@dataclass
class Registry:
    taskpic: Client = field(default_factory=Client)

    def client(self, provider: Provider) -> Client:
        return self.taskpic


@dataclass
class Svc:
    store: JobStore
    providers: Registry = field(default_factory=Registry)


@pytest.fixture
def svc(jobs_table: Any) -> Svc:
    store = JobStore(jobs_table)
    store.create({"job_id": "j", "operation": "segmentation", "status": "RUNNING", "provider_task_id": "t-1"})
    return Svc(store)


def _state() -> dict[str, Any]:
    poll = {"state": "done", "results": [{"kind": "image", "url": OLD, "text": None, "index": 0}]}
    return {"job_id": "j", "operation": "segmentation", "job": {"style": "poll"}, "poll": poll}


def _refusing(monkeypatch: pytest.MonkeyPatch, refuse: set[str], error: Exception) -> list[list[str]]:
    calls: list[list[str]] = []

    def store_results(op: Any, state: Any, refs: Any, svc: Any) -> dict[str, Any]:
        urls = [r.url for r in refs]
        calls.append(urls)
        if set(urls) & refuse:
            raise error
        return {"manifest_key": "m", "primary_key": "p", "outputs": 1, "reused": False}

    monkeypatch.setattr(collect_module, "store_results", store_results)
    return calls


@pytest.mark.parametrize(
    "error",
    [ResultUnavailableError("expired", http_status=403), TransientError("the body was cut short")],
)
def test_a_refused_or_cut_download_is_stored_from_a_fresh_status_read(
    svc: Svc, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    calls = _refusing(monkeypatch, {OLD}, error)
    out = collect_module.collect(_state(), svc)  # type: ignore[arg-type]
    assert calls == [[OLD], [FRESH]]
    assert svc.providers.taskpic.reads == ["t-1"]
    assert out["manifest_key"] == "m"


def test_the_same_refusal_from_the_fresh_urls_fails_with_the_first_error(
    svc: Svc, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ResultUnavailableError("expired", http_status=403)
    _refusing(monkeypatch, {OLD, FRESH}, first)
    with pytest.raises(ResultUnavailableError) as caught:
        collect_module.collect(_state(), svc)  # type: ignore[arg-type]
    assert caught.value is first


def test_a_task_no_longer_done_gives_nothing_to_retry(svc: Svc, monkeypatch: pytest.MonkeyPatch) -> None:
    svc.providers.taskpic.state = TaskState.PENDING
    calls = _refusing(monkeypatch, {OLD}, ResultUnavailableError("expired", http_status=403))
    with pytest.raises(ResultUnavailableError):
        collect_module.collect(_state(), svc)  # type: ignore[arg-type]
    assert calls == [[OLD]]


def test_a_failed_fresh_read_or_download_is_tried_again(svc: Svc, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the first fresh read fails and the first fresh download is cut
    client = svc.providers.taskpic
    original = client.status
    failures = [TransientError("503 from the status endpoint")]

    def flaky(task_id: str, operation: str | None = None) -> TaskStatus:
        if failures:
            client.reads.append(task_id)
            raise failures.pop()
        return original(task_id, operation)

    monkeypatch.setattr(client, "status", flaky)
    cut = [TransientError("cut")]
    calls: list[list[str]] = []

    def store_results(op: Any, state: Any, refs: Any, svc: Any) -> dict[str, Any]:
        urls = [r.url for r in refs]
        calls.append(urls)
        if OLD in urls:
            raise ResultUnavailableError("expired", http_status=403)
        if cut:
            raise cut.pop()
        return {"manifest_key": "m", "primary_key": "p", "outputs": 1, "reused": False}

    monkeypatch.setattr(collect_module, "store_results", store_results)
    out = collect_module.collect(_state(), svc)  # type: ignore[arg-type]
    # THEN it reads again and downloads again, within RECOVERY_READS, and stores the results
    assert out["manifest_key"] == "m"
    assert calls == [[OLD], [FRESH], [FRESH]]
    assert client.reads == ["t-1", "t-1", "t-1"]
    assert len(client.reads) <= collect_module.RECOVERY_READS
