"""picflow_cli.validators: asl-validator and redocly, run on the real files and on broken copies.

These need the npm tools ``make setup`` installs (node_modules/); without them they fail, saying
so, rather than skip: CI runs ``make setup`` first. The tools run as subprocesses (pytest-socket
guards this process only) and never reach the network (redocly's telemetry and update check are
off).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from picflow_cli.errors import ConfigError
from picflow_cli.validators import asl_errors, openapi_errors, openapi_problems, substitutions

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _tools_installed() -> None:
    for tool in ("asl-validator", "redocly"):
        assert (ROOT / "node_modules" / ".bin" / tool).is_file(), f"{tool} missing: run `make setup`"


def _copy(tmp_path: Path, *paths: str) -> Path:
    """A project root in ``tmp_path`` with copies of ``paths``, using the real node_modules."""
    for rel in paths:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    return tmp_path


_DELETE = object()


def _edit_json(path: Path, pointer: str, value: object) -> None:
    """Set (or, with ``_DELETE``, remove) the value at ``pointer`` ("a/b/c") in a JSON file."""
    doc = json.loads(path.read_text())
    *parents, last = pointer.split("/")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    path.write_text(json.dumps(doc, indent=2))


# --- asl-validator -------------------------------------------------------------------------


def test_asl_errors_on_the_real_state_machines_is_empty() -> None:
    assert asl_errors(ROOT) == []


def test_substitutions_give_each_placeholder_a_value_of_its_kind() -> None:
    values = substitutions(ROOT)

    job, batch = values["statemachine/job.asl.json"], values["statemachine/batch.asl.json"]
    assert job["ValidateFunctionArn"].startswith("arn:aws:lambda:us-east-1:123456789012:function:")
    assert batch["JobStateMachineArn"].startswith("arn:aws:states:us-east-1:123456789012:stateMachine:")
    assert not batch["OutputBucket"].startswith("arn:")  # Ref of a bucket: its name
    assert values["statemachine/pipeline.asl.json"] == {"JobStateMachineArn": batch["JobStateMachineArn"]}


def test_asl_errors_names_the_file_with_a_duplicate_state_name(tmp_path: Path) -> None:
    # GIVEN a copy of the batch machine whose URL map's job state has the plain map's name again
    root = _copy(tmp_path, "template.yaml", *(f"statemachine/{n}.asl.json" for n in ("job", "batch")))
    path = root / "statemachine/batch.asl.json"
    doc = json.loads(path.read_text())
    processor = doc["States"]["UrlItems"]["ItemProcessor"]
    [fetch, job] = processor["States"]
    plain = next(iter(doc["States"]["Items"]["ItemProcessor"]["States"]))
    processor["States"] = {
        fetch: {**processor["States"][fetch], "Next": plain},
        plain: processor["States"][job],
    }
    path.write_text(json.dumps(doc))

    errors = asl_errors(root)

    assert errors, "a duplicate state name passed"
    assert all(e.startswith("statemachine/batch.asl.json: ") for e in errors)
    assert any("DUPLICATE_STATE_NAMES" in e and plain in e for e in errors)


def test_asl_errors_names_the_file_with_a_next_pointing_nowhere(tmp_path: Path) -> None:
    root = _copy(tmp_path, "template.yaml", "statemachine/job.asl.json")
    _edit_json(root / "statemachine/job.asl.json", "States/Validate/Next", "Nowhere")

    errors = asl_errors(root)

    assert errors
    assert all(e.startswith("statemachine/job.asl.json: ") for e in errors)
    assert any("Nowhere" in e for e in errors)


def test_asl_errors_judges_the_substituted_resource(tmp_path: Path) -> None:
    # GIVEN a function's ARN mapped to the function's name (a Ref where a GetAtt .Arn belongs):
    # with the placeholder left in, the validator would accept it
    root = _copy(tmp_path, "template.yaml", "statemachine/job.asl.json")
    template = root / "template.yaml"
    template.write_text(
        template.read_text().replace(
            "NotifyFunctionArn: !GetAtt NotifyFunction.Arn", "NotifyFunctionArn: !Ref NotifyFunction"
        )
    )

    errors = asl_errors(root)

    assert any(e.startswith("statemachine/job.asl.json: ") and "Resource" in e for e in errors)


def test_asl_errors_reports_a_placeholder_the_template_does_not_map(tmp_path: Path) -> None:
    root = _copy(tmp_path, "template.yaml", "statemachine/pipeline.asl.json")
    _edit_json(root / "statemachine/pipeline.asl.json", "States/Cutout/Parameters/StateMachineArn", "${Nope}")

    errors = asl_errors(root)

    assert (
        "statemachine/pipeline.asl.json: ${Nope} has no DefinitionSubstitutions entry in template.yaml"
        in (errors)
    )


# --- redocly -------------------------------------------------------------------------------


def test_openapi_errors_on_the_real_document_is_empty() -> None:
    assert openapi_errors(ROOT) == []


def test_openapi_errors_on_nullable_without_type_names_file_line_and_rule(tmp_path: Path) -> None:
    root = _copy(tmp_path, "docs/openapi.json", "redocly.yaml")
    _edit_json(root / "docs/openapi.json", "components/schemas/JobStatus", {"nullable": True})

    errors = openapi_errors(root)

    assert len(errors) == 1
    assert errors[0].startswith("docs/openapi.json:")
    assert "[nullable-type-sibling]" in errors[0]


def test_openapi_problems_keeps_warnings_apart_from_errors(tmp_path: Path) -> None:
    root = _copy(tmp_path, "docs/openapi.json", "redocly.yaml")
    _edit_json(root / "docs/openapi.json", "info/license", _DELETE)

    problems = openapi_problems(root)

    assert problems.errors == []
    assert any("[info-license]" in w for w in problems.warnings)


def test_validators_without_the_npm_tools_say_to_run_make_setup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="make setup"):
        asl_errors(tmp_path)
    with pytest.raises(ConfigError, match="make setup"):
        openapi_errors(tmp_path)


def test_asl_errors_reports_a_substitution_naming_no_resource(tmp_path: Path) -> None:
    root = _copy(tmp_path, "template.yaml", "statemachine/pipeline.asl.json")
    template = root / "template.yaml"
    template.write_text(
        template.read_text().replace(
            "JobStateMachineArn: !Ref JobStateMachine", "JobStateMachineArn: !Ref NoSuchMachine", 1
        )
    )

    errors = asl_errors(root)

    assert any(e.startswith("template.yaml: ") and "NoSuchMachine" in e for e in errors)
