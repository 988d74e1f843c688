"""`picflow tenants add` against a deployed stack (moto's API Gateway): the key joins the stack's
usage plan, a key the plan refuses is not left behind, and names are checked. The local stack's
path is tested end to end in tests/e2e/test_tenants_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from picflow_cli import tenants
from picflow_cli.errors import UsageError


@pytest.fixture
def apigw(aws: Any) -> Any:
    return boto3.client("apigateway", region_name="us-east-1")


def test_add_on_a_deployed_stack_puts_the_key_in_the_usage_plan(
    apigw: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GIVEN a stack whose TenantUsagePlanId output names a plan
    plan = apigw.create_usage_plan(name="picflow", throttle={"rateLimit": 50, "burstLimit": 100})["id"]
    monkeypatch.setattr(tenants, "_usage_plan", lambda stack, region: plan)
    # WHEN a tenant is added
    made = tenants.add_tenant("acme", stack_name="prod", state_file=tmp_path / "none", apigateway=apigw)
    # THEN its key is in the plan, enabled, named after the stack, and its id is the tenant
    [member] = apigw.get_usage_plan_keys(usagePlanId=plan)["items"]
    assert member["id"] == made.tenant
    key = apigw.get_api_key(apiKey=made.tenant, includeValue=True)
    assert (key["name"], key["enabled"], key["value"]) == ("prod-acme", True, made.api_key)
    assert (made.s3_prefix, made.usage_plan) == (f"tenants/{made.tenant}/", plan)
    # AND the same name again is refused
    with pytest.raises(UsageError, match="exists already"):
        tenants.add_tenant("acme", stack_name="prod", state_file=tmp_path / "none", apigateway=apigw)


class RefusingPlan:
    """moto's API Gateway, except that the plan refuses the key (as AWS does for a deleted plan)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def create_usage_plan_key(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "NotFoundException", "Message": "Invalid Usage Plan ID specified"}}
        raise ClientError(error, "CreateUsagePlanKey")


def test_a_key_the_plan_refuses_is_deleted_again(
    apigw: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tenants, "_usage_plan", lambda stack, region: "gone")
    with pytest.raises(Exception, match="Invalid Usage Plan"):
        tenants.add_tenant(
            "acme", stack_name="prod", state_file=tmp_path / "none", apigateway=RefusingPlan(apigw)
        )
    assert apigw.get_api_keys()["items"] == []


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "../etc"])
def test_a_name_off_the_rule_is_one_usage_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="tenant name"):
        tenants.add_tenant(name, state_file=tmp_path / "none", apigateway=object())


def test_the_usage_plan_is_the_stacks_tenant_usage_plan_output(aws: Any) -> None:
    import json

    from picflow_cli.errors import ConfigError

    # GIVEN a deployed stack with the output (and one from before tenants, without it)
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    topic = {"Type": "AWS::SNS::Topic", "Properties": {}}
    for name, outputs in (("prod", {"TenantUsagePlanId": {"Value": "plan-123"}}), ("old", {})):
        body = {"Resources": {"T": topic}, **({"Outputs": outputs} if outputs else {})}
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(body))
    # THEN the first names its plan, and the second is one clear line
    assert tenants._usage_plan("prod", "us-east-1") == "plan-123"
    with pytest.raises(ConfigError, match="no TenantUsagePlanId output"):
        tenants._usage_plan("old", "us-east-1")
