"""picflow validate: the template is judged after the SAM transform, where AWS would judge it.

GIVEN a SAM template whose cycle hides behind AWS::Serverless::* types (the shape that kept
picflow off AWS: bucket -> S3 trigger -> state machine -> a role reading the bucket)
WHEN cfn-lint sees the raw template THEN it says nothing; WHEN it sees the transformed one
THEN it reports the circular dependency.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from picflow_cli.validate import template_errors, transformed_template

ROOT = Path(__file__).resolve().parents[2]

CYCLE = textwrap.dedent(
    """
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Globals:
      Function: {Runtime: python3.12}
    Resources:
      Bucket:
        Type: AWS::S3::Bucket
      Trigger:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/f/
          Handler: app.handler
          Environment: {Variables: {MACHINE: !Ref Machine}}
          Events:
            Upload: {Type: S3, Properties: {Bucket: !Ref Bucket, Events: "s3:ObjectCreated:*"}}
      Reader:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: functions/f/
          Handler: app.handler
          Policies: [{S3ReadPolicy: {BucketName: !Ref Bucket}}]
      Machine:
        Type: AWS::Serverless::StateMachine
        Properties:
          Definition:
            StartAt: Read
            States: {Read: {Type: Task, Resource: !GetAtt Reader.Arn, End: true}}
          Policies: [{LambdaInvokePolicy: {FunctionName: !Ref Reader}}]
    """
)


def _repo(tmp_path: Path, template: str) -> Path:
    (tmp_path / "functions/f").mkdir(parents=True)
    (tmp_path / "functions/f/app.py").write_text("def handler(event, context):\n    return event\n")
    (tmp_path / "template.yaml").write_text(template)
    return tmp_path


def test_a_cycle_behind_serverless_types_is_found_only_after_the_transform(tmp_path: Path) -> None:
    errors = template_errors(_repo(tmp_path, CYCLE))
    assert errors, "the cycle went unnoticed"
    assert all(line.startswith("template.yaml (transformed): ") for line in errors), errors
    assert any("E3004" in line and "Circular" in line for line in errors), errors


def test_the_same_template_without_the_cycle_is_clean(tmp_path: Path) -> None:
    # The trigger names the machine by a string, not a reference: no edge back to the bucket.
    fixed = CYCLE.replace(
        "MACHINE: !Ref Machine",
        'MACHINE: !Sub "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:m"',
    )
    assert template_errors(_repo(tmp_path, fixed)) == []


@pytest.fixture(scope="module")
def picflow_cfn() -> dict:
    return transformed_template(ROOT)


def test_picflow_template_transforms_to_plain_cloudformation(picflow_cfn: dict) -> None:
    kinds = {res["Type"] for res in picflow_cfn["Resources"].values()}
    assert not any(kind.startswith("AWS::Serverless::") for kind in kinds)
    assert "AWS::Lambda::Function" in kinds
    assert "AWS::StepFunctions::StateMachine" in kinds
