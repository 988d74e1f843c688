"""IAM on every call: each AWS call a function or a state machine makes is evaluated against its
role's policies, as deployed from the *transformed* template (SAM policy templates expanded).

Who calls is known from the credentials: each function's execution environments get an access
key id naming the function (``LAMBDA-<function name>``), and the Step Functions interpreter's
clients one naming the state machine's role (``STATES-<role name>``). A request signed with any
other key (the tests, the CLI, the demo: the operator) is not checked, as an administrator's.

:func:`install` hooks moto's request handling in one place (moto's own, disabled, IAM hook: every
service's ``call_action`` and every S3 handler call it) and the interpreter's client factory.
A call the role does not allow is refused as AWS refuses it: ``AccessDeniedException``
(``AccessDenied`` for S3) naming the principal, the action and the resource, e.g. "User:
arn:aws:sts::123456789012:assumed-role/<role>/<function> is not authorized to perform:
dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/<table> because no
identity-based policy allows the dynamodb:PutItem action".

The evaluator is written here rather than taken from a library: moto's (``moto.iam.access_control``)
treats a failed condition as a Deny, matches actions case-sensitively, has no ``NotResource`` and
checks every non-S3 action against ``Resource: "*"``; no maintained Python package evaluates
identity policies (the IAM tools on PyPI lint or expand policies). It implements identity-based
evaluation: an explicit Deny wins, else an Allow allows, else the call is implicitly denied;
``Action``/``NotAction`` (case-insensitive ``*``/``?`` wildcards), ``Resource``/``NotResource``
(case-sensitive wildcards), and the condition operators ``String*``, ``Arn*``, ``Bool``, ``Null``
(with ``IfExists``) over the keys ``aws:SecureTransport``, ``aws:PrincipalArn``,
``aws:PrincipalAccount`` and ``aws:RequestedRegion``. What it leaves out is in
``docs/local-stack.md``.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

__all__ = [
    "Call",
    "Decision",
    "Principal",
    "Registry",
    "evaluate",
    "install",
    "requested_calls",
]

REGION = "us-east-1"
ACCOUNT = "123456789012"
# Connections kept open per interpreter client (a Task's Lambda invoke holds one for its run).
POOL_CONNECTIONS = 64


# --- the evaluator --------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool = False


@functools.lru_cache(maxsize=4096)
def _pattern(text: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(f"^{regex}$", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@functools.lru_cache(maxsize=4096)
def _any_pattern(texts: tuple[str, ...], *, ignore_case: bool) -> re.Pattern[str] | None:
    """One regex matching what any of ``texts`` matches (None for none: nothing matches)."""
    if not texts:
        return None
    if len(texts) == 1:
        return _pattern(texts[0], ignore_case=ignore_case)
    either = "|".join(_pattern(t, ignore_case=ignore_case).pattern for t in texts)
    return re.compile(f"(?:{either})", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _texts(patterns: Any) -> tuple[str, ...]:
    return tuple(str(p) for p in (patterns if isinstance(patterns, list) else [patterns]))


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str]) -> bool:
    values = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists").split(":")[-1]  # ForAnyValue:/ForAllValues: on one value
    actual = context.get(key)
    if base == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        return if_exists
    tests: dict[str, Callable[[str], bool]] = {
        "StringEquals": lambda v: actual == v,
        "StringNotEquals": lambda v: actual != v,
        "StringEqualsIgnoreCase": lambda v: actual.lower() == v.lower(),
        "StringNotEqualsIgnoreCase": lambda v: actual.lower() != v.lower(),
        "StringLike": lambda v: bool(_pattern(v, ignore_case=False).match(actual)),
        "StringNotLike": lambda v: not _pattern(v, ignore_case=False).match(actual),
        "ArnEquals": lambda v: bool(_pattern(v, ignore_case=False).match(actual)),
        "ArnLike": lambda v: bool(_pattern(v, ignore_case=False).match(actual)),
        "ArnNotEquals": lambda v: not _pattern(v, ignore_case=False).match(actual),
        "ArnNotLike": lambda v: not _pattern(v, ignore_case=False).match(actual),
        "Bool": lambda v: actual.lower() == v.lower(),
    }
    test = tests.get(base)
    if test is None:
        return False  # an operator this evaluator does not know: the statement does not apply
    negated = base.startswith(("StringNot", "ArnNot"))
    return all(test(v) for v in values) if negated else any(test(v) for v in values)


@dataclass(frozen=True, slots=True)
class _Statement:
    """One statement, its wildcards compiled: ``Action``/``NotAction`` and ``Resource``/
    ``NotResource`` each as one regex (None: matches nothing), ``negate_*`` for the ``Not`` forms."""

    deny: bool
    actions: re.Pattern[str] | None
    negate_actions: bool
    resources: re.Pattern[str] | None
    negate_resources: bool
    condition: Any  # the statement's Condition block, evaluated as written (rare, cheap)

    @classmethod
    def of(cls, statement: Mapping[str, Any]) -> _Statement:
        negate_actions = "NotAction" in statement
        negate_resources = "NotResource" in statement
        actions = statement["NotAction"] if negate_actions else statement.get("Action", [])
        resources = statement["NotResource"] if negate_resources else statement.get("Resource", [])
        return cls(
            deny=statement.get("Effect") == "Deny",
            actions=_any_pattern(_texts(actions), ignore_case=True),
            negate_actions=negate_actions,
            resources=_any_pattern(_texts(resources), ignore_case=False),
            negate_resources=negate_resources,
            condition=statement.get("Condition"),
        )

    def applies(self, action: str, resource: str, context: Mapping[str, str]) -> bool:
        matched = self.actions is not None and self.actions.match(action) is not None
        if matched is self.negate_actions:
            return False
        matched = self.resources is not None and self.resources.match(resource) is not None
        if matched is self.negate_resources:
            return False
        return not self.condition or all(
            _condition_holds(operator, key, expected, context)
            for operator, conditions in self.condition.items()
            for key, expected in conditions.items()
        )


def _compile(policies: Iterable[Mapping[str, Any]]) -> tuple[_Statement, ...]:
    compiled = []
    for policy in policies:
        statements = policy.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            compiled.append(_Statement.of(statement))
    return tuple(compiled)


def _decide(
    statements: Iterable[_Statement], action: str, resource: str, context: Mapping[str, str]
) -> Decision:
    allowed = False
    for statement in statements:
        if not statement.applies(action, resource, context):
            continue
        if statement.deny:
            return _DENIED
        allowed = True
    return _ALLOWED if allowed else _NOT_ALLOWED


_DENIED = Decision(False, explicit_deny=True)
_ALLOWED = Decision(True)
_NOT_ALLOWED = Decision(False)


def evaluate(
    policies: Iterable[Mapping[str, Any]],
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> Decision:
    """Identity-based evaluation of ``action`` on ``resource`` under ``policies`` (documents)."""
    return _decide(_compile(policies), action, resource, context or {})


# --- principals and the record of calls -----------------------------------------------


@dataclass(frozen=True)
class Principal:
    """A role as a caller: its ARN, the session name (the function's) and its policy documents.

    Its statements are compiled once, at its first check, and kept on it: a principal's policies
    change by putting a new Principal in the registry (``dataclasses.replace``), never by editing
    the documents in place, which the compiled statements would not see."""

    role_arn: str
    session: str
    policies: tuple[Mapping[str, Any], ...]

    @functools.cached_property
    def arn(self) -> str:
        role_name = self.role_arn.rsplit("/", 1)[-1]
        return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/{self.session}"

    @functools.cached_property
    def statements(self) -> tuple[_Statement, ...]:
        return _compile(self.policies)


@dataclass(frozen=True)
class Call:
    principal: str  # the assumed-role ARN
    action: str
    resource: str
    allowed: bool


@dataclass
class Registry:
    """The principals by access key id, and every evaluated call (most recent 100,000)."""

    principals: dict[str, Principal] = field(default_factory=dict)
    calls: deque[Call] = field(default_factory=lambda: deque(maxlen=100_000))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def function_key(function_name: str) -> str:
        return f"LAMBDA-{function_name}"

    @staticmethod
    def role_key(role_arn: str) -> str:
        return f"STATES-{role_arn.rsplit('/', 1)[-1]}"

    def check(self, key: str | None, requested: list[tuple[str, str]], secure: bool) -> str | None:
        """None if every (action, resource) is allowed for the key's principal, else AWS's message."""
        principal = self.principals.get(key or "")
        if principal is None:
            return None  # the operator's own credentials
        context = {
            "aws:SecureTransport": "true" if secure else "false",
            "aws:PrincipalArn": principal.role_arn,
            "aws:PrincipalAccount": ACCOUNT,
            "aws:RequestedRegion": REGION,
        }
        refusal = None
        for action, resource in requested:
            decision = _decide(principal.statements, action, resource, context)
            with self._lock:
                self.calls.append(Call(principal.arn, action, resource, decision.allowed))
            if not decision.allowed and refusal is None:
                why = (
                    "with an explicit deny in an identity-based policy"
                    if decision.explicit_deny
                    else f"because no identity-based policy allows the {action} action"
                )
                refusal = (
                    f"User: {principal.arn} is not authorized to perform: {action} "
                    f"on resource: {resource} {why}"
                )
        return refusal


# --- what a request asks for ----------------------------------------------------------


def _credential_key(headers: Mapping[str, str], query: Mapping[str, Any]) -> str | None:
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    found = re.search(r"Credential=([^/,\s]+)/", auth)
    if found:
        return found.group(1)
    presigned = query.get("X-Amz-Credential")
    if presigned:
        value = presigned[0] if isinstance(presigned, list) else presigned
        return unquote(str(value)).split("/", 1)[0]
    return None


def _json_body(raw: Any) -> dict[str, Any]:
    try:
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        body = json.loads(text) if text else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _table(name: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_IAM_ACTION_NAMES = {("lambda", "Invoke"): "InvokeFunction", ("s3", "ListBuckets"): "ListAllMyBuckets"}


def requested_calls(service: str, action: str, body: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one request of a JSON-protocol service is
    authorized on, by the Service Authorization Reference; ``*`` where an action has no
    resource-level permissions or is not mapped here."""
    prefix = service
    name = _IAM_ACTION_NAMES.get((service, action), action)
    if service == "dynamodb":
        if action == "TransactWriteItems":
            return [
                (f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _table(spec["TableName"]))
                for item in body.get("TransactItems", [])
                for kind, spec in item.items()
                if kind in _TRANSACT_ACTIONS
            ]
        if action == "TransactGetItems":
            return [
                ("dynamodb:GetItem", _table(i["Get"]["TableName"])) for i in body.get("TransactItems", [])
            ]
        if action in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{action}", _table(t)) for t in body.get("RequestItems", {})]
        if "TableName" in body:
            return [(f"dynamodb:{action}", _table(body["TableName"], body.get("IndexName")))]
    elif service == "states":
        arn = body.get("stateMachineArn") or body.get("executionArn") or body.get("mapRunArn") or "*"
        return [(f"states:{action}", str(arn))]
    elif service == "secretsmanager" and "SecretId" in body:
        return [(f"secretsmanager:{action}", _secret_arn(str(body["SecretId"])))]
    elif service == "events" and action == "PutEvents":
        buses = {str(e.get("EventBusName") or "default") for e in body.get("Entries", [])} or {"default"}
        return [
            (
                "events:PutEvents",
                b if b.startswith("arn:") else f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{b}",
            )
            for b in sorted(buses)
        ]
    elif service == "lambda":
        found = re.search(r"/functions/([^/]+)", path)
        if found:
            target = unquote(found.group(1))  # a name, a name:qualifier or an ARN
            function = target.split(":")[6] if target.startswith("arn:") else target.split(":")[0]
            return [(f"lambda:{name}", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}")]
    elif service == "sqs" and "QueueUrl" in body:
        queue = str(body["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
        return [(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}")]
    return [(f"{prefix}:{name}", "*")]


def _secret_arn(secret_id: str) -> str:
    if secret_id.startswith("arn:"):
        return secret_id
    try:
        from moto.secretsmanager.models import secretsmanager_backends

        return str(secretsmanager_backends[ACCOUNT][REGION].describe_secret(secret_id).arn)
    except Exception:  # an unknown secret: the call fails on its own after the check
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret_id}"


def _s3_calls(response: Any, bucket: str | None, key: str | None) -> list[tuple[str, str]]:
    """The (IAM action, resource) pairs of one S3 request, from moto's own mapping, corrected:
    HEAD bucket is ``s3:ListBucket``, HEAD with ``versionId`` is ``GetObjectVersion``, a copy
    also reads its source, a multi-object delete deletes each key."""
    action = str(response.data.get("Action") or "")
    query = getattr(response, "querystring", {}) or {}
    headers = response.headers
    if bucket is None:
        return [("s3:ListAllMyBuckets", "*")]
    if not key:
        if action == "DeleteObject":  # POST ?delete: each listed key
            keys = _delete_keys(response.body)
            return [("s3:DeleteObject", f"arn:aws:s3:::{bucket}/{k}") for k in keys] or [
                ("s3:DeleteObject", f"arn:aws:s3:::{bucket}/*")
            ]
        return [(f"s3:{'ListBucket' if action == 'HeadBucket' else action}", f"arn:aws:s3:::{bucket}")]
    resource = f"arn:aws:s3:::{bucket}/{key}"
    if response.method == "HEAD" and "versionId" in query:
        action = "GetObjectVersion"
    calls = [(f"s3:{action}", resource)]
    source = headers.get("x-amz-copy-source")
    if source and response.method == "PUT":
        path, _, version = unquote(source).lstrip("/").partition("?versionId=")
        calls.append((f"s3:{'GetObjectVersion' if version else 'GetObject'}", f"arn:aws:s3:::{path}"))
    return calls


def _delete_keys(body: Any) -> list[str]:
    try:
        root = ElementTree.fromstring(body if isinstance(body, bytes | str) else b"")  # noqa: S314 - our own client's body
    except ElementTree.ParseError:
        return []
    return [el.text or "" for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Key"]


# --- the hooks --------------------------------------------------------------------------


def install(registry: Registry) -> Callable[[], None]:
    """Check every request to moto and sign the interpreter's calls; returns the undo function."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import JsonRESTError
    from moto.s3.exceptions import BucketAccessDeniedError

    original_normal = ActionAuthenticatorMixin._authenticate_and_authorize_normal_action
    original_s3 = ActionAuthenticatorMixin._authenticate_and_authorize_s3_action

    class _AccessDeniedError(JsonRESTError):
        code = 400

    class _LambdaAccessDeniedError(JsonRESTError):
        code = 403

    class _S3AccessDeniedError(BucketAccessDeniedError):
        def __init__(self, bucket: str, message: str) -> None:
            super().__init__(bucket)
            self.message = message

    def scope(response: Any) -> tuple[str | None, str]:
        auth = response.headers.get("Authorization") or ""
        found = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/", auth)
        service = found.group(1) if found else str(getattr(response, "service_name", "") or "")
        return _credential_key(response.headers, getattr(response, "querystring", {}) or {}), service

    def normal(self: Any, resource: str = "*") -> None:
        key, service = scope(self)
        if key not in registry.principals:
            return
        action = self._get_action()
        calls = requested_calls(service, action, _json_body(self.raw_body), urlsplit(self.uri).path)
        refusal = registry.check(key, calls, secure=False)
        if refusal is not None:
            raise (_LambdaAccessDeniedError if service == "lambda" else _AccessDeniedError)(
                "AccessDeniedException", refusal
            )

    def s3(self: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
        key, _ = scope(self)
        if key not in registry.principals:
            return
        refusal = registry.check(key, _s3_calls(self, bucket_name, key_name), secure=False)
        if refusal is not None:
            raise _S3AccessDeniedError(bucket_name or "", refusal)

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = normal  # type: ignore[method-assign]
    ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = s3  # type: ignore[method-assign]
    undo_clients = _sign_interpreter_calls(registry)

    def undo() -> None:
        undo_clients()
        ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = original_normal  # type: ignore[method-assign]
        ActionAuthenticatorMixin._authenticate_and_authorize_s3_action = original_s3  # type: ignore[method-assign]

    return undo


def _sign_interpreter_calls(registry: Registry) -> Callable[[], None]:
    """The Step Functions interpreter's clients sign with the state machine role's key.

    moto builds them all with one fixed key (``boto_client_for``, imported by name into each
    integration's module); every call site passes the state's credentials, whose role is the
    execution's role unless the state names another.

    moto also builds a new client at every call (~15 ms of CPU each, the largest single cost of
    the moto process in bench/throughput.py's profile, issue 19); a client is thread-safe, so one
    per (region, service, role, port) is kept and its connections stay open between Task states.
    """
    import sys

    import boto3
    from botocore.config import Config
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    clients: dict[tuple[str, str, str, str], Any] = {}
    clients_lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        role_arn = getattr(state_credentials, "role_arn", None)
        key = registry.role_key(role_arn) if role_arn else "ak"
        port = moto_server_port()
        with clients_lock:
            client = clients.get((region, service, key, port))
            if client is None:
                client = clients[region, service, key, port] = boto3.client(  # type: ignore[call-overload]
                    service_name=service,
                    region_name=region,
                    aws_access_key_id=key,
                    aws_secret_access_key="sk",  # noqa: S106 - moto does not check signatures here
                    endpoint_url=f"http://localhost:{port}",
                    config=Config(
                        parameter_validation=False,
                        retries={"max_attempts": 0, "total_max_attempts": 1},
                        connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                        max_pool_connections=POOL_CONNECTIONS,
                    ),
                )
        return client

    # Every integration module has imported the factory by name by now (the parser loads them all).
    import moto.stepfunctions.parser.asl.parse.asl_parser  # noqa: F401

    patched = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("moto.stepfunctions.parser")
        and getattr(module, "boto_client_for", None) is original
    ]
    for module in patched:
        module.boto_client_for = boto_client_for  # type: ignore[attr-defined]

    def undo() -> None:
        for module in patched:
            module.boto_client_for = original  # type: ignore[attr-defined]
        with clients_lock:
            for client in clients.values():
                client.close()
            clients.clear()

    return undo
