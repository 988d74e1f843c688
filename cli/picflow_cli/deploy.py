"""``picflow deploy``: ``sam build`` + ``sam deploy`` with the template's needs, then what to set.

The SAM CLI is not a dependency (it pins its own boto3): it is found on PATH or the user is
told how to install it in a venv of its own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from picflow_cli.errors import ConfigError, UsageError

__all__ = [
    "CAPABILITIES",
    "bytecode_command",
    "deploy",
    "deploy_command",
    "find_sam",
    "parameters_needed",
    "python312",
    "secret_template",
]

CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND")
SAM_VENV = ".venv-sam"  # where `make setup` installs the SAM CLI
SAM_MISSING = (
    "`sam` is not on PATH nor in .venv-sam/: install the AWS SAM CLI in a venv of its own "
    "(`make setup` does, or python3 -m venv ~/.venvs/sam && ~/.venvs/sam/bin/pip install aws-sam-cli, "
    "then put its bin on PATH)"
)


def find_sam(root: Path) -> str | None:
    """``sam`` on PATH, else the one ``make setup`` put in the repository's .venv-sam."""
    found = shutil.which("sam")
    if found is not None:
        return found
    local = root / SAM_VENV / "bin" / "sam"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def _runs(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", ""], capture_output=True, check=False).returncode == 0  # noqa: S603
    except OSError:
        return False


def python312() -> str | None:
    """A python3.12 that really runs: PATH's, unless it is a pyenv shim for a version not selected
    (it exists and fails), else this interpreter when it is 3.12, else pyenv's newest 3.12."""
    found = shutil.which("python3.12")
    if found is not None and _runs(found):
        return found
    if sys.version_info[:2] == (3, 12):
        return sys.executable
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    versions = sorted(
        Path(pyenv_root).glob("versions/3.12.*/bin/python3.12"),
        key=lambda p: [int(n) if n.isdigit() else 0 for n in p.parent.parent.name.split(".")],
    )
    return str(versions[-1]) if versions and _runs(str(versions[-1])) else None


def _sam_env() -> dict[str, str]:
    """``sam build`` runs the first python3.12 on PATH (the template's runtime): put one that
    really runs first."""
    python = python312()
    if python is None:
        raise ConfigError(
            "`sam build` needs python3.12 (the Lambda runtime) and none runs here: "
            "install it, e.g. `pyenv install 3.12`"
        )
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(python).parent), env.get("PATH", "")])
    return env


def bytecode_command(build_dir: Path) -> list[str]:
    """Compile what ``sam build`` left (the layer's packages, each function's code) with the
    runtime's Python.

    SAM's Python builder unpacks wheels and copies sources without bytecode, and Lambda cannot
    write ``__pycache__`` under /opt or /var/task: so every cold start would compile every module
    it imports (the API's imports: ~770-820 ms of CPU from source, ~270 ms from bytecode; measured
    with bench/coldstart.py's layer site, docs/performance.md section 2). ``unchecked-hash``
    (PEP 552): the bytecode is used without comparing it with its source's mtime, which SAM's zip
    does not keep (every entry is stamped 1980-01-01, ZipInfo's default); a published layer's
    sources never change. ``-s``: the recorded file names are relative to the build, so the same
    code compiled in another checkout is the same bytes (SAM names each upload by its content's
    checksum: a new path would make a new layer version and update every function)."""
    python = python312() or "python3.12"
    options = ["-q", "-j", "0", "--invalidation-mode", "unchecked-hash", "-s", str(build_dir)]
    return [python, "-m", "compileall", *options, str(build_dir)]


# compileall's exit status when some file did not compile (a test or template shipped in a wheel
# with a .py name): Lambda could not import it either, so the rest is compiled and shipped.
SOME_FILES_DID_NOT_COMPILE = 1


def template_parameters(template: Path) -> list[str]:
    from picflow_cli.local.stack import load_template

    return list(load_template(template).get("Parameters", {}))


def secret_template() -> dict[str, str]:
    """The provider secret's keys (the local stack fills the same keys with the mock's values)."""
    from picflow_cli.local.stack import LOCAL_CREDENTIALS

    return {key: "..." for key in LOCAL_CREDENTIALS}


def deploy_command(
    *,
    stack_name: str,
    region: str | None,
    guided: bool,
    overrides: Mapping[str, str],
    template: Path,
) -> list[str]:
    command = ["sam", "deploy", "--template-file", str(template), "--stack-name", stack_name]
    command += ["--capabilities", *CAPABILITIES]
    if region:
        command += ["--region", region]
    if overrides:
        command += ["--parameter-overrides", *(f"{k}={v}" for k, v in overrides.items())]
    if guided:
        command.append("--guided")
    else:
        # Without the guide, SAM needs a bucket for the artifacts: let it manage one.
        command += ["--resolve-s3", "--no-fail-on-empty-changeset"]
    return command


def _overrides(pairs: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--parameter {pair!r}: expected Name=Value")
        if name not in known:
            raise UsageError(f"--parameter {name}: the template has no such parameter ({', '.join(known)})")
        out[name] = value
    return out


def _outputs(sam: str, stack_name: str, region: str | None, root: Path) -> dict[str, str]:
    command = [sam, "list", "stack-outputs", "--stack-name", stack_name, "--output", "json"]
    if region:
        command += ["--region", region]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        return {}
    try:
        rows = json.loads(done.stdout)
    except ValueError:
        return {}
    return {
        str(r["OutputKey"]): str(r["OutputValue"]) for r in rows if "OutputKey" in r and "OutputValue" in r
    }


# CloudFormation's own rule for stack names. No resource name is built from it (template.yaml
# names buckets and state machines after the stack id), so any valid name deploys.
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")

Runner = Callable[[Sequence[str], Path, Mapping[str, str]], int]


def _run(command: Sequence[str], cwd: Path, env: Mapping[str, str]) -> int:
    return subprocess.run(list(command), cwd=cwd, env=dict(env), check=False).returncode  # noqa: S603


def parameters_needed(template: Path, overrides: Mapping[str, str]) -> list[tuple[str, str, bool]]:
    """(name, value or default, whether the deploy must be given it): a parameter without a
    default, or whose default points at an ``.invalid`` host (RFC 2606: no usable default)."""
    from picflow_cli.local.stack import load_template

    rows = []
    for name, spec in load_template(template).get("Parameters", {}).items():
        default = spec.get("Default")
        value = overrides.get(name, default)
        missing = value is None or ".invalid" in str(value)
        rows.append((name, "" if value is None else str(value), missing))
    return rows


def _dry_run(
    root: Path, stack_name: str, overrides: Mapping[str, str], command: Sequence[str], out: TextIO
) -> int:
    from picflow_cli.validate import summary, transformed_template, validate

    print("picflow deploy --dry-run: validating (no AWS credentials needed)", file=out, flush=True)
    if validate(root, out) != 0:
        raise ConfigError("the template, a state machine or the API document has problems (listed above)")
    cfn = transformed_template(root, overrides)
    print(f"\nstack {stack_name} would create:", file=out)
    for line in summary(cfn):
        print(line, file=out)
    print("\nparameters (NAME = value; * = must be given, with --parameter NAME=VALUE):", file=out)
    for name, value, missing in parameters_needed(root / "template.yaml", overrides):
        print(f"  {'*' if missing else ' '} {name} = {value}", file=out)
    print(f"\nit would run: {shlex.join(['sam', *command[1:]])}", file=out)
    return 0


def deploy(
    *,
    stack_name: str,
    region: str | None,
    guided: bool,
    parameters: Sequence[str],
    out: TextIO,
    dry_run: bool = False,
    run: Runner = _run,
) -> int:
    """``sam build``, its output compiled to bytecode (:func:`bytecode_command`), then ``sam
    deploy``; with ``dry_run``, the build and compile then every validator, what the stack would
    hold and the parameters it needs, and no deploy."""
    from picflow_cli.local.stack import repo_root

    if not STACK_NAME.fullmatch(stack_name):
        raise UsageError(
            f"--stack-name {stack_name!r}: CloudFormation wants a letter, then letters, digits and "
            "hyphens, at most 128 characters"
        )
    root = repo_root()
    sam = find_sam(root)
    if sam is None:
        raise ConfigError(SAM_MISSING)
    overrides = _overrides(parameters, template_parameters(root / "template.yaml"))
    build = [sam, "build", "--template-file", str(root / "template.yaml")]
    built = root / ".aws-sam" / "build"
    built_template = built / "template.yaml"
    command = deploy_command(
        stack_name=stack_name, region=region, guided=guided, overrides=overrides, template=built_template
    )
    command[0] = sam
    env = _sam_env()
    steps = [("sam build", build), ("compileall", bytecode_command(built))]
    if not dry_run:
        steps.append(("sam deploy", command))
    for name, step in steps:
        shown = ["sam", *step[1:]] if name.startswith("sam") else ["python3.12", *step[1:]]
        print(f"picflow deploy: {shlex.join(shown)}", file=out, flush=True)
        code = run(step, root, env)
        if name == "compileall" and code == SOME_FILES_DID_NOT_COMPILE:
            print(
                "picflow deploy: some files did not compile (listed above); the rest ships as bytecode",
                file=out,
                flush=True,
            )
        elif code != 0:
            raise ConfigError(f"`{name}` failed (exit {code}); its output above says why")
    if dry_run:
        return _dry_run(root, stack_name, overrides, command, out)

    outputs = _outputs(sam, stack_name, region, root)
    region_flag = f" --region {region}" if region else ""
    secret_arn = outputs.get("ProviderSecretArn", "<ProviderSecretArn output>")
    key_id = outputs.get("ApiKeyId", "<ApiKeyId output>")
    api_url = outputs.get("ApiUrl", "<ApiUrl output>")
    secret = json.dumps(secret_template())
    print(
        "\npicflow deploy: done. Now set the provider credentials (the secret holds one JSON object):",
        file=out,
    )
    print(
        f"  aws secretsmanager put-secret-value{region_flag} --secret-id {secret_arn} "
        f"--secret-string {shlex.quote(secret)}",
        file=out,
    )
    print(
        "  (notify_signing_key signs completion notices: `aws secretsmanager get-secret-value` shows the "
        "generated one; keep it or set yours)",
        file=out,
    )
    print("Fetch the API key and point the CLI at the deployment:", file=out)
    print(
        f"  export PICFLOW_API_KEY=$(aws apigateway get-api-key{region_flag} --api-key {key_id} "
        "--include-value --query value --output text)",
        file=out,
    )
    print(f"  export PICFLOW_API_URL={api_url}", file=out)
    return 0
