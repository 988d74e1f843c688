"""``picflow validate``: the judges of what AWS will reject, run offline with no credentials.

moto creates stacks that CloudFormation refuses, and cfn-lint on the SAM template skips what
hides behind ``AWS::Serverless::*`` types (a dependency cycle through a function's role, for one).
So the template is judged after the SAM transform, as CloudFormation will see it: the same
transform the local stack deploys (aws-sam-translator), then cfn-lint. The state machines and
the API document go to their own judges (:mod:`picflow_cli.validators`). ``make lint`` and
``picflow deploy --dry-run`` both run :func:`problems`.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

__all__ = ["REGION", "problems", "summary", "transformed_template", "validate"]

# Any commercial region: the transform only needs one to name ARNs.
REGION = "us-east-1"
# cfn-lint checks the transformed template skips, each for a reason that is SAM's, not ours.
_IGNORED_ON_TRANSFORMED = {
    # SAM's own usage plan resources name a dependency twice (Ref and DependsOn): harmless.
    "W3005",
}


class _NoManagedPolicies:
    """The template names no AWS managed policy by name, so the translator needs no IAM lookup."""

    def load(self) -> dict[str, str]:
        return {}


def transformed_template(root: Path, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """template.yaml as CloudFormation sees it after the SAM transform (local code paths
    replaced by placeholders, as the local stack deploys it)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    from picflow_cli.local.stack import _placeholder_code, load_template

    sam = load_template(root / "template.yaml")
    _placeholder_code(sam, root)
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    policies = _NoManagedPolicies()
    cfn: dict[str, Any] = translator.translate(
        sam, parameter_values=dict(parameters or {}), get_managed_policy_map=policies.load
    )
    return cfn


def _cfn_lint(path: Path, ignore: set[str]) -> list[str]:
    from cfnlint.api import lint_file

    lines = []
    for match in lint_file(path):
        if match.rule.id in ignore:
            continue
        lines.append(f"{match.rule.id} {match.message} ({match.filename}:{match.linenumber})")
    return lines


def template_errors(root: Path) -> list[str]:
    """cfn-lint on template.yaml and on its transformed form; every error and warning counts."""
    out = [f"template.yaml: {line}" for line in _cfn_lint(root / "template.yaml", set())]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "transformed.json"
        path.write_text(json.dumps(transformed_template(root), indent=1))
        out += [f"template.yaml (transformed): {line}" for line in _cfn_lint(path, _IGNORED_ON_TRANSFORMED)]
    return out


def problems(root: Path) -> dict[str, list[str]]:
    """Each judge's complaints (an empty list: it found nothing)."""
    from picflow_cli.validators import asl_errors, openapi_errors

    judges: dict[str, Callable[[Path], list[str]]] = {
        "cfn-lint (template and SAM-transformed template)": template_errors,
        "asl-validator (statemachine/*.asl.json)": asl_errors,
        "redocly lint (docs/openapi.json)": openapi_errors,
    }
    return {name: judge(root) for name, judge in judges.items()}


def summary(cfn: Mapping[str, Any]) -> list[str]:
    """What a deploy would create, by resource type, and the parameters it takes."""
    counts = Counter(str(res["Type"]) for res in cfn["Resources"].values())
    lines = [f"  {n:3d} × {kind}" for kind, n in sorted(counts.items())]
    lines.append(f"  {sum(counts.values())} resources in all")
    return lines


def validate(root: Path, out: TextIO) -> int:
    """Print each judge's verdict; non-zero when any of them found something."""
    failed = 0
    for judge, lines in problems(root).items():
        print(f"{judge}: {'ok' if not lines else f'{len(lines)} problem(s)'}", file=out)
        for line in lines:
            print(f"  {line}", file=out)
        failed += len(lines)
    return 1 if failed else 0
