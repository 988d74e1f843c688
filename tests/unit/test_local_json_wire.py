"""picflow_cli.local.json_wire: moto's JSON answers written from plain dicts are byte for byte what
its attribute-picking serialiser writes, on real Step Functions (an executed state machine's
history), DynamoDB, Lambda, EventBridge and Secrets Manager answers."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import boto3
from moto import mock_aws
from moto.core.serialize import BaseJSONSerializer
from picflow_cli.local import ddb_wire, json_wire, waits
from picflow_cli.waiting import Patience

REGION = "us-east-1"
DEFINITION = {
    "StartAt": "Shape",
    "States": {
        "Shape": {"Type": "Pass", "Parameters": {"n.$": "$.n", "items": [1, 2, 3]}, "Next": "Fan"},
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": True}}},
            "ResultPath": "$.fanned",
            "Next": "Route",
        },
        "Route": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Nap"}],
            "Default": "Broke",
        },
        "Nap": {"Type": "Wait", "Seconds": 0, "Next": "Broke"},
        "Broke": {"Type": "Fail", "Error": "Custom.Error", "Cause": "on purpose"},
    },
}


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


def reads(bodies: list[bytes]) -> list[Callable[[], Any]]:
    """Deploy a little of everything, run one execution to its end; the read calls to repeat
    (each client appends its raw answer bodies to ``bodies``)."""
    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")

    def keep(http_response: Any, **_: Any) -> None:
        bodies.append(http_response.content)

    def client(service: str) -> Any:
        made = session.client(service)  # type: ignore[call-overload]
        made.meta.events.register("after-call", keep)
        return made

    sfn = client("stepfunctions")
    ends = waits.ChildEnds()
    undo_waits = waits.install(ends=ends)
    try:  # moto's interpreter stays patched for no later test, whatever happens here
        role = session.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = sfn.create_state_machine(name="m", definition=json.dumps(DEFINITION), roleArn=role)
        execution = sfn.start_execution(
            stateMachineArn=machine["stateMachineArn"], name="e", input='{"n": 2}'
        )
        arn = execution["executionArn"]
        ended = ends.watch(arn)
        # Woken by the execution's end; gives up only when its history stops growing (a loaded
        # machine is slow, not stuck). Read once first: it may have ended before the watch.
        patience = Patience("execution e still RUNNING", stall=30, cap=600)
        running = sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        while running and not ended.wait(1.0):
            patience.see(len(sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]))
            patience.check()
    finally:
        undo_waits()
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}, "g": {"S": "x"}, "m": {"M": {"n": {"N": "1"}}}})
    lam = client("lambda")
    lam.create_function(
        FunctionName="f", Runtime="python3.12", Role=role, Handler="app.handler", Code={"ZipFile": _zip()}
    )
    events = client("events")
    events.put_rule(Name="rule", EventPattern=json.dumps({"source": ["picflow"]}))
    secrets = client("secretsmanager")
    secrets.create_secret(Name="s", SecretString="{}")
    return [
        lambda: sfn.get_execution_history(executionArn=arn, maxResults=1000),
        lambda: sfn.get_execution_history(executionArn=arn, includeExecutionData=False),
        lambda: sfn.describe_execution(executionArn=arn),
        lambda: sfn.list_executions(stateMachineArn=machine["stateMachineArn"]),
        lambda: sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"]),
        lambda: sfn.list_state_machines(),
        lambda: dynamodb.describe_table(TableName="t"),
        lambda: dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}}),
        lambda: dynamodb.query(
            TableName="t",
            IndexName="by_g",
            KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "x"}},
        ),
        lambda: lam.get_function_configuration(FunctionName="f"),
        lambda: lam.list_functions(),
        lambda: events.list_rules(),
        lambda: secrets.describe_secret(SecretId="s"),
        lambda: secrets.list_secrets(),
    ]


def test_answers_match_moto_s_serialiser_byte_for_byte() -> None:
    bodies: list[bytes] = []
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        calls = reads(bodies)
        for call in calls:
            answers = []
            for direct in (False, True):
                undo = _install_both() if direct else (lambda: None)
                try:
                    bodies.clear()
                    call()
                finally:
                    undo()
                assert len(bodies) == 1
                answers.append(bodies[0])
            assert answers[0], "an empty answer compares nothing"
            assert answers[0] == answers[1]


def _install_both() -> Callable[[], None]:
    """As the local stack installs them: the structures' path under DynamoDB's attribute values."""
    undo_json = json_wire.install()
    undo_ddb = ddb_wire.install()

    def undo() -> None:
        undo_ddb()
        undo_json()

    return undo


def test_a_shape_whose_aliases_collide_goes_moto_s_way() -> None:
    from botocore.model import ShapeResolver

    shapes: dict[str, Any] = {
        "Safe": {"type": "structure", "members": {"Name": {"shape": "S"}, "Tags": {"shape": "L"}}},
        "Clash": {"type": "structure", "members": {"tags": {"shape": "S"}, "Tags": {"shape": "S"}}},
        "S": {"type": "string"},
        "L": {"type": "list", "member": {"shape": "S"}},
    }
    resolver = ShapeResolver(shapes)
    assert json_wire.plain_dict_safe(resolver.get_shape_by_name("Safe"))
    # xform_name("Tags") is "tags", another member: the picker could pick it for an absent Tags.
    assert not json_wire.plain_dict_safe(resolver.get_shape_by_name("Clash"))


def test_undo_restores_the_serialiser() -> None:
    original = BaseJSONSerializer._serialize_type_structure
    undo = json_wire.install()
    assert BaseJSONSerializer._serialize_type_structure is not original
    undo()
    assert BaseJSONSerializer._serialize_type_structure is original
