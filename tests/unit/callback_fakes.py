"""The fakes picflow.entry.callbacks is tested with (tests/unit/test_workflow.py and
test_callback_trust.py): the real JobStore on moto and a Step Functions client that records the
task-token calls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from picflow.aws.jobs import JobStore

TOKEN = "task-token-abc"


@dataclass
class FakeSfn:
    """Records the task-token calls; ``error`` makes them fail the way Step Functions does."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: str | None = None

    def _call(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, name)
        return {}

    def send_task_success(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("send_task_success", kwargs)

    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("send_task_failure", kwargs)

    def send_task_heartbeat(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("send_task_heartbeat", kwargs)


@dataclass
class FakeServices:
    store: JobStore
    sfn: FakeSfn = field(default_factory=FakeSfn)
    clock: Any = field(default=lambda: 1_700_000_000.0)


def waiting_job(jobs_table: Any, secret: str, **fields: Any) -> FakeServices:
    """Services whose store holds job-1: a RUNNING segmentation job waiting for its callback
    (``secret``'s hash and TOKEN), with ``fields`` on top."""
    store = JobStore(jobs_table)
    store.create(
        {
            "job_id": "job-1",
            "operation": "segmentation",
            "status": "RUNNING",
            "callback_secret_sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "task_token": TOKEN,
            **fields,
        }
    )
    return FakeServices(store)


def verdicts(svc: FakeServices) -> list[str]:
    """The verdicts job-1's callbacks were given, in order."""
    return [entry["verdict"] for entry in (svc.store.get("job-1") or {}).get("callbacks", [])]
