"""The main job as a user runs it: `picflow demo`, then its report opened in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from picflow_cli.demo import DEMO_JOBS

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]


@pytest.mark.slow
def test_demo_report_shows_every_job_and_every_image_loads(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is installed by `make setup`"
    out = tmp_path / "out"
    # Its own process: the demo starts its own local stack, which must not share this one's moto.
    run = subprocess.run(
        [sys.executable, "-m", "picflow_cli.main", "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = out / "report.html"

    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout

    rows = re.findall(r'<tr class="job (\w+)" data-job="([\w-]+)"', dom)
    assert len(rows) == len(DEMO_JOBS) + 2  # every operation, the pipeline, the failure on purpose
    assert [status for status, _ in rows].count("failed") == 1
    check = re.search(r'id="image-check" data-total="(\d+)" data-broken="(\d+)"', dom)
    assert check, "the report's image check did not run"
    total, broken = int(check.group(1)), int(check.group(2))
    assert broken == 0
    assert total >= len(DEMO_JOBS) * 2  # an input and at least one output per job
    for _, job_id in rows:
        assert (Path(out) / job_id).is_dir()
