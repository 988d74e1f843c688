"""The local Lambda runtime runs functions as Lambda does (picflow_cli.local.runtime): each rule is
fed a deliberately wrong handler (tests/e2e/handlers/misbehaving.py) and must fail as Lambda fails."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

HANDLERS = Path(__file__).resolve().parent / "handlers"
ANYTHING = ({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},)


def function(system, handler: str, **kwargs: Any) -> str:
    name = f"probe-{handler}-{uuid.uuid4().hex[:8]}"
    system.stack.add_function(name, HANDLERS, f"misbehaving.{handler}", policies=ANYTHING, **kwargs)
    return name


def invoke(system, name: str, event: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    answer = system.stack.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return json.loads(answer["Payload"].read()), answer.get("FunctionError")


def test_an_invocation_past_its_timeout_fails_as_sandbox_timedout(system):
    name = function(system, "sleepy", timeout_s=1)

    payload, error = invoke(system, name, {"seconds": 5})

    assert error is not None  # moto says "Handled" where Lambda says "Unhandled": the payload tells
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    # The environment was killed: the next invocation starts a new one (and may finish in time).
    assert invoke(system, name, {"seconds": 0})[0] == {"slept": 0}
    assert [i.cold for i in system.stack.runtime.invocations if i.function == name] == [True, True]


def test_a_task_state_past_its_timeout_seconds_fails_as_states_timeout(system):
    name = function(system, "sleepy", timeout_s=30)
    role = system.sfn.describe_state_machine(stateMachineArn=system.info.job_state_machine_arn)["roleArn"]
    definition = {
        "StartAt": "Sleep",
        "States": {
            "Sleep": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": name, "Payload": {"seconds": 5}},
                "TimeoutSeconds": 1,
                "End": True,
            }
        },
    }
    machine = f"timeout-{uuid.uuid4().hex[:8]}"
    arn = system.sfn.create_state_machine(name=machine, definition=json.dumps(definition), roleArn=role)[
        "stateMachineArn"
    ]
    # The job state machine's role may invoke only picflow's functions: this one for the test too.
    principal = system.stack.iam.principals[system.stack.iam.role_key(role)]
    system.stack.iam.principals[system.stack.iam.role_key(role)] = type(principal)(
        principal.role_arn, principal.session, principal.policies + ANYTHING
    )
    try:
        started = system.sfn.start_execution(stateMachineArn=arn, name=machine, input="{}")
        execution = system.stack.wait_for_arn(started["executionArn"])
    finally:
        system.stack.iam.principals[system.stack.iam.role_key(role)] = principal

    assert (execution["status"], execution["error"]) == ("FAILED", "States.Timeout")


def test_concurrent_invocations_run_in_processes_of_their_own_and_share_no_globals(system, tmp_path):
    name = function(system, "rendezvous", timeout_s=30)
    results: dict[str, Any] = {}

    def call(me: str, other: str) -> None:
        results[me] = invoke(system, name, {"id": me, "other": other, "folder": str(tmp_path)})

    threads = [threading.Thread(target=call, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    # Each waited for the other: both could only finish in two execution environments at once.
    (a, error_a), (b, error_b) = results["a"], results["b"]
    assert (error_a, error_b) == (None, None)
    assert a["pid"] != b["pid"]
    assert (a["seen"], b["seen"]) == (["a"], ["b"])


def test_a_warm_environment_keeps_its_globals_between_invocations(system):
    name = function(system, "rendezvous", timeout_s=30)

    first, _ = invoke(system, name, {"id": "1"})
    second, _ = invoke(system, name, {"id": "2"})

    assert first["pid"] == second["pid"]
    assert second["seen"] == ["1", "2"]


def test_each_function_sees_its_own_configuration_and_credentials_only(system):
    one = function(system, "environment", environment={"MARK": "one"})
    two = function(system, "environment", environment={"OTHER_MARK": "two"})
    keys = ["MARK", "OTHER_MARK", "AWS_LAMBDA_FUNCTION_NAME", "AWS_ACCESS_KEY_ID", "PICFLOW_JOBS_TABLE"]

    seen_one, _ = invoke(system, one, {"keys": keys})
    seen_two, _ = invoke(system, two, {"keys": keys})

    assert (seen_one["MARK"], seen_one["OTHER_MARK"]) == ("one", None)
    assert (seen_two["MARK"], seen_two["OTHER_MARK"]) == (None, "two")
    assert seen_one["AWS_LAMBDA_FUNCTION_NAME"] == one
    assert seen_one["AWS_ACCESS_KEY_ID"] == f"LAMBDA-{one}"
    assert seen_one["PICFLOW_JOBS_TABLE"] is None  # the template's Globals are not this function's


def test_an_updated_configuration_gets_new_environments(system):
    name = function(system, "environment", environment={"MARK": "before"})
    assert invoke(system, name, {"keys": ["MARK"]})[0] == {"MARK": "before"}

    system.stack.client("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {"MARK": "after"}}
    )

    assert invoke(system, name, {"keys": ["MARK"]})[0] == {"MARK": "after"}


def test_a_process_that_exits_fails_the_invocation_as_runtime_exit_error(system):
    name = function(system, "crash")

    payload, error = invoke(system, name, {})

    assert error is not None  # moto says "Handled" where Lambda says "Unhandled": the payload tells
    assert payload["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in payload["errorMessage"]


def test_the_memory_an_invocation_used_is_reported(system):
    name = function(system, "allocate", memory_mb=512)

    invoke(system, name, {"mb": 64})

    (call,) = [i for i in system.stack.runtime.invocations if i.function == name]
    assert call.max_memory_mb >= 64


def test_a_handler_module_that_cannot_be_imported_fails_as_runtime_import_module_error(system):
    name = f"probe-import-{uuid.uuid4().hex[:8]}"
    system.stack.add_function(name, HANDLERS, "no_such_module.handler", policies=ANYTHING)

    payload, error = invoke(system, name, {})

    assert error is not None
    assert payload["errorType"] == "Runtime.ImportModuleError"
