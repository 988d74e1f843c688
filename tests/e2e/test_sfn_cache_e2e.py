"""The local stack parses a state machine definition once (picflow_cli.local.sfn_cache): the parse
that validates it at CreateStateMachine is the program its executions run, a changed definition is
parsed again (by UpdateStateMachine's validation) and runs as changed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.e2e


def passes(result: str) -> dict[str, Any]:
    return {"StartAt": "Say", "States": {"Say": {"Type": "Pass", "Result": {"said": result}, "End": True}}}


def run(system, arn: str) -> dict[str, Any]:
    name = f"cache-{uuid.uuid4().hex[:10]}"
    started = system.sfn.start_execution(stateMachineArn=arn, name=name, input="{}")
    execution = system.stack.wait_for_arn(started["executionArn"], timeout=60)
    assert execution["status"] == "SUCCEEDED", execution
    return json.loads(execution["output"])


def test_a_definition_is_parsed_once_and_again_when_it_changes(system):
    role = system.sfn.describe_state_machine(stateMachineArn=system.info.job_state_machine_arn)["roleArn"]
    programs = system.stack.programs
    assert programs is not None
    name = f"cache-{uuid.uuid4().hex[:10]}"
    before = programs.parses

    # GIVEN a new definition, created and run once: parsed once
    arn = system.sfn.create_state_machine(name=name, definition=json.dumps(passes(name)), roleArn=role)[
        "stateMachineArn"
    ]
    assert programs.parses == before + 1  # the validation's parse, kept
    assert run(system, arn) == {"said": name}
    assert programs.parses == before + 1

    # WHEN it runs again: not parsed again
    assert run(system, arn) == {"said": name}
    assert programs.parses == before + 1

    # WHEN the definition changes: parsed again, and the new definition is what runs
    system.sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(passes("changed")))
    assert run(system, arn) == {"said": "changed"}
    assert programs.parses == before + 2


def test_a_definition_that_does_not_parse_is_refused_as_before(system):
    role = system.sfn.describe_state_machine(stateMachineArn=system.info.job_state_machine_arn)["roleArn"]
    broken = {"StartAt": "Nowhere", "States": {"Say": {"Type": "Task"}}}
    # moto's own InvalidDefinition answer (its server sends it without an error code)
    with pytest.raises(ClientError, match="No Resource declaration in State Task"):
        system.sfn.create_state_machine(
            name=f"broken-{uuid.uuid4().hex[:10]}", definition=json.dumps(broken), roleArn=role
        )
