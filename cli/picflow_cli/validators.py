"""Outside validators that judge what AWS will judge: ``asl-validator`` on the state machines,
``redocly lint`` on ``docs/openapi.json``.

Both are npm tools pinned in ``package.json``/``package-lock.json`` and installed into
``node_modules/`` by ``make setup``; nothing here installs them. Each function returns one line
per error, naming the file (an empty list means clean), for ``make lint`` and ``picflow validate``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picflow_cli.errors import ConfigError

__all__ = ["OpenApiProblems", "asl_errors", "openapi_errors", "openapi_problems", "substitutions"]

STATE_MACHINES = "statemachine"
OPENAPI = "docs/openapi.json"
TEMPLATE = "template.yaml"

# Made-up but well-formed account and region: the validators check ARN shapes, not existence.
_PARTITION, _REGION, _ACCOUNT = "aws", "us-east-1", "123456789012"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:]+)\}")
_NODE_ENV = {
    # redocly: no usage data and no "new version" look-up leave the machine (redocly.yaml also
    # says telemetry off; the variable covers a copy of the document elsewhere).
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "NO_COLOR": "1",
}


# What a Ref / GetAtt of each resource type yields, as data (the kinds the ASL files meet).
@dataclass(frozen=True)
class _Kind:
    service: str
    arn_resource: str  # the ARN's resource part, from the physical {name}
    ref: str = "{name}"  # what Ref answers: the name, the {arn} (state machines, topics), a URL
    global_arn: bool = False  # no region and account in the ARN (S3)


_KINDS: dict[str, _Kind] = {
    "AWS::Serverless::Function": _Kind("lambda", "function:{name}"),
    "AWS::Lambda::Function": _Kind("lambda", "function:{name}"),
    "AWS::Serverless::StateMachine": _Kind("states", "stateMachine:{name}", ref="{arn}"),
    "AWS::StepFunctions::StateMachine": _Kind("states", "stateMachine:{name}", ref="{arn}"),
    "AWS::S3::Bucket": _Kind("s3", "{name}", global_arn=True),
    "AWS::DynamoDB::Table": _Kind("dynamodb", "table/{name}"),
    "AWS::Serverless::SimpleTable": _Kind("dynamodb", "table/{name}"),
    "AWS::SQS::Queue": _Kind("sqs", "{name}", ref="https://sqs.{region}.amazonaws.com/{account}/{name}"),
    "AWS::SNS::Topic": _Kind("sns", "{name}", ref="{arn}"),
    "AWS::Events::EventBus": _Kind("events", "event-bus/{name}"),
    "AWS::SecretsManager::Secret": _Kind("secretsmanager", "secret:{name}", ref="{arn}"),
}
_PSEUDO = {
    "AWS::Partition": _PARTITION,
    "AWS::Region": _REGION,
    "AWS::AccountId": _ACCOUNT,
    "AWS::StackName": "picflow",
    "AWS::URLSuffix": "amazonaws.com",
}


def _physical_name(logical_id: str) -> str:
    # Lower case and short: valid as a bucket, table, function or state machine name alike.
    return f"picflow-{logical_id.lower()}"[:63]


def _arn(kind: _Kind, name: str) -> str:
    region, account = ("", "") if kind.global_arn else (_REGION, _ACCOUNT)
    return f"arn:{_PARTITION}:{kind.service}:{region}:{account}:{kind.arn_resource.format(name=name)}"


def _ref(logical_id: str, template: Mapping[str, Any]) -> str:
    if logical_id in _PSEUDO:
        return _PSEUDO[logical_id]
    parameter = template.get("Parameters", {}).get(logical_id)
    if parameter is not None:
        return str(parameter.get("Default", logical_id))
    resource = template.get("Resources", {}).get(logical_id)
    if resource is None:
        raise ValueError(f"Ref to {logical_id}, which template.yaml does not define")
    kind = _KINDS.get(str(resource.get("Type")))
    name = _physical_name(logical_id)
    if kind is None:
        return name
    return kind.ref.format(name=name, arn=_arn(kind, name), region=_REGION, account=_ACCOUNT)


def _get_att(logical_id: str, attribute: str, template: Mapping[str, Any]) -> str:
    resource = template.get("Resources", {}).get(logical_id)
    if resource is None:
        raise ValueError(f"GetAtt of {logical_id}, which template.yaml does not define")
    kind = _KINDS.get(str(resource.get("Type")))
    name = _physical_name(logical_id)
    if attribute == "Arn" and kind is not None:
        return _arn(kind, name)
    if attribute in ("Name", "TableName", "QueueName", "TopicName", "BucketName"):
        return name
    return f"{name}-{attribute.lower()}"


def _resolve(value: Any, template: Mapping[str, Any]) -> str:
    """A DefinitionSubstitutions value as CloudFormation would resolve it, with made-up names."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, Mapping) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return _ref(str(argument), template)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
            return _get_att(str(logical_id), str(attribute), template)
        if function == "Fn::Sub" and isinstance(argument, str):

            def one(match: re.Match[str]) -> str:
                logical_id, _, attribute = match.group(1).partition(".")
                if attribute:
                    return _get_att(logical_id, attribute, template)
                return _ref(logical_id, template)

            return _PLACEHOLDER.sub(one, argument)
    raise ValueError(f"cannot resolve the substitution {value!r}")


def substitutions(root: Path) -> dict[str, dict[str, str]]:
    """For each ASL file a state machine of template.yaml uses (path relative to ``root``), its
    DefinitionSubstitutions resolved to values of the right kind: a Lambda ARN for a
    function's Arn, a state machine ARN for a state machine's Ref, a bucket name for a bucket's
    Ref, and so on. Raises ValueError naming a value it cannot resolve."""
    values, problems = _substitutions(root)
    if problems:
        raise ValueError("; ".join(problems))
    return values


def _substitutions(root: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    from picflow_cli.local.stack import load_template

    try:
        template = load_template(root / TEMPLATE)
    except ValueError as exc:
        return {}, [f"{TEMPLATE}: cannot be read: {exc}"]
    out: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for logical_id, resource in template.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        uri = properties.get("DefinitionUri")
        if resource.get("Type") != "AWS::Serverless::StateMachine" or not isinstance(uri, str):
            continue
        values = out.setdefault(Path(uri).as_posix(), {})
        for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
            try:
                values[str(key)] = _resolve(value, template)
            except ValueError as exc:
                problems.append(f"{TEMPLATE}: {logical_id} DefinitionSubstitutions {key}: {exc}")
    return out, problems


def _node_tool(root: Path, name: str) -> str:
    if shutil.which("node") is None:
        raise ConfigError("node is not on PATH: install Node.js 20 or later, then run `make setup`")
    tool = root / "node_modules" / ".bin" / name
    if not tool.is_file():
        raise ConfigError(f"{name} is not installed in {root / 'node_modules'}: run `make setup`")
    return str(tool)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_NODE_ENV}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def asl_errors(root: Path) -> list[str]:
    """asl-validator on every ``statemachine/*.asl.json`` with its ``${Name}`` placeholders
    substituted as the template maps them; one line per error, naming the file."""
    tool = _node_tool(root, "asl-validator")
    mapped, errors = _substitutions(root)
    with tempfile.TemporaryDirectory(prefix="picflow-asl-") as tmp:
        for path in sorted((root / STATE_MACHINES).glob("*.asl.json")):
            name = path.relative_to(root).as_posix()
            values = mapped.get(name, {})
            # Textual, as CloudFormation substitutes: the validator then sees real ARNs and names.
            text = _substitute(path.read_text(), values)
            unmapped = sorted(set(_PLACEHOLDER.findall(text)))
            errors += [
                f"{name}: ${{{p}}} has no DefinitionSubstitutions entry in {TEMPLATE}" for p in unmapped
            ]
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                errors.append(f"{name}: not JSON after substitution: {exc}")
                continue
            copy = Path(tmp) / path.name
            copy.write_text(text)
            done = _run([tool, "--json-path", str(copy)], cwd=root)
            if done.returncode == 0:
                continue
            # Exit 1: a header line, then one "CODE: message" line per error; 2: the tool failed.
            lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
            found = lines[1:] if done.returncode == 1 else []
            errors += [f"{name}: {ln}" for ln in found] or [
                f"{name}: asl-validator exited {done.returncode}: {' '.join(lines)[-500:]}"
            ]
    return errors


@dataclass
class OpenApiProblems:
    """redocly's findings on the document: errors fail the check, warnings are reported."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def openapi_problems(root: Path) -> OpenApiProblems:
    """``redocly lint docs/openapi.json`` (the rules in redocly.yaml), as lines naming the file,
    the line and the rule."""
    tool = _node_tool(root, "redocly")
    done = _run([tool, "lint", OPENAPI, "--format=json"], cwd=root)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = " ".join(done.stderr.split())[-500:]
        return OpenApiProblems(errors=[f"{OPENAPI}: redocly exited {done.returncode}: {tail}"])
    problems = OpenApiProblems()
    for problem in report.get("problems", []):
        where = (problem.get("location") or [{}])[0]
        start = where.get("start") or {}
        source = (where.get("source") or {}).get("ref", OPENAPI)
        line = (
            f"{source}:{start.get('line', '?')}:{start.get('col', '?')} {where.get('pointer', '')} "
            f"{problem.get('message', '')} [{problem.get('ruleId', '?')}]"
        )
        (problems.errors if problem.get("severity") == "error" else problems.warnings).append(line)
    if done.returncode != 0 and not problems.errors:
        problems.errors.append(f"{OPENAPI}: redocly exited {done.returncode} without naming an error")
    return problems


def openapi_errors(root: Path) -> list[str]:
    """redocly's errors on ``docs/openapi.json`` (empty: clean); its warnings go to stderr."""
    problems = openapi_problems(root)
    for warning in problems.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return problems.errors
