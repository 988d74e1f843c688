"""The layer's requirements: what `sam build` ships is what the tests run with."""

import tomllib
from importlib.metadata import requires, version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _layer_pins() -> dict[str, Requirement]:
    lines = (ROOT / "layers/picflow/requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name: r for r in reqs}


def test_layer_pins_every_requirement_exactly():
    for req in _layer_pins().values():
        assert str(req.specifier).startswith("=="), f"{req}: the layer ships exact versions"


def test_layer_and_project_pin_the_same_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    project_pins = {r.name: r for r in map(Requirement, project)}
    assert project_pins.keys() == _layer_pins().keys()
    for name, req in _layer_pins().items():
        assert project_pins[name].specifier == req.specifier, name
        assert project_pins[name].extras == req.extras, name


def test_layer_ships_one_release_of_the_aws_sdk():
    """boto3 and s3transfer accept the pinned botocore: no mixed SDK at run time."""
    pins = _layer_pins()
    assert {"boto3", "botocore", "s3transfer"} <= pins.keys()
    botocore = next(iter(pins["botocore"].specifier)).version
    s3transfer = next(iter(pins["s3transfer"].specifier)).version
    # Read from the installed boto3, which is the pinned one (the test above).
    assert version("boto3") == next(iter(pins["boto3"].specifier)).version
    deps = {r.name: r for r in map(Requirement, requires("boto3") or [])}
    assert {"botocore", "s3transfer"} <= deps.keys()
    for dep in deps.values():
        if dep.name == "botocore":
            assert dep.specifier.contains(botocore), f"boto3 needs {dep}, the layer ships {botocore}"
        if dep.name == "s3transfer":
            assert dep.specifier.contains(s3transfer), f"boto3 needs {dep}, the layer ships {s3transfer}"
