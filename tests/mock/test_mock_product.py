"""The mock as a product: started from a scenario file, its journal exported, its pytest plugin
and the README's five-minute example run as another team would run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "mock_upstream" / "README.md"
SCENARIO = {
    "seed": 7,
    "accounts": [{"name": "acme", "token": "sk-acme", "user_key": "acme-key", "taskpic_balance": 1}],
    "settings": {"hd_status_cache_seconds": 0},
    "scenarios": {"accounts": {"acme": {"polls": 1}}},
    "faults": [{"kind": "rate_limit", "route": "/api/check_task_status", "retry_after": 9, "times": 1}],
    "callbacks": {"duplicate": 1},
}


class Served:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mock_upstream", "--port", "0", "--log-level", "warning", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # blocks until the server announces itself
        assert line.startswith("mock_upstream listening on http://127.0.0.1:"), self.process.stderr.read()
        self.base_url = line.split()[-1]

    def stop(self) -> None:
        self.process.terminate()  # uvicorn shuts down cleanly on SIGTERM (the journal is written)
        self.process.wait(30)


def test_scenario_file_sets_accounts_settings_scenarios_and_faults(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(SCENARIO))
    served = Served("--scenario", str(path), "--frozen-clock")
    try:
        with httpx.Client(base_url=served.base_url, timeout=30) as client:
            auth = {"Authorization": "Bearer sk-acme"}
            form = {"image_url": (None, "https://example.com/image.png")}
            first = client.post("/task/pic/segmentation", headers=auth, files=form).json()["data"]
            # the account's balance of 1 is spent: the next submit is refused
            assert client.post("/task/pic/segmentation", headers=auth, files=form).status_code != 200
            # polls=1 for acme: the first check sees it running, the second the end
            states = [
                client.get(f"/task/{first['task_id']}", headers=auth).json()["data"]["state"] for _ in "ab"
            ]
            assert states[1] == 1
            assert states[0] != 1
            # the fault fires once, then the settings' zero cache lets every check through
            status = {"user_key": "test-key", "task_id": "none"}
            assert client.post("/api/check_task_status", data=status).status_code == 429
            assert client.post("/api/check_task_status", data=status).json()["err_code"] == 1
            # a reset goes back to the file's start, not to an empty mock
            client.post("/__mock/reset")
            assert client.get("/__mock/accounts/acme").json()["taskpic_balance"] == 1
            assert client.get("/__mock/faults").json()["faults"][0]["hits"] == 0
            assert client.get("/__mock/callbacks").json()["config"]["duplicate"] == 1
    finally:
        served.stop()


def test_yaml_scenario_file(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "scenario.yaml"
    path.write_text("accounts:\n  - name: yam\n    token: sk-yam\n    taskpic_balance: 4\n")
    served = Served("--scenario", str(path))
    try:
        assert httpx.get(f"{served.base_url}/__mock/accounts/yam").json()["taskpic_balance"] == 4
    finally:
        served.stop()


def test_a_bad_scenario_file_is_refused_at_start_naming_the_problem(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"acounts": []}))
    result = subprocess.run(
        [sys.executable, "-m", "mock_upstream", "--port", "0", "--scenario", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown keys ['acounts']" in result.stderr


def test_journal_is_exported_as_json_lines_and_written_at_shutdown(tmp_path, mock_upstream, client):
    client.post(
        "/api/submit_face_enhance_task", data={"user_key": "test-key"}, headers={"X-Mock-Marker": "m1"}
    )
    client.get("/task/nope", headers={"Authorization": "Bearer sk-xxxx"})
    path = tmp_path / "journal.jsonl"
    assert mock_upstream.export_journal(path) == 2
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["route"] for e in entries] == ["/api/submit_face_enhance_task", "/task/{task_id}"]
    assert entries[0]["marker"] == "m1"
    assert "test-key" not in path.read_text()  # secrets stay redacted
    assert mock_upstream.export_journal(tmp_path / "hd.jsonl", provider="hd") == 1

    out = tmp_path / "at-exit.jsonl"
    served = Served("--journal-out", str(out))
    httpx.get(f"{served.base_url}/task/x", headers={"Authorization": "Bearer sk-xxxx"})
    served.stop()
    (line,) = out.read_text().splitlines()
    assert json.loads(line)["path"] == "/task/x"


def test_the_pytest_plugin_is_registered_as_an_entry_point():
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("mock_upstream.testing") == "mock_upstream.testing"


def test_the_readmes_five_minute_example_passes_as_written(tmp_path):
    # GIVEN the README's example, as a file in a folder of its own (no conftest of ours)
    (block,) = re.findall(r"```python\n(# test_my_hd_client\.py\n.*?)```", README.read_text(), re.S)
    (tmp_path / "test_my_hd_client.py").write_text(block)
    # WHEN pytest runs it there: the fixtures come from the installed plugin alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_hd_client.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    # THEN its three tests pass
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
