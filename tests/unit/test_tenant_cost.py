"""Per-tenant cost in metrics (issue 16): every job that succeeds, paid (Collect or a sync Submit,
both through store_results) or reused from the result cache, counts its cost units under its
tenant in the ``CostUnits`` metric (dimensions tenant and unit), so a team sees what each spent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.core.catalogue import get_operation
from picflow.job import collect as collect_module
from picflow.job import results as results_module


class Downloads:
    def downloads(self) -> None:
        return None


class Semaphore:
    def release(self, provider: str, job_id: str) -> bool:
        return False


@dataclass
class Svc:
    store: JobStore
    s3: Any = None
    providers: Downloads = field(default_factory=Downloads)
    semaphore: Semaphore = field(default_factory=Semaphore)

    def clock(self) -> float:
        return 1_000.0


@pytest.fixture
def svc(jobs_table: Any, monkeypatch: pytest.MonkeyPatch) -> Svc:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "picflow")
    monkeypatch.setenv("PICFLOW_OUTPUT_BUCKET", "picflow-out")
    manifest = {"manifest_key": "m", "bucket": "picflow-out", "outputs": [], "texts": {}, "job_id": "j"}
    monkeypatch.setattr(results_module, "collect_results", lambda *a, **k: {**manifest, "operation": "x"})
    monkeypatch.setattr(results_module, "reuse_results", lambda *a, **k: manifest)
    store = JobStore(jobs_table)
    for job_id in ("paid", "reused"):
        store.create({"job_id": job_id, "operation": "vectorize", "status": "RUNNING"})
    return Svc(store)


def _state(job_id: str, tenant: str | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "job_id": job_id,
        "operation": "vectorize",
        "job": {"style": "sync", "provider": "hdredraw", "cost_units": 3, "cost_unit": "hdredraw.call"},
        "cache": {"hit": True, "key": "k", "entry": {"job_id": "earlier", "outputs": []}},
    }
    return state if tenant is None else {**state, "tenant": tenant}


def _costs(out: str) -> list[tuple[str, str, float]]:
    found = []
    for line in out.splitlines():
        if line.startswith("{") and collect_module.COST_METRIC in line:
            blob = json.loads(line)
            value = blob[collect_module.COST_METRIC]
            found.append((blob["tenant"], blob["unit"], value[0] if isinstance(value, list) else value))
    return found


def test_a_paid_job_counts_its_units_under_its_tenant_and_a_reused_one_zero(
    svc: Svc, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a paid job of tenant k7 and a result-cache hit of the same tenant
    collect_module.store_results(get_operation("vectorize"), _state("paid", "k7"), [], svc)  # type: ignore[arg-type]
    collect_module.reuse(_state("reused", "k7"), svc)  # type: ignore[arg-type]
    # THEN the metric holds 3 units for k7 and then 0 (nothing paid)
    assert _costs(capsys.readouterr().out) == [("k7", "hdredraw.call", 3.0), ("k7", "hdredraw.call", 0.0)]


def test_a_job_without_a_tenant_counts_for_the_default_tenant(
    svc: Svc, capsys: pytest.CaptureFixture[str]
) -> None:
    collect_module.store_results(get_operation("vectorize"), _state("paid", None), [], svc)  # type: ignore[arg-type]
    assert _costs(capsys.readouterr().out) == [("default", "hdredraw.call", 3.0)]
