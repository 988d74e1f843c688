"""The jobs API fuzzed against its own OpenAPI document (schemathesis), through the front door.

Every answer must be documented: no 5xx, a documented status, and every 4xx JSON in the one
error shape ``{"error": {"type", "message", "field", "rule"}}``. Fuzzed inputs name keys and
upload ids that do not exist and URLs nobody should fetch, so no job starts: the mock's journal
stays empty. Name lookups are answered for numeric hosts only (never beyond loopback).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

pytestmark = pytest.mark.e2e

SCHEMA = schemathesis.openapi.from_path(Path(__file__).resolve().parents[2] / "docs" / "openapi.json")
ERROR_FIELDS = {"type", "message", "field", "rule"}


@SCHEMA.auth()
class LocalApiKey:
    """The front door's key, as schemathesis' auth: its auth checks then know what to leave out."""

    def get(self, case, context):
        return LOCAL_API_KEY

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "x-api-key": data}


@pytest.fixture
def no_dns(monkeypatch):
    """A fuzzed URL's host resolves only if it is an address already; names fail as NXDOMAIN."""
    original = socket.getaddrinfo

    def numeric_only(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0):
        if host in ("localhost", None):
            return original(host, port, family, type, proto, flags)
        return original(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    monkeypatch.setattr(socket, "getaddrinfo", numeric_only)


@pytest.fixture
def fuzz_target(local_stack, mock_upstream, no_dns):
    return local_stack.info.api_url, mock_upstream


@SCHEMA.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_jobs_api_answers_every_fuzzed_request_as_documented(case, fuzz_target):
    api_url, mock = fuzz_target
    # Schema-valid is not always acceptable: an unknown operation name, a key or upload that does
    # not exist, two input sources at once are refused (422) by rules the document states in words.
    # An undeclared method never reaches the function: API Gateway answers it (403, in AWS).
    response = case.call_and_validate(
        base_url=api_url, excluded_checks=[positive_data_acceptance, unsupported_method]
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"][0].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == ERROR_FIELDS, error
        assert error["type"]
        assert error["message"]
    assert mock.count() == 0
