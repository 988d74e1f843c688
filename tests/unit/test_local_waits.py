"""picflow_cli.local.waits: the poll floor under every Wait after an execution's first, and a
``startExecution.sync`` parent woken by its child's end instead of reading it every 0.5 s."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.seconds import Seconds
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from picflow_cli.local import waits
from picflow_cli.local.runtime import fix_sfn_service_integration

ROLE = "arn:aws:iam::123456789012:role/sfn"


class _Env:
    """What a Wait reads of moto's Environment."""

    def __init__(self) -> None:
        self.program_state_event = threading.Event()


def _env() -> Any:
    return _Env()


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The waits that reached moto's own sleep (recorded, not slept), with the floor installed."""
    reached: list[int] = []
    monkeypatch.setattr(WaitFunction, "_wait_interval", lambda self, env, seconds: reached.append(seconds))
    undo = waits.install(floor=0.2)
    try:
        yield reached
    finally:
        undo()


def test_an_execution_s_first_wait_is_as_scaled_and_each_later_0_wait_sleeps_the_floor(
    slept: list[int],
) -> None:
    wait, env = Seconds(0), _env()
    wait._wait_interval(env, 0)  # FirstWait: nothing added
    assert slept == [0]
    started = time.perf_counter()
    wait._wait_interval(env, 0)  # WaitToCheck after a read that saw the task running
    wait._wait_interval(env, 0)
    assert time.perf_counter() - started >= 0.4
    assert slept == [0]  # the floor slept them, not moto
    other = _env()  # another execution's first wait is its own
    wait._wait_interval(other, 0)
    assert slept == [0, 0]


def test_whole_second_waits_are_left_to_moto(slept: list[int]) -> None:
    wait, env = Seconds(0), _env()
    wait._wait_interval(env, 0)
    wait._wait_interval(env, 1)  # WaitScale 1: production's seconds, as moto sleeps them
    assert slept == [0, 1]


def test_a_stopped_execution_leaves_the_floor_at_once(slept: list[int]) -> None:
    wait, env = Seconds(0), _env()
    wait._wait_interval(env, 0)
    env.program_state_event.set()  # moto sets it when the execution stops
    started = time.perf_counter()
    wait._wait_interval(env, 0)
    assert time.perf_counter() - started < 0.15


def _machine(sfn: Any, name: str, states: dict[str, Any], start: str) -> str:
    arn: str = sfn.create_state_machine(
        name=name, definition=json.dumps({"StartAt": start, "States": states}), roleArn=ROLE
    )["stateMachineArn"]
    return arn


def test_a_sync_parent_reads_its_child_when_it_ends_not_every_half_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.stepfunctions.models import StepFunctionBackend

    reads: list[str] = []
    describe = StepFunctionBackend.describe_execution

    def counted(self: Any, execution_arn: str) -> Any:
        reads.append(execution_arn)
        return describe(self, execution_arn)

    monkeypatch.setattr(StepFunctionBackend, "describe_execution", counted)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        undo_keys = fix_sfn_service_integration()  # as the local stack runs it
        ends = waits.ChildEnds()
        undo = waits.install(ends=ends)
        try:
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            # GIVEN a child that runs ~2 s (moto would read it ~5 times) and a parent waiting on it
            child = _machine(sfn, "child", {"Sleep": {"Type": "Wait", "Seconds": 2, "End": True}}, "Sleep")
            parent = _machine(
                sfn,
                "parent",
                {
                    "Run": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::states:startExecution.sync:2",
                        "Parameters": {"StateMachineArn": child, "Name": "the-child"},
                        "ResultSelector": {"status.$": "$.Status"},  # no dates in the output
                        "End": True,
                    }
                },
                "Run",
            )
            execution = sfn.start_execution(stateMachineArn=parent, name="the-parent")["executionArn"]
            ended = ends.watch(execution)
            # Woken by the parent's own end (read once more: it may have ended before the watch).
            if sfn.describe_execution(executionArn=execution)["status"] == "RUNNING":
                assert ended.wait(60), "the parent never ended"
            status = sfn.describe_execution(executionArn=execution)["status"]
        finally:
            undo()
            undo_keys()
    # THEN the parent read its child once while it ran and once when it had ended
    assert status == "SUCCEEDED"
    assert sum(1 for arn in reads if arn.endswith(":the-child")) == 2
