"""The picflow CLI against the whole system: ``main([...])`` in-process against the session's
local stack, and ``picflow local up``/``down`` as a real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from picflow_cli import settings
from picflow_cli.local.frontdoor import LOCAL_API_KEY
from picflow_cli.local.stack import LocalStack
from picflow_cli.local.up import READY_LINE
from picflow_cli.main import main

from mock_upstream.testing import MockUpstream

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mock_upstream" / "samples"


@pytest.fixture
def api_flags(
    local_stack: LocalStack, mock_upstream: MockUpstream, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    assert local_stack.info is not None
    for name in (settings.API_URL_ENV, settings.API_KEY_ENV, settings.STATE_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    return ["--api-url", local_stack.info.api_url, "--api-key", LOCAL_API_KEY]


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_segmentation_downloads_results_then_jobs_status_and_cancel_see_it(
    api_flags: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    # GIVEN a sample image; WHEN picflow runs segmentation on it and waits
    code, out, err = cli(
        capsys,
        "run",
        "segmentation",
        str(SAMPLES / "product.jpg"),
        "-p",
        "output_type=1",
        "--out",
        str(tmp_path),
        "--interval",
        "0.1",
        *api_flags,
    )
    # THEN it succeeds and the result files are in out/<job id>/, as the API describes them
    assert (code, err) == (0, "")
    job_id = out.splitlines()[-1].split(":")[0]
    folder = tmp_path / job_id
    record = json.loads((folder / "job.json").read_text())
    assert record["status"] == "SUCCEEDED"
    assert {r["kind"] for r in record["results"]} == {"image", "mask"}
    for result in record["results"]:
        data = (folder / result["key"].rsplit("/", 1)[-1]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == result["sha256"]
        assert data.startswith(b"\x89PNG")

    code, out, _ = cli(capsys, "jobs", "--json", "--operation", "segmentation", *api_flags)
    assert code == 0
    assert job_id in [j["job_id"] for j in json.loads(out)["jobs"]]

    code, out, _ = cli(capsys, "status", job_id, "--json", *api_flags)
    assert code == 0
    assert json.loads(out)["status"] == "SUCCEEDED"
    code, out, _ = cli(capsys, "status", job_id, *api_flags)
    assert "status       SUCCEEDED" in out

    # A finished job cannot be cancelled: the API's 409, as one line.
    code, out, err = cli(capsys, "cancel", job_id, *api_flags)
    assert code == 2
    assert out == ""
    assert err == (
        f"picflow: job {job_id} is already SUCCEEDED "
        "(HTTP 409 JobFinal; job_id must be a job that has not finished)\n"
    )


def test_run_refused_parameter_is_the_apis_422_line(api_flags: list[str], capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(
        capsys, "run", "segmentation", str(SAMPLES / "product.jpg"), "-p", "output_type=9", *api_flags
    )
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("picflow: ")
    assert "(HTTP 422 ParamValidationError; params.output_type must be" in err


def test_run_s3_key_in_the_input_bucket_without_waiting(
    api_flags: list[str], local_stack: LocalStack, capsys: pytest.CaptureFixture[str]
):
    assert local_stack.info is not None
    key = "cli-e2e/product.jpg"
    local_stack.client("s3").put_object(
        Bucket=local_stack.info.input_bucket, Key=key, Body=(SAMPLES / "product.jpg").read_bytes()
    )
    code, out, _ = cli(
        capsys, "run", "segmentation", f"s3://{local_stack.info.input_bucket}/{key}", "--no-wait", *api_flags
    )
    assert code == 0
    job_id = out.split()[0]
    local_stack.wait_for_execution(job_id)
    code, out, _ = cli(capsys, "status", job_id, "--json", *api_flags)
    view = json.loads(out)
    assert view["status"] == "SUCCEEDED"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_local_up_on_a_port_in_use_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(
            [
                "local",
                "up",
                "--api-port",
                str(port),
                "--moto-port",
                "0",
                "--upstream-port",
                "0",
                "--state-file",
                str(tmp_path / "state.json"),
            ]
        )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"picflow: port {port} (--api-port) is already in use on 127.0.0.1: stop what uses it "
        "or pass another --api-port (0 picks a free one)\n"
    )
    assert not (tmp_path / "state.json").exists()


@pytest.mark.slow
def test_local_up_serves_until_local_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    # A clean environment: the session's stack points this process's AWS variables at its moto.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "PICFLOW_", "POWERTOOLS_"))
    }
    state_file = tmp_path / "state.json"
    upstream_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "picflow_cli.main",
            "local",
            "up",
            "--api-port",
            "0",
            "--moto-port",
            "0",
            "--upstream-port",
            str(upstream_port),
            "--state-file",
            str(state_file),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        seen = []
        while True:
            line = lines.get(timeout=60)
            assert line is not None, "local up exited before ready:\n" + "".join(seen)
            seen.append(line)
            if line.startswith(READY_LINE):
                break
        state = json.loads(state_file.read_text())
        assert state["pid"] == proc.pid
        assert state["upstream_url"] == f"http://127.0.0.1:{upstream_port}"
        assert any(line.split() == ["API", "URL", state["api_url"]] for line in seen)

        # Other commands find the stack through the state file alone.
        for name in (settings.API_URL_ENV, settings.API_KEY_ENV):
            monkeypatch.delenv(name, raising=False)
        assert main(["jobs", "--json", "--state-file", str(state_file)]) == 0
        assert json.loads(capsys.readouterr().out) == {"jobs": [], "cursor": None}

        assert main(["local", "down", "--state-file", str(state_file)]) == 0
        assert capsys.readouterr().out == f"picflow local: stopped (pid {proc.pid})\n"
        assert proc.wait(timeout=30) == 0
        assert not state_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_batch_run_uploads_a_manifest_follows_it_and_status_and_stop_see_it(
    api_flags: list[str], local_stack: LocalStack, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    from io import BytesIO

    from PIL import Image

    # GIVEN three different images in the input bucket and a local JSON Lines manifest of them,
    # one with its own params
    assert local_stack.info is not None
    s3 = local_stack.client("s3")
    prefix = f"cli-e2e/{tmp_path.name}/"
    lines = []
    for i in range(3):
        buf = BytesIO()
        Image.new("RGB", (40 + i, 40), (200, 30 * i, 90)).save(buf, format="PNG")
        s3.put_object(Bucket=local_stack.info.input_bucket, Key=f"{prefix}{i}.png", Body=buf.getvalue())
        lines.append({"key": f"{prefix}{i}.png"} | ({"params": {"color_count": 8}} if i == 2 else {}))
    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))

    # WHEN picflow runs the manifest through vectorize as a batch and follows it
    code, out, err = cli(
        capsys,
        *("batch", "run", "vectorize", "--manifest", str(manifest), "-p", "color_count=4"),
        *("--tolerated-failure-percent", "0", "--interval", "0.2", *api_flags),
    )

    # THEN it ends SUCCEEDED with every item paid once, and says where the results are
    assert (code, err) == (0, "")
    summary, where = out.splitlines()[-2:]
    batch_id = summary.split(":")[0]
    assert summary == (
        f"{batch_id}: SUCCEEDED, 3 item(s): 3 succeeded, 0 failed or cancelled; 0 reused (not paid again); "
        "cost 3 hdredraw.call"
    )
    results_key = f"batches/{batch_id}/results.jsonl"
    assert where == f"results: s3://{local_stack.info.output_bucket}/{results_key}"
    body = s3.get_object(Bucket=local_stack.info.output_bucket, Key=results_key)["Body"].read().decode()
    results = [json.loads(line) for line in body.splitlines()]
    assert [r["params"]["color_count"] for r in results] == [4, 4, 8]
    assert all(r["status"] == "SUCCEEDED" and r["outputs"] for r in results)

    code, out, _ = cli(capsys, "batch", "status", batch_id, "--json", *api_flags)
    view = json.loads(out)
    assert (code, view["status"], view["counts"]["SUCCEEDED"]) == (0, "SUCCEEDED", 3)
    assert re.fullmatch(r"uploads/[0-9a-f]{32}/items\.jsonl", view["source"]["manifest"])

    code, out, err = cli(capsys, "batch", "stop", batch_id, *api_flags)
    assert (code, out) == (2, "")
    assert err == (
        f"picflow: batch {batch_id} is already SUCCEEDED "
        "(HTTP 409 BatchFinal; batch_id must be a batch that has not finished)\n"
    )
