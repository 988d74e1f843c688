"""template.yaml's security properties, read from the template itself (checkov runs in `make lint`).

Buckets refuse plain HTTP and public access and are encrypted; the jobs API needs an API key on
every route; the callbacks API is open by design and serves only the callback route; tables and
queues are encrypted at rest; buckets log access into a log bucket.
"""

from __future__ import annotations

import re
from typing import Any

import pytest


def _of_type(resources: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in resources.items() if res["Type"] == kind}


def _ref(value: Any) -> str | None:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    return None


def _buckets(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    buckets = _of_type(resources, "AWS::S3::Bucket")
    assert {"InputBucket", "OutputBucket", "AccessLogBucket"} <= set(buckets)
    return buckets


def test_every_bucket_blocks_public_access_and_is_encrypted(template_resources: dict[str, Any]) -> None:
    for name, bucket in _buckets(template_resources).items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, name
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}], name
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), name


def test_every_bucket_policy_denies_plain_http_on_bucket_and_objects(
    template_resources: dict[str, Any],
) -> None:
    policies = {
        _ref(p["Properties"]["Bucket"]): p["Properties"]["PolicyDocument"]["Statement"]
        for p in _of_type(template_resources, "AWS::S3::BucketPolicy").values()
    }
    for name in _buckets(template_resources):
        statements = policies.get(name)
        assert statements is not None, f"{name} has no bucket policy"
        deny = [
            s
            for s in statements
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert len(deny) == 1, name
        assert (deny[0]["Principal"], deny[0]["Action"]) == ("*", "s3:*"), name
        resources = deny[0]["Resource"]
        assert {"Fn::GetAtt": [name, "Arn"]} in resources, name
        assert any("/*" in str(r) for r in resources), f"{name}: objects not covered"
        for allow in (s for s in statements if s["Effect"] == "Allow"):
            # The only grant: S3's log delivery, from this account, into the log bucket.
            assert allow["Principal"] == {"Service": "logging.s3.amazonaws.com"}, name
            assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_data_buckets_log_access_into_the_log_bucket(template_resources: dict[str, Any]) -> None:
    buckets = _buckets(template_resources)
    for name in ("InputBucket", "OutputBucket"):
        logging = buckets[name]["Properties"]["LoggingConfiguration"]
        assert _ref(logging["DestinationBucketName"]) == "AccessLogBucket"


def _api_events(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, event["Properties"])
        for name, fn in _of_type(resources, "AWS::Serverless::Function").items()
        for event in fn["Properties"].get("Events", {}).values()
        if event["Type"] == "Api"
    ]


def test_jobs_api_requires_an_api_key_on_every_route(template_resources: dict[str, Any]) -> None:
    jobs_api = template_resources["JobsApi"]["Properties"]
    assert jobs_api["Auth"]["ApiKeyRequired"] is True
    assert jobs_api["Auth"]["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    routes = [
        (fn, props) for fn, props in _api_events(template_resources) if _ref(props["RestApiId"]) == "JobsApi"
    ]
    assert len(routes) == 12
    for fn, props in routes:
        assert fn == "ApiFunction"
        assert props.get("Auth", {}).get("ApiKeyRequired", True) is True, props["Path"]


def test_only_the_callback_route_is_open(template_resources: dict[str, Any]) -> None:
    events = _api_events(template_resources)
    # No implicit API: every route names its API, so none lands on an unauthenticated default.
    assert all("RestApiId" in props for _, props in events)
    assert "Auth" not in template_resources["CallbacksApi"]["Properties"]
    open_routes = [
        (fn, props["Method"], props["Path"])
        for fn, props in events
        if _ref(props["RestApiId"]) == "CallbacksApi"
    ]
    assert open_routes == [("CallbackFunction", "POST", "/callbacks/{job_id}/{secret}")]


def test_tables_and_queues_are_encrypted_at_rest(template_resources: dict[str, Any]) -> None:
    tables = _of_type(template_resources, "AWS::DynamoDB::Table")
    assert tables
    for name, table in tables.items():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name
    queues = _of_type(template_resources, "AWS::SQS::Queue")
    assert queues
    for name, queue in queues.items():
        props = queue["Properties"]
        assert props.get("KmsMasterKeyId") or props.get("SqsManagedSseEnabled") is True, name


@pytest.mark.parametrize("kind", ["AWS::Serverless::Function", "AWS::S3::Bucket", "AWS::Serverless::Api"])
def test_every_checkov_suppression_says_why(template_resources: dict[str, Any], kind: str) -> None:
    for name, res in _of_type(template_resources, kind).items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["id"].startswith("CKV_"), name
            assert len(skip.get("comment", "")) >= 30, f"{name} {skip['id']}: give the reason"


# Grants are read from the SAM-transformed template (what IAM receives), so SAM policy templates,
# inline statements, shared roles and managed policies all count the same way.
@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    from pathlib import Path

    from picflow_cli.validate import transformed_template

    return transformed_template(Path(__file__).resolve().parents[2])


def _names_in(value: Any) -> set[str]:
    """The resources an intrinsic refers to (Ref, GetAtt, ${X} / ${X.Attr} in Fn::Sub), or '*'."""
    if isinstance(value, str):
        return {"*"} if value == "*" else set()
    if isinstance(value, list):
        return set().union(*map(_names_in, value)) if value else set()
    if isinstance(value, dict):
        if "Ref" in value:
            return {str(value["Ref"])}
        if "Fn::GetAtt" in value:
            return {str(value["Fn::GetAtt"][0])}
        if "Fn::Sub" in value:
            arg = value["Fn::Sub"]
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            found = {m.split(".")[0] for m in re.findall(r"\$\{([\w.:]+)\}", text) if "::" not in m}
            return {n for n in found if n not in names} | set().union(set(), *map(_names_in, names.values()))
        return set().union(set(), *map(_names_in, value.values()))
    return set()


def _grants(cfn: dict[str, Any], function: str) -> set[tuple[str, str]]:
    """(action, resource logical id or '*') for every Allow of the function's role."""
    resources = cfn["Resources"]
    role = resources[resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]]["Properties"]
    documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
    documents += [
        resources[name]["Properties"]["PolicyDocument"]
        for arn in role.get("ManagedPolicyArns", [])
        for name in _names_in(arn)
        if name in resources
    ]
    grants = set()
    for document in documents:
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"]
            for action in [actions] if isinstance(actions, str) else actions:
                grants.update((action, name) for name in _names_in(statement["Resource"]))
    return grants


def _functions(cfn: dict[str, Any]) -> list[str]:
    return [name for name, res in cfn["Resources"].items() if res["Type"] == "AWS::Lambda::Function"]


def test_every_function_that_takes_or_frees_a_slot_or_stores_results_may_write_there(
    cfn: dict[str, Any],
) -> None:
    # The template is checked against where picflow.job.workflow writes. Validate takes the slot,
    # Collect and a sync Submit (every operation function) free it and fill the result cache,
    # the Slot function retries and releases it, the API frees it on cancel.
    operations = {name for name in _functions(cfn) if name.startswith("Op")}
    assert len(operations) == 14
    needs = {
        "SemaphoreTable": {"ValidateFunction", "SlotFunction", "CollectFunction", "ApiFunction", *operations},
        # Validate claims a miss; Finalize (a failed job) and the API (a cancelled one) free it.
        "ResultCacheTable": {
            "ValidateFunction",
            "FinalizeFunction",
            "ApiFunction",
            "CollectFunction",
            *operations,
        },
    }
    for table, names in needs.items():
        missing = sorted(
            name
            for name in names
            if not {("dynamodb:PutItem", table), ("dynamodb:UpdateItem", table)} <= _grants(cfn, name)
        )
        assert not missing, f"{table} is not writable by {missing}"


def test_every_operation_function_may_answer_and_heartbeat_its_callback_wait(cfn: dict[str, Any]) -> None:
    # A submit in callback mode sends a heartbeat (and a throttled verdict) on the task token;
    # it swallows the refusals that mean "the wait is over", so a missing grant would pass
    # silently in AWS and the callback window would shrink back to the submit's start.
    operations = sorted(name for name in _functions(cfn) if name.startswith("Op"))
    assert len(operations) == 14
    needed = {("states:SendTaskSuccess", "*"), ("states:SendTaskHeartbeat", "*")}
    missing = [name for name in operations if not needed <= _grants(cfn, name)]
    assert not missing


def test_every_function_that_sets_or_reads_a_batch_pause_flag_may(cfn: dict[str, Any]) -> None:
    # The pause flag lives in the coordination table: the API writes it (POST .../pause) and reads
    # it (GET /batches/{id}), Validate reads it before any money, the batch Report reads it.
    assert ("dynamodb:UpdateItem", "SemaphoreTable") in _grants(cfn, "ApiFunction")
    missing = [
        name
        for name in ("ValidateFunction", "BatchFunction", "ApiFunction")
        if ("dynamodb:GetItem", "SemaphoreTable") not in _grants(cfn, name)
    ]
    assert not missing


def test_every_checkov_skip_for_all_resources_says_why() -> None:
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if line.strip().startswith("- CKV_")]
    assert skips
    for i in skips:
        reason = []
        for line in reversed(lines[:i]):
            if not line.strip().startswith("#"):
                break
            reason.append(line)
        assert len(" ".join(reason)) >= 60, f"{lines[i].strip()}: give the reason above it"


def test_every_function_that_calls_a_provider_may_read_its_credentials(cfn: dict[str, Any]) -> None:
    # Submit and Check (the operation functions) call the providers; Collect reads a task's status
    # once more to recover a refused or cut download (picflow.job.collect). The strict local stack
    # fails such a call as AccessDenied; this says which role lacks the grant without running it.
    callers = {name for name in _functions(cfn) if name.startswith("Op")} | {"CollectFunction"}
    missing = sorted(
        name
        for name in callers
        if ("secretsmanager:GetSecretValue", "ProviderSecret") not in _grants(cfn, name)
    )
    assert not missing
