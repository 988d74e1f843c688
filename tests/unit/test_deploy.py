"""picflow deploy: a python3.12 that runs for `sam build`, a dry run that needs no AWS."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from picflow_cli import deploy as deploy_module
from picflow_cli.errors import ConfigError, UsageError


def _broken_shim(tmp_path: Path) -> Path:
    """What pyenv leaves on PATH for a version that is installed but not selected."""
    bin_dir = tmp_path / "shims"
    bin_dir.mkdir()
    shim = bin_dir / "python3.12"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_a_broken_python_shim_on_path_is_passed_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shims = _broken_shim(tmp_path)
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), os.environ["PATH"]]))
    assert shutil.which("python3.12") == str(shims / "python3.12")

    env = deploy_module._sam_env()

    found = shutil.which("python3.12", path=env["PATH"])
    assert found is not None
    assert found != str(shims / "python3.12")
    done = subprocess.run(
        [found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "(3, 12)"


class FakeSam:
    """Records the commands `deploy` runs instead of running them."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
        self.commands.append(list(command))
        return 0


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(deploy_module, "find_sam", lambda root: "/opt/sam/bin/sam")


def test_dry_run_builds_validates_and_lists_what_it_would_create_without_aws(no_aws: None) -> None:
    sam, out = FakeSam(), io.StringIO()

    code = deploy_module.deploy(
        stack_name="a-stack-name-much-longer-than-thirty-two-characters-to-be-sure",
        region="eu-west-1",
        guided=False,
        parameters=["HdRedrawBaseUrl=https://hd.example.com"],
        out=out,
        dry_run=True,
        run=sam,
    )

    text = out.getvalue()
    assert code == 0
    assert [c[1:3] for c in sam.commands] == [["build", "--template-file"], ["-m", "compileall"]], (
        "a dry run builds and compiles, and deploys nothing"
    )
    assert "cfn-lint (template and SAM-transformed template): ok" in text
    assert "AWS::Lambda::Function" in text
    assert "AWS::StepFunctions::StateMachine" in text
    assert "  HdRedrawBaseUrl = https://hd.example.com" in text
    assert "it would run: sam deploy" in text
    assert "--stack-name a-stack-name-much-longer" in text


def test_dry_run_marks_the_parameters_that_have_no_usable_default(
    no_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from picflow_cli import validate

    monkeypatch.setattr(validate, "problems", lambda root: {})  # judged in the test above
    out = io.StringIO()
    deploy_module.deploy(
        stack_name="picflow", region=None, guided=True, parameters=[], out=out, dry_run=True, run=FakeSam()
    )
    starred = [line.split()[1] for line in out.getvalue().splitlines() if line.startswith("  * ")]
    assert starred == ["HdRedrawBaseUrl"]  # its default is https://hdredraw.invalid


def test_dry_run_fails_on_a_validator_problem_before_listing_anything(
    no_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from picflow_cli import validate

    monkeypatch.setattr(validate, "problems", lambda root: {"asl-validator": ["job.asl.json: bad"]})
    out = io.StringIO()
    with pytest.raises(ConfigError, match="problems"):
        deploy_module.deploy(
            stack_name="picflow",
            region=None,
            guided=True,
            parameters=[],
            out=out,
            dry_run=True,
            run=FakeSam(),
        )
    assert "job.asl.json: bad" in out.getvalue()
    assert "would create" not in out.getvalue()


@pytest.mark.parametrize("name", ["1starts-with-a-digit", "has_underscore", "x" * 129, ""])
def test_a_stack_name_cloudformation_refuses_is_refused_before_anything_runs(no_aws: None, name: str) -> None:
    sam = FakeSam()
    with pytest.raises(UsageError, match="stack-name"):
        deploy_module.deploy(
            stack_name=name, region=None, guided=True, parameters=[], out=io.StringIO(), dry_run=True, run=sam
        )
    assert sam.commands == []


def test_deploy_runs_build_then_deploy(no_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy_module, "_outputs", lambda *a: {})
    sam = FakeSam()
    deploy_module.deploy(
        stack_name="picflow", region="eu-west-1", guided=False, parameters=[], out=io.StringIO(), run=sam
    )
    # The build's output is compiled to bytecode before anything is deployed
    assert [c[1] for c in sam.commands] == ["build", "-m", "deploy"]
    assert sam.commands[1][-1] == str(Path(deploy_module.__file__).parents[2] / ".aws-sam" / "build")
    assert sam.commands[2][sam.commands[2].index("--region") + 1] == "eu-west-1"


def test_the_built_code_ships_bytecode_lambda_uses_as_it_is(tmp_path: Path) -> None:
    # GIVEN what sam build leaves: a layer's package and a function's code, sources only
    built = tmp_path / ".aws-sam" / "build"
    package = built / "PicflowLayer" / "python" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("VALUE = 'compiled'\n")
    (built / "ApiFunction").mkdir()
    (built / "ApiFunction" / "app.py").write_text("from pkg.mod import VALUE\n")
    # WHEN the deploy's bytecode step runs
    subprocess.run(deploy_module.bytecode_command(built), check=True, capture_output=True)
    # THEN every module has its bytecode, hash-based and unchecked (PEP 552 flags: 0b01)
    sources = sorted(built.rglob("*.py"))
    compiled = sorted(built.rglob("__pycache__/*.cpython-312.pyc"))
    assert [p.name.split(".")[0] for p in compiled] == [p.stem for p in sources]
    assert {int.from_bytes(p.read_bytes()[4:8], "little") for p in compiled} == {0b01}
    # AND a read-only runtime (nothing written) runs that bytecode whatever its sources' mtime says:
    # a changed source is not even read (the published layer's sources never change)
    (package / "mod.py").write_text("VALUE = 'a source that was compiled again, longer'\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(built / "PicflowLayer" / "python")}
    python = deploy_module.python312()
    assert python is not None
    ran = subprocess.run(
        [python, "-c", "import app; print(app.VALUE)"],
        cwd=built / "ApiFunction",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == "compiled"


def test_the_same_code_compiles_to_the_same_bytes_wherever_it_is_built(tmp_path: Path) -> None:
    # SAM names each upload by its content's checksum: bytecode that recorded the checkout's path
    # would make a new layer version (and update every function) from every other checkout
    trees = [tmp_path / name / ".aws-sam" / "build" for name in ("checkout-a", "elsewhere-b")]
    for built in trees:
        (built / "PicflowLayer" / "python").mkdir(parents=True)
        (built / "PicflowLayer" / "python" / "mod.py").write_text("def f():\n    return 1\n")
        subprocess.run(deploy_module.bytecode_command(built), check=True, capture_output=True)
    a, b = (next(built.rglob("*.pyc")).read_bytes() for built in trees)
    assert a == b
    assert str(tmp_path).encode() not in a
