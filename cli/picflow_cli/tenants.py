"""``picflow tenants add NAME``: a new tenant, which is a new API key in the jobs API's usage plan.

A tenant is an API key: the API reads the caller's key id from API Gateway's request context, and
that id names everything the tenant owns (its jobs, batches and result-cache entries, and its S3
root ``tenants/<key id>/`` in both buckets). Adding one:

- **deployed** (``--stack-name``): ``apigateway:CreateApiKey``, then ``CreateUsagePlanKey`` into the
  stack's ``TenantUsagePlanId`` output, so the plan's throttle and quota apply to the key on its
  own. A key the plan refuses is deleted again.
- **local** (``--endpoint-url``, else the state file of ``picflow local up``): the key is made in
  moto's API Gateway, where the local front door finds it on its first use (and gives it the
  template's usage plan limits).

It prints the tenant id (the key id) and the key's value, which is shown only here.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from picflow_cli.errors import ConfigError, UsageError

__all__ = ["TENANT_NAME", "NewTenant", "add_tenant", "print_tenant"]

# The key's name (API Gateway's own names allow more; this keeps it readable in the console).
TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The CloudFormation output naming the usage plan (template.yaml).
USAGE_PLAN_OUTPUT = "TenantUsagePlanId"


@dataclass(frozen=True)
class NewTenant:
    name: str
    tenant: str  # the API key id: what the API and the S3 layout call the tenant
    api_key: str
    s3_prefix: str
    usage_plan: str | None  # None on the local stack (the front door applies the template's plan)


def _local_client(endpoint_url: str | None, state_file: Path) -> Any:
    import boto3

    region = "us-east-1"
    if endpoint_url is None:
        from picflow_cli.local.state import read_state

        state = read_state(state_file)
        if state is None:
            raise ConfigError(
                "no stack to add a tenant to: pass --stack-name (deployed), --endpoint-url, or start "
                "one with `picflow local up`"
            )
        endpoint_url, region = state.s3_endpoint, state.region
    return boto3.client(
        "apigateway",
        endpoint_url=endpoint_url,
        region_name=region,
        # moto takes any credentials (the local stack's own clients use these too).
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - not a secret: moto's placeholder
    )


def _usage_plan(stack_name: str, region: str | None) -> str:
    import boto3

    cfn = boto3.client("cloudformation", region_name=region)
    stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    plan = outputs.get(USAGE_PLAN_OUTPUT)
    if not plan:
        raise ConfigError(f"stack {stack_name} has no {USAGE_PLAN_OUTPUT} output: deploy this version first")
    return str(plan)


def add_tenant(
    name: str,
    *,
    stack_name: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    state_file: Path,
    apigateway: Any = None,
) -> NewTenant:
    """Make ``name``'s API key (and, on a deployed stack, put it in the usage plan)."""
    if not TENANT_NAME.match(name):
        raise UsageError(
            f"tenant name {name!r}: 1-64 letters, digits, . _ - (starting with a letter or digit)"
        )
    plan: str | None = None
    if stack_name is not None:
        import boto3

        plan = _usage_plan(stack_name, region)
        client = apigateway or boto3.client("apigateway", region_name=region)
        key_name = f"{stack_name}-{name}"
    else:
        client = apigateway or _local_client(endpoint_url, state_file)
        key_name = name
    existing = client.get_api_keys(nameQuery=key_name, includeValues=False).get("items", [])
    if any(item.get("name") == key_name for item in existing):
        raise UsageError(f"tenant {name!r} exists already (API key {key_name!r})")
    key = client.create_api_key(name=key_name, description=f"picflow tenant {name}", enabled=True)
    if plan is not None:
        try:
            client.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
        except Exception:
            # A key outside the plan would be refused by the API anyway: leave none behind.
            client.delete_api_key(apiKey=key["id"])
            raise
    return NewTenant(
        name=name,
        tenant=str(key["id"]),
        api_key=str(key["value"]),
        s3_prefix=f"tenants/{key['id']}/",
        usage_plan=plan,
    )


def print_tenant(tenant: NewTenant, out: TextIO, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(asdict(tenant), indent=2), file=out)
        return
    print(f"tenant     {tenant.name}", file=out)
    print(f"tenant id  {tenant.tenant}  (its API key's id: jobs, batches and results are its own)", file=out)
    print(f"api key    {tenant.api_key}  (shown only now: send it as x-api-key)", file=out)
    print(f"s3 root    {tenant.s3_prefix}  (its uploads, batch images and <operation>/ uploads)", file=out)
    if tenant.usage_plan:
        print(f"usage plan {tenant.usage_plan}  (its own throttle and quota)", file=out)
