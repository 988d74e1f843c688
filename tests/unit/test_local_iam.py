"""The local stack's policy evaluator (picflow_cli.local.iam): identity-based evaluation rules."""

from __future__ import annotations

from dataclasses import replace

import pytest
from picflow_cli.local.iam import Principal, Registry, evaluate, requested_calls

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs"


def allow(action, resource, **extra):
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}]}


def deny(action, resource, **extra):
    return {"Statement": [{"Effect": "Deny", "Action": action, "Resource": resource, **extra}]}


def test_nothing_allowed_is_an_implicit_deny():
    decision = evaluate([], "dynamodb:PutItem", TABLE)
    assert (decision.allowed, decision.explicit_deny) == (False, False)


def test_an_explicit_deny_wins_over_any_allow():
    decision = evaluate([allow("*", "*"), deny("dynamodb:Put*", TABLE)], "dynamodb:PutItem", TABLE)
    assert (decision.allowed, decision.explicit_deny) == (False, True)


@pytest.mark.parametrize(
    ("pattern", "action", "allowed"),
    [
        ("dynamodb:PutItem", "dynamodb:PutItem", True),
        ("DynamoDB:putitem", "dynamodb:PutItem", True),  # actions are case-insensitive
        ("dynamodb:*", "dynamodb:PutItem", True),
        ("dynamodb:Get*", "dynamodb:PutItem", False),
        ("dynamodb:?etItem", "dynamodb:GetItem", True),
        ("s3:*", "dynamodb:PutItem", False),
    ],
)
def test_action_wildcards(pattern, action, allowed):
    assert evaluate([allow(pattern, "*")], action, TABLE).allowed is allowed


@pytest.mark.parametrize(
    ("pattern", "resource", "allowed"),
    [
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b.png", True),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket", False),
        ("arn:aws:s3:::Bucket/*", "arn:aws:s3:::bucket/a", False),  # resources are case-sensitive
        (
            "arn:aws:lambda:us-east-1:123456789012:function:picflow-Slot*",
            "arn:aws:lambda:us-east-1:123456789012:function:picflow-SlotFunction-ABC",
            True,
        ),
        (f"{TABLE}/index/*", f"{TABLE}/index/by_status", True),
        (f"{TABLE}/index/*", TABLE, False),
        ("arn:aws:s3:::b.c/*", "arn:aws:s3:::bxc/k", False),  # a dot is a dot, not a regex
    ],
)
def test_resource_wildcards(pattern, resource, allowed):
    assert evaluate([allow("s3:GetObject", pattern)], "s3:GetObject", resource).allowed is allowed


def test_not_action_and_not_resource():
    everything_but_delete = {"Statement": [{"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"}]}
    assert evaluate([everything_but_delete], "s3:GetObject", "arn:aws:s3:::b/k").allowed
    assert not evaluate([everything_but_delete], "s3:DeleteObject", "arn:aws:s3:::b/k").allowed
    outside = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret/*"}]}
    assert evaluate([outside], "s3:GetObject", "arn:aws:s3:::b/k").allowed
    assert not evaluate([outside], "s3:GetObject", "arn:aws:s3:::secret/k").allowed


def test_conditions_decide_whether_a_statement_applies():
    tls_only = deny("s3:*", "*", Condition={"Bool": {"aws:SecureTransport": "false"}})
    everything = allow("s3:*", "*")
    assert not evaluate(
        [everything, tls_only], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": "false"}
    ).allowed
    assert evaluate(
        [everything, tls_only], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:SecureTransport": "true"}
    ).allowed
    # A condition that does not hold makes an Allow not apply (moto's evaluator denied instead).
    regional = allow("s3:*", "*", Condition={"StringEquals": {"aws:RequestedRegion": "eu-west-1"}})
    decision = evaluate([regional], "s3:GetObject", "arn:aws:s3:::b/k", {"aws:RequestedRegion": "us-east-1"})
    assert (decision.allowed, decision.explicit_deny) == (False, False)
    if_exists = allow("s3:*", "*", Condition={"StringLikeIfExists": {"aws:PrincipalTag/team": "img*"}})
    assert evaluate([if_exists], "s3:GetObject", "arn:aws:s3:::b/k", {}).allowed


def test_requests_map_to_the_actions_and_resources_iam_checks():
    transact = {
        "TransactItems": [
            {"Put": {"TableName": "jobs"}},
            {"ConditionCheck": {"TableName": "cache"}},
        ]
    }
    assert requested_calls("dynamodb", "TransactWriteItems", transact, "/") == [
        ("dynamodb:PutItem", TABLE),
        ("dynamodb:ConditionCheckItem", "arn:aws:dynamodb:us-east-1:123456789012:table/cache"),
    ]
    assert requested_calls("dynamodb", "Query", {"TableName": "jobs", "IndexName": "by_status"}, "/") == [
        ("dynamodb:Query", f"{TABLE}/index/by_status")
    ]
    assert requested_calls("lambda", "Invoke", {}, "/2015-03-31/functions/picflow-fn/invocations") == [
        ("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:picflow-fn")
    ]
    assert requested_calls("states", "SendTaskSuccess", {"taskToken": "t"}, "/") == [
        ("states:SendTaskSuccess", "*")
    ]
    assert requested_calls("events", "PutEvents", {"Entries": [{"Source": "x"}]}, "/") == [
        ("events:PutEvents", "arn:aws:events:us-east-1:123456789012:event-bus/default")
    ]


BUCKET = "arn:aws:s3:::in"
ROLE = "arn:aws:iam::123456789012:role/picflow-FnRole-X"
# Several patterns in one statement are compiled into one regex: none may leak into another.
MIXED = [
    allow(["s3:Get*", "s3:PutObject"], [f"{BUCKET}/*", "arn:aws:s3:::out"]),
    allow("dynamodb:*Item", [TABLE, f"{TABLE}/index/*"]),
    deny("dynamodb:DeleteItem", TABLE),
    {"Statement": {"Effect": "Allow", "NotAction": ["s3:*", "dynamodb:*"], "NotResource": [f"{BUCKET}*"]}},
    {"Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]},  # allows nothing
]


@pytest.mark.parametrize(
    ("action", "resource", "decision"),
    [
        ("s3:GetObject", f"{BUCKET}/a.png", (True, False)),
        ("S3:getobjectversion", f"{BUCKET}/a.png", (True, False)),
        ("s3:PutObject", f"{BUCKET}/a.png", (True, False)),
        ("s3:PutObjectAcl", f"{BUCKET}/a.png", (False, False)),  # not a prefix match
        ("xs3:GetObject", f"{BUCKET}/a.png", (False, False)),
        ("s3:GetObject", "arn:aws:s3:::out", (True, False)),
        ("s3:GetObject", "arn:aws:s3:::out/k", (False, False)),
        ("s3:GetObject", BUCKET, (False, False)),
        ("s3:GetObject", "arn:aws:s3:::IN/a.png", (False, False)),
        ("dynamodb:PutItem", TABLE, (True, False)),
        ("dynamodb:Query", f"{TABLE}/index/by_status", (False, False)),
        ("dynamodb:GetItem", f"{TABLE}/index/by_status", (True, False)),
        ("dynamodb:DeleteItem", TABLE, (False, True)),
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:q", (True, False)),
        ("sqs:SendMessage", f"{BUCKET}/a.png", (False, False)),
        ("lambda:InvokeFunction", "*", (True, False)),
    ],
)
def test_a_principals_compiled_policies_decide_as_each_check_of_the_documents(action, resource, decision):
    assert (lambda d: (d.allowed, d.explicit_deny))(evaluate(MIXED, action, resource)) == decision
    registry = Registry({"LAMBDA-fn": Principal(ROLE, "fn", tuple(MIXED))})
    for _ in range(2):  # the second check runs on the principal's compiled statements
        refusal = registry.check("LAMBDA-fn", [(action, resource)], secure=False)
        assert (refusal is None) is decision[0]
        assert (refusal is not None and "explicit deny" in refusal) is decision[1]


def test_a_principal_replaced_after_its_first_check_is_checked_on_its_new_policies():
    registry = Registry({"LAMBDA-fn": Principal(ROLE, "fn", (allow("dynamodb:*", TABLE),))})
    put = [("dynamodb:PutItem", TABLE)]
    assert registry.check("LAMBDA-fn", put, secure=False) is None
    original = registry.principals["LAMBDA-fn"]

    registry.principals["LAMBDA-fn"] = replace(original, policies=())  # as the e2e tests narrow a role
    assert "no identity-based policy allows the dynamodb:PutItem" in registry.check("LAMBDA-fn", put, False)
    registry.principals["LAMBDA-fn"] = Principal(ROLE, "fn", (*original.policies, deny("*", "*")))
    assert "explicit deny" in registry.check("LAMBDA-fn", put, secure=False)

    registry.principals["LAMBDA-fn"] = original
    assert registry.check("LAMBDA-fn", put, secure=False) is None
    assert [c.allowed for c in registry.calls] == [True, False, False, True]
