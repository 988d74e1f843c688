"""Check's done signal: 2 transitions a status read (WaitToCheck, Check), no Choice.

While the task runs Check returns and the state machine waits again; when it is done the
operation handler raises TaskDone, Check's Catch puts Lambda's error at ``$.poll`` and goes to
Collect, which reads the poll state back from it (picflow.job.check.done_poll).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from picflow.job.check import TaskDone, done_poll

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "statemachine" / "job.asl.json").read_text())
STATES: dict[str, Any] = ASL["States"]

POLL = {
    "state": "done",
    "task_id": "t-1",
    "progress": 100,
    "results": [{"url": "https://results.example/a.png?sig=x", "kind": "image"}],
    "wait_seconds": 0,
    "polls": 7,
    "errors": 0,
    "elapsed": 42.5,
    "last_pending": 38.0,
}


def _as_lambda_error(exc: Exception) -> dict[str, str]:
    # What Step Functions' Catch writes at its ResultPath for a Lambda function's error.
    cause = {"errorMessage": str(exc), "errorType": type(exc).__name__, "stackTrace": ["..."]}
    return {"Error": type(exc).__name__, "Cause": json.dumps(cause)}


def test_collect_reads_the_poll_state_back_from_the_taskdone_catch() -> None:
    assert done_poll(_as_lambda_error(TaskDone(POLL))) == POLL


def test_a_poll_that_came_another_way_is_kept_as_it_is() -> None:
    # What a callback sent (AfterCallback -> Collect), or an old execution's Choice path.
    callback = {"state": "done", "results": [{"url": "https://results.example/b.png"}]}
    assert done_poll(callback) == callback
    assert done_poll({}) == {}


def test_check_routes_taskdone_to_collect_before_any_failure_catch() -> None:
    check = STATES["Check"]
    catches = check["Catch"]
    assert catches[0] == {"ErrorEquals": ["TaskDone"], "ResultPath": "$.poll", "Next": "Collect"}
    assert catches[-1]["ErrorEquals"] == ["States.ALL"]
    # TaskDone is never retried.
    assert all(
        "TaskDone" not in r["ErrorEquals"] and "States.ALL" not in r["ErrorEquals"] for r in check["Retry"]
    )


def test_the_poll_loop_is_two_states_a_read_and_has_no_choice() -> None:
    assert STATES["Check"]["Next"] == "WaitToCheck"
    assert STATES["WaitToCheck"]["Next"] == "Check"
    assert all(s["Type"] != "Choice" or "Check" not in json.dumps(s) for s in STATES.values())
