"""Chaos, reduced size: jobs across all 14 operations under seeded faults (30 %).

The engine (picflow_cli.chaos, shared with bench/chaos.py's 1,000-job run) injects the faults
(upstream, one operation throttled forever, callbacks, S3 errors, Lambda crashes),
runs the jobs through the session's local stack and checks the invariants: every job ends
SUCCEEDED or FAILED with a classified error in time, none pays twice, every stored output is
what the mock served and decodes as its declared type, no input is lost or overwritten.
"""

from __future__ import annotations

import pytest
from picflow_cli.chaos import OPERATIONS, ChaosSettings, run_chaos

pytestmark = pytest.mark.e2e

JOBS = 42  # three of each operation


@pytest.mark.slow
def test_chaos_jobs_end_classified_pay_once_and_keep_data_intact(local_stack, mock_upstream):
    # A short deadline keeps it quick: the throttled-forever jobs end at it.
    report = run_chaos(local_stack, mock_upstream, ChaosSettings(jobs=JOBS, seed=11, job_deadline=20))
    print(report.table())

    # The run was real: every operation ran, faults of many kinds fired, jobs both won and lost.
    assert {r.operation for r in report.runs} == set(OPERATIONS)
    assert len(report.runs) == JOBS
    assert sum(report.faults.values()) >= JOBS // 2, report.faults
    assert len(report.faults) >= 8, report.faults
    assert report.outcomes["SUCCEEDED"] >= JOBS // 2, report.outcomes
    # The invariants.
    assert report.duplicate_paid == []
    assert report.stuck == []
    assert report.corrupt == []
    assert report.violations == []
    assert report.orphans == []
    assert report.recoverable == []
    assert report.terminal == 1.0
    assert any(label.startswith("429 forever") for label in report.faults), report.faults
    assert {r.status for r in report.runs} <= {"SUCCEEDED", "FAILED"}
