"""The mock against its own OpenAPI document (schemathesis): conforming answers, never a 500.

Fuzzed inputs are mostly invalid (random tokens, user_keys, signatures, parameters), so this
shows that bad input is answered in each provider's own error shape. Control operations that
change state or block are left out; the rest of the control API is covered by test_control.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection
from schemathesis.specs.openapi.checks import allow_header_conformance, missing_required_header

import mock_upstream

pytestmark = pytest.mark.integration

SCHEMA = (
    schemathesis.openapi.from_path(Path(mock_upstream.__file__).parent / "openapi.json")
    .exclude(method=["POST", "DELETE"], tag="control")
    .exclude(path=["/__mock/sink/{name}", "/__mock/tencent/jobs"])
)


@pytest.fixture
def fast_fetch(mock_upstream):
    # Fuzzed image URLs point nowhere; fail their fetches fast.
    mock_upstream.configure(fetch_timeout_seconds=0.2)
    return mock_upstream


@SCHEMA.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
def test_mock_conforms_to_its_openapi(case, fast_fetch):
    # `/task/pic/{task_id}` (GET) overlaps `/task/pic/segmentation` (POST), so no single Allow
    # header can list "exactly" the documented methods of both templates. HD redraw and Tencent
    # answer every error (a missing header too) with HTTP 200 by contract, so "invalid input
    # must get a 4xx" does not apply; the response-schema check is what proves their error shape.
    response = case.call_and_validate(
        base_url=fast_fetch.base_url,
        excluded_checks=[allow_header_conformance, negative_data_rejection, missing_required_header],
    )
    assert response.status_code < 500


def test_openapi_is_served(client):
    document = client.get("/__mock/openapi.json").json()
    assert document["openapi"].startswith("3.0")
    assert {"/task/pic/segmentation", "/api/check_task_status", "/", "/__mock/faults"} <= set(
        document["paths"]
    )
