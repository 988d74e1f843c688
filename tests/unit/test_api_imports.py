"""The API's cold start loads only what every request can use: the batch, start and cancel paths
import their modules in their routes (bench/coldstart.py, docs/performance.md section 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each is used by some routes only; importing the resolver must not load them.
ROUTE_ONLY = (
    "picflow.api.inputs",  # POST /jobs
    "picflow.aws.starter",  # POST /jobs
    "picflow.job.cancel",  # DELETE /jobs/{id}, DELETE /batches/{id}
    "picflow.aws.pause",  # the batch routes
    "picflow.batch.plan",
    "picflow.batch.report",
    "picflow.batch.pipeline",  # POST /batches, GET /operations
)


def test_the_resolver_imports_no_route_only_module() -> None:
    # A fresh interpreter: this test process may have imported them already.
    code = f"import sys, picflow.api.app\nprint(' '.join(m for m in {ROUTE_ONLY!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "layers" / "picflow"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == []


def test_every_route_still_resolves_its_signature() -> None:
    # The routes' annotations name only what their module imports (powertools evaluates them on a
    # route's first request, against the module's globals).
    from aws_lambda_powertools.event_handler.openapi.dependant import get_dependant
    from picflow.api.app import app

    routes = app._static_routes + app._dynamic_routes
    assert len(routes) >= 11
    for route in routes:
        get_dependant(path=route.openapi_path, call=route.func, responses=route.responses)
