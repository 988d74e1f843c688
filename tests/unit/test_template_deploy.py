"""What CloudFormation and the AWS services would refuse or regret, read from the SAM-transformed
template (what CloudFormation receives): log groups with retention, state machine logging, names
that fit their limits for any stack name, and timeouts that fit API Gateway's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from picflow.core.names import items_key
from picflow_cli.local.stack import load_template
from picflow_cli.validate import transformed_template

ROOT = Path(__file__).resolve().parents[2]

# The longest values each pseudo parameter takes: CloudFormation's stack name limit, and a
# region name of the longest kind (ap-southeast-1: 14 characters).
WORST = {
    "AWS::StackName": "s" * 128,
    "AWS::AccountId": "123456789012",
    "AWS::Region": "ap-southeast-1",
    "AWS::Partition": "aws-us-gov",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": "arn:aws:cloudformation:ap-southeast-1:123456789012:stack/"
    + "s" * 128
    + "/1c2fa620-982a-11e3-aff7-50e2416294e0",
}
# Name property -> its service's limit.
LIMITS = {
    ("AWS::S3::Bucket", "BucketName"): 63,
    ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::StepFunctions::StateMachine", "StateMachineName"): 80,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::SQS::Queue", "QueueName"): 80,
    ("AWS::DynamoDB::Table", "TableName"): 255,
}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template(ROOT)


def _resources(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in cfn["Resources"].items() if r["Type"] == kind}


def _evaluate(value: Any) -> str:
    """The string an intrinsic yields, for the pseudo parameters in WORST (enough for names)."""
    if isinstance(value, str):
        return value
    (fn, arg), *_ = value.items()
    if fn == "Ref":
        return WORST[arg]
    if fn == "Fn::Select":
        return _evaluate_list(arg[1])[int(arg[0])]
    if fn == "Fn::Join":
        return arg[0].join(_evaluate(v) for v in arg[1])
    if fn == "Fn::Sub":
        text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {**WORST, **{k: _evaluate(v) for k, v in names.items()}}
        return re.sub(r"\$\{([\w:]+)\}", lambda m: values[m.group(1)], text)
    raise AssertionError(f"a name built with {fn}: extend _evaluate")


def _evaluate_list(value: Any) -> list[str]:
    (fn, arg), *_ = value.items()
    assert fn == "Fn::Split", fn
    return _evaluate(arg[1]).split(arg[0])


def test_every_name_fits_its_limit_for_any_stack_name(cfn: dict[str, Any]) -> None:
    checked = 0
    for logical_id, res in cfn["Resources"].items():
        for (kind, prop), limit in LIMITS.items():
            if res["Type"] == kind and prop in res.get("Properties", {}):
                name = _evaluate(res["Properties"][prop])
                assert len(name) <= limit, f"{logical_id}.{prop}: {len(name)} > {limit} ({name})"
                checked += 1
    # The input bucket and two state machines are named (the S3 trigger and the batch's own
    # role find them by name), and the state machines' log groups.
    assert checked >= 6


def test_every_function_logs_to_its_own_group_kept_for_the_retention_parameter(cfn: dict[str, Any]) -> None:
    groups = _resources(cfn, "AWS::Logs::LogGroup")
    functions = _resources(cfn, "AWS::Lambda::Function")
    assert len(functions) >= 24
    used = []
    for name, fn in functions.items():
        ref = fn["Properties"].get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert ref in groups, f"{name} logs to no group of the stack"
        used.append(ref)
    assert len(set(used)) == len(used), "two functions share a log group"
    for name, group in groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_every_state_machine_logs_errors_without_payloads(cfn: dict[str, Any]) -> None:
    machines = _resources(cfn, "AWS::StepFunctions::StateMachine")
    assert len(machines) == 3
    roles = _resources(cfn, "AWS::IAM::Role")
    for name, machine in machines.items():
        logging = machine["Properties"]["LoggingConfiguration"]
        assert logging["Level"] == "ERROR", name
        assert logging["IncludeExecutionData"] is False, name  # payloads carry presigned URLs
        group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        assert cfn["Resources"][group]["Type"] == "AWS::Logs::LogGroup"
        role = roles[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]["Properties"]
        documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
        documents += [
            cfn["Resources"][arn["Ref"]]["Properties"]["PolicyDocument"]
            for arn in role.get("ManagedPolicyArns", [])
            if isinstance(arn, dict) and arn.get("Ref") in cfn["Resources"]
        ]
        actions = set()
        for document in documents:
            for statement in document["Statement"]:
                listed = statement["Action"]
                actions.update([listed] if isinstance(listed, str) else listed)
        assert {"logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:DescribeLogGroups"} <= actions, name


def test_functions_behind_api_gateway_end_before_it_gives_up(cfn: dict[str, Any]) -> None:
    """API Gateway's integration timeout is 29 s: a longer function leaves the caller a bare 504."""
    permissions = _resources(cfn, "AWS::Lambda::Permission")
    behind_api = {
        p["Properties"]["FunctionName"]["Ref"]
        for p in permissions.values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert {"ApiFunction", "CallbackFunction"} <= behind_api
    for name in behind_api:
        assert cfn["Resources"][name]["Properties"]["Timeout"] < 29, name


def test_no_concurrency_is_reserved_by_default() -> None:
    """New accounts may have a concurrency quota of 10, and Lambda keeps 100 unreserved."""
    params = load_template(ROOT / "template.yaml")["Parameters"]
    assert params["CallbackConcurrency"]["Default"] == 0


def test_the_batch_map_may_read_its_items_and_write_its_results_and_no_more(cfn: dict[str, Any]) -> None:
    machine = cfn["Resources"]["BatchStateMachine"]
    role = cfn["Resources"][machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    s3 = [
        s
        for policy in role["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
        if any(
            str(a).startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        )
    ]
    granted = {(a, _evaluate(s["Resource"]).split("}/", 1)[-1]) for s in s3 for a in s["Action"]}
    asl = json.loads((ROOT / "statemachine/batch.asl.json").read_text())
    maps = [s for s in asl["States"].values() if s["Type"] == "Map"]
    prefixes = {m["ResultWriter"]["Parameters"]["Prefix"] for m in maps}
    assert len(prefixes) == 1
    results = f"{prefixes.pop()}/*"
    assert granted == {
        ("s3:GetObject", items_key("*")),
        ("s3:PutObject", results),
        ("s3:GetObject", results),
        ("s3:ListMultipartUploadParts", results),
        ("s3:AbortMultipartUpload", results),
    }
