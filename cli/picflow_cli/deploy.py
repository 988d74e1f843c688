"""``picflow deploy``: ``sam build`` + ``sam deploy`` with the template's needs, then what to set.

The SAM CLI is not a dependency (it pins its own boto3): it is found on PATH or the user is
told how to install it in a venv of its own.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from picflow_cli.errors import ConfigError, UsageError

__all__ = ["CAPABILITIES", "deploy", "deploy_command", "find_sam", "secret_template"]

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


def _sam_env() -> dict[str, str]:
    """``sam build`` runs the python3.12 it finds on PATH: when there is none, lend it this one."""
    env = dict(os.environ)
    if shutil.which("python3.12") is None and sys.version_info[:2] == (3, 12):
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


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


def deploy(
    *,
    stack_name: str,
    region: str | None,
    guided: bool,
    parameters: Sequence[str],
    out: TextIO,
) -> int:
    from picflow_cli.local.stack import repo_root

    root = repo_root()
    sam = find_sam(root)
    if sam is None:
        raise ConfigError(SAM_MISSING)
    overrides = _overrides(parameters, template_parameters(root / "template.yaml"))
    build = [sam, "build", "--template-file", str(root / "template.yaml")]
    built_template = root / ".aws-sam" / "build" / "template.yaml"
    command = deploy_command(
        stack_name=stack_name, region=region, guided=guided, overrides=overrides, template=built_template
    )
    command[0] = sam
    for step in (build, command):
        print(f"picflow deploy: {shlex.join(['sam', *step[1:]])}", file=out, flush=True)
        code = subprocess.run(step, cwd=root, env=_sam_env(), check=False).returncode  # noqa: S603
        if code != 0:
            raise ConfigError(f"`sam {step[1]}` failed (exit {code}); its output above says why")

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
