"""`python -m mock_upstream` serves the app and prints its base URL when ready."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from mock_upstream.process import MockProcess

pytestmark = pytest.mark.integration


def test_module_entry_point_prints_base_url_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "mock_upstream", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # blocks until the server announces itself
        assert line.startswith("mock_upstream listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        response = httpx.get(f"{base_url}/task/nope", headers={"Authorization": "Bearer sk-xxxx"})
        assert response.json()["status"] == 404
    finally:
        process.terminate()
        process.wait(10)


def test_mock_process_serves_beside_its_caller_and_stops():
    with MockProcess("--frozen-clock") as mock:
        assert mock.base_url.startswith("http://127.0.0.1:")
        response = httpx.get(f"{mock.base_url}/task/nope", headers={"Authorization": "Bearer sk-xxxx"})
        assert response.json()["status"] == 404
        process = mock.process
    assert process is not None
    assert process.poll() is not None
