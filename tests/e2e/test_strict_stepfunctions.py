"""The local stack runs Step Functions as AWS does: each rule of picflow_cli.local.sfn_rules is fed a
deliberately wrong definition and must fail the way AWS fails (docs/local-stack.md)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def run(system, definition: dict[str, Any], execution_input: Any = None) -> dict[str, Any]:
    """Create ``definition`` with the job state machine's role, run it once, wait for its end."""
    role = system.sfn.describe_state_machine(stateMachineArn=system.info.job_state_machine_arn)["roleArn"]
    name = f"rule-{uuid.uuid4().hex[:10]}"
    arn = system.sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)[
        "stateMachineArn"
    ]
    started = system.sfn.start_execution(
        stateMachineArn=arn, name=name, input=json.dumps(execution_input or {})
    )
    return system.stack.wait_for_arn(started["executionArn"], timeout=120)


def slot_task(parameters: dict[str, Any], system) -> dict[str, Any]:
    """A Task on a real function of the stack, caught by States.ALL into a Pass."""
    return {
        "Type": "Task",
        "Resource": f"arn:aws:lambda:us-east-1:123456789012:function:{system.info.resources['SlotFunction']}",
        "Parameters": parameters,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
        "End": True,
    }


def test_states_all_does_not_catch_a_missing_parameters_path(system):
    # GIVEN a Task whose Parameters read a path the input does not have, behind Catch States.ALL
    definition = {
        "StartAt": "Task",
        "States": {
            "Task": slot_task({"action": "release", "state.$": "$.not_there"}, system),
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    execution = run(system, definition, {"here": 1})

    # THEN the execution fails with States.Runtime instead of taking the catcher
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Runtime"
    assert "$.not_there" in execution["cause"]


def test_a_named_states_runtime_catcher_still_catches(system):
    definition = {
        "StartAt": "Task",
        "States": {
            "Task": {
                **slot_task({"action": "release", "state.$": "$.not_there"}, system),
                "Catch": [{"ErrorEquals": ["States.Runtime"], "ResultPath": "$.error", "Next": "Caught"}],
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    execution = run(system, definition)

    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"])["error"]["Error"] == "States.Runtime"


def test_a_choice_on_a_missing_path_fails_instead_of_taking_default(system):
    definition = {
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.cache.hit", "BooleanEquals": True, "Next": "Hit"}],
                "Default": "Miss",
            },
            "Hit": {"Type": "Pass", "End": True},
            "Miss": {"Type": "Pass", "End": True},
        },
    }

    execution = run(system, definition, {"cache": {}})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Runtime"
    assert "Invalid path '$.cache.hit'" in execution["cause"]


def test_an_is_present_guard_first_keeps_a_choice_from_a_missing_path(system):
    definition = {
        "StartAt": "Route",
        "States": {
            "Route": {
                "Type": "Choice",
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.cache.hit", "IsPresent": True},
                            {"Variable": "$.cache.hit", "BooleanEquals": True},
                        ],
                        "Next": "Hit",
                    }
                ],
                "Default": "Miss",
            },
            "Hit": {"Type": "Pass", "Result": {"route": "hit"}, "End": True},
            "Miss": {"Type": "Pass", "Result": {"route": "miss"}, "End": True},
        },
    }

    execution = run(system, definition, {"cache": {}})

    assert (execution["status"], json.loads(execution["output"])) == ("SUCCEEDED", {"route": "miss"})


@pytest.mark.slow
def test_25000_history_events_end_the_execution_failed(system):
    # GIVEN a loop that never ends by itself (two events per Pass)
    definition = {
        "StartAt": "Ping",
        "States": {"Ping": {"Type": "Pass", "Next": "Pong"}, "Pong": {"Type": "Pass", "Next": "Ping"}},
    }

    execution = run(system, definition)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.Runtime"
    assert execution["cause"] == "The execution reached the maximum number of history events (25000)."
    pages = system.sfn.get_paginator("get_execution_history").paginate(
        executionArn=execution["executionArn"], PaginationConfig={"PageSize": 1000}
    )
    events = [event for page in pages for event in page["events"]]
    assert (len(events), events[-1]["id"], events[-1]["type"]) == (25000, 25000, "ExecutionFailed")
    assert events[-2]["id"] == 24999


def test_a_task_input_over_256_kib_fails_with_data_limit_exceeded_past_states_all(system):
    # GIVEN Parameters that triple a 100 KiB string: 300 KiB of task input
    text = "x" * (100 * 1024)
    definition = {
        "StartAt": "Task",
        "States": {
            "Task": slot_task({"a.$": "$.text", "b.$": "$.text", "c.$": "$.text"}, system),
            "Caught": {"Type": "Pass", "End": True},
        },
    }

    execution = run(system, definition, {"text": text})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.DataLimitExceeded"


def test_a_state_output_over_256_kib_fails_with_data_limit_exceeded(system):
    text = "x" * (100 * 1024)
    definition = {
        "StartAt": "Grow",
        "States": {
            "Grow": {
                "Type": "Pass",
                "Parameters": {"a.$": "$.text", "b.$": "$.text", "c.$": "$.text"},
                "End": True,
            }
        },
    }

    execution = run(system, definition, {"text": text})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.DataLimitExceeded"
