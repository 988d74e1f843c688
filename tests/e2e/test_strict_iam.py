"""IAM on every call (picflow_cli.local.iam): each call a function or a state machine makes is checked
against its role's policies; deliberately wrong handlers and policies fail with AccessDenied."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

HANDLERS = Path(__file__).resolve().parent / "handlers"


def test_a_handler_call_its_role_does_not_allow_fails_naming_the_permission(system):
    # GIVEN a function whose role may write the semaphore table only (as SlotFunction's)
    table = system.info.resources["SemaphoreTable"]
    jobs = system.info.resources["JobsTable"]
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem"],
                "Resource": f"arn:aws:dynamodb:us-east-1:123456789012:table/{table}",
            }
        ]
    }
    name = f"probe-iam-{uuid.uuid4().hex[:8]}"
    system.stack.add_function(name, HANDLERS, "misbehaving.put_job", policies=(policy,))
    lam = system.stack.client("lambda")

    # WHEN it writes the jobs table
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"table": jobs}))
    payload = json.loads(answer["Payload"].read())

    # THEN the call is refused as AWS refuses it, naming principal, action and resource
    assert answer.get("FunctionError")
    assert "AccessDeniedException" in payload["errorMessage"]
    assert (
        f"assumed-role/{name}-role/{name} is not authorized to perform: dynamodb:PutItem"
        in (payload["errorMessage"])
    )
    assert f"table/{jobs} because no identity-based policy allows" in payload["errorMessage"]
    # ... while the table its role names is written
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"table": table}))
    assert json.loads(answer["Payload"].read()) == {"written": True}


def test_an_explicit_deny_wins_over_an_allow(system):
    allow = {"Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}]}
    deny = {"Statement": [{"Effect": "Deny", "NotAction": ["dynamodb:GetItem"], "Resource": "*"}]}
    name = f"probe-deny-{uuid.uuid4().hex[:8]}"
    system.stack.add_function(name, HANDLERS, "misbehaving.put_job", policies=(allow, deny))

    answer = system.stack.client("lambda").invoke(
        FunctionName=name, Payload=json.dumps({"table": system.info.resources["SemaphoreTable"]})
    )

    assert (
        "with an explicit deny in an identity-based policy"
        in json.loads(answer["Payload"].read())["errorMessage"]
    )


def test_a_template_function_missing_a_policy_fails_its_job(system, sample):
    # GIVEN the S3 trigger's role without its jobs table policy (a template edit gone wrong)
    key_id = system.stack.iam.function_key(system.info.resources["S3TriggerFunction"])
    principal = system.stack.iam.principals[key_id]
    jobs = system.info.resources["JobsTable"]
    narrowed = tuple(p for p in principal.policies if f"table/{jobs}" not in json.dumps(p))
    assert len(narrowed) < len(principal.policies)
    system.stack.iam.principals[key_id] = replace(principal, policies=narrowed)
    before = len(system.stack.runtime.invocations)
    try:
        # WHEN an image is uploaded
        system.upload("remove_fabric/iam/f.png", sample["image.png"], {})
    finally:
        system.stack.iam.principals[key_id] = principal

    # THEN the trigger fails on its first jobs-table call, naming it
    trigger = system.info.resources["S3TriggerFunction"]
    (call,) = [i for i in system.stack.runtime.invocations[before:] if i.function == trigger]
    assert call.errored
    denied = [c for c in system.stack.iam.calls if not c.allowed and f"/{trigger}" in c.principal]
    assert denied
    assert denied[-1].action.startswith("dynamodb:")
    assert denied[-1].resource.endswith(f"table/{jobs}")


def test_a_state_machine_role_without_invoke_fails_the_task_with_access_denied(system):
    # GIVEN a state machine with the pipeline's role (it may start jobs, not invoke functions)
    role = system.sfn.describe_state_machine(stateMachineArn=system.info.pipeline_state_machine_arn)[
        "roleArn"
    ]
    slot = system.info.resources["SlotFunction"]
    definition = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": slot, "Payload": {}},
                "End": True,
            }
        },
    }
    name = f"iam-{uuid.uuid4().hex[:8]}"
    arn = system.sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)[
        "stateMachineArn"
    ]

    started = system.sfn.start_execution(stateMachineArn=arn, name=name, input="{}")
    execution = system.stack.wait_for_arn(started["executionArn"])

    assert execution["status"] == "FAILED"
    assert "is not authorized to perform: lambda:InvokeFunction" in execution["cause"]
    assert f"function:{slot}" in execution["cause"]


def test_the_product_runs_with_every_call_checked(system, sample):
    # A whole job: every call its functions and its state machine make is checked and allowed.
    since = len(system.stack.iam.calls)
    key = system.upload("remove_fabric/iam/ok.png", sample["image.png"], {})

    execution, _ = system.run(key)

    assert execution["status"] == "SUCCEEDED"
    calls = list(system.stack.iam.calls)[since:]
    assert {c.action for c in calls} >= {"lambda:InvokeFunction", "dynamodb:PutItem", "s3:GetObjectVersion"}
    assert [c for c in calls if not c.allowed] == []


@pytest.mark.parametrize(
    ("key", "params"),
    [
        ("remove_fabric/iam/lost.png", {}),  # polled, then Collect: the result is in $.result
        ("replace_background/iam/lost.png", {"prompt": "a beach"}),  # sync: in $.submit.Payload
    ],
)
def test_a_notify_that_keeps_failing_still_ends_the_job_with_its_results(system, sample, key, params):
    # GIVEN Notify's role without its jobs table (every Notify fails), so the job takes NoticeLost,
    # whose Parameters would end the execution in States.Runtime if they read a missing path
    notify = system.stack.iam.function_key(system.info.resources["NotifyFunction"])
    principal = system.stack.iam.principals[notify]
    jobs = system.info.resources["JobsTable"]
    system.stack.iam.principals[notify] = replace(
        principal, policies=tuple(p for p in principal.policies if f"table/{jobs}" not in json.dumps(p))
    )
    try:
        execution, _ = system.run(system.upload(key, sample["image.png"], params))
    finally:
        system.stack.iam.principals[notify] = principal

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    output = json.loads(execution["output"])
    assert output["status"] == "SUCCEEDED"
    assert output["primary_key"]
    assert output["notify_error"]["Error"] == "ClientError"
