"""The local stack: template.yaml deployed as written into moto, running the real handlers.

One source of truth: the SAM template is transformed locally with aws-sam-translator and
created by moto's CloudFormation, so a change to the template shows up here. The gaps
moto leaves (shared/offline-aws.md) are filled after ``create_stack``, each in one place:

1. ``DefinitionSubstitutions`` are ignored → rewritten as ``Fn::Sub`` with the same map;
2. bucket ``NotificationConfiguration`` is ignored → applied with the S3 API;
3. function ``Layers`` come back empty → the layer's code is on this process's path;
4. CloudFormation's state machines land in moto's non-executing backend → created again,
   same name and definition, in the executing one;
5. Lambda needs Docker → :mod:`picflow_cli.local.runtime` runs handlers in-process;
6. API Gateway does not run proxy integrations → :mod:`picflow_cli.local.frontdoor`
   (the RestApi's deployment, stage, usage plan and key are dropped: moto cannot build them);
7. Secrets Manager is not in moto's CloudFormation → the secrets are created here;
8. S3 notifies before a PUT's metadata is stored → events are held until the PUT is done;
9. the ``states:startExecution`` integration mixes up boto3's and ASL's key casing →
   translated both ways;
10. bucket ``VersioningConfiguration`` is ignored → applied with the S3 API;
11. a Distributed Map never fails past its ToleratedFailurePercentage/Count → enforced when the
    map run ends (``runtime.enforce_tolerated_failures``). Also known, not needed: its
    ResultWriter writes a manifest with no result files (the batch report reads the job records);
12. the interpreter is more lenient than AWS at run time (``States.ALL`` catches
    ``States.Runtime``, a Choice on a missing path takes ``Default``, no history limit) →
    :mod:`picflow_cli.local.sfn_rules` makes it fail where AWS fails;
13. the interpreter parses the definition at every execution start (~60 ms of CPU) →
    :mod:`picflow_cli.local.sfn_cache` parses each definition once;
14. the server looks up the service of every request by listing moto's package and matching
    every URL pattern, under one lock → :mod:`picflow_cli.local.routing` remembers it per host;
15. moto writes each DynamoDB attribute value by visiting the ten members of the union →
    :mod:`picflow_cli.local.ddb_wire` writes it directly (same bytes); the interpreter parses each
    JSONPath at each evaluation (``sfn_cache``) and builds a boto3 client per call (``iam``) →
    both kept;
16. moto's server (werkzeug's development server) closes the connection after every answer,
    so each AWS call paid a TCP connect and a server thread → :mod:`picflow_cli.local.server`
    serves moto's own app with keep-alive connections;
17. moto asks its attribute picker for every member of every structure it answers (a history
    event has ~60) → :mod:`picflow_cli.local.json_wire` writes plain dicts directly (same bytes);
18. decoding the template and the SAM transform were ~1.2 s of each start (mostly importing
    cfn-lint and aws-sam-translator) → :mod:`picflow_cli.local.template_cache` keeps both answers
    on disk by the content they were made from; moto validates each definition by parsing it →
    the parse goes into ``sfn_cache``, so it is the one the executions run;
19. with waits scaled to 0 a Wait/Task loop (polling, a slot, a twin) spins as fast as the stack
    answers, and a ``startExecution.sync`` parent reads its child every 0.5 s →
    :mod:`picflow_cli.local.waits`: a floor (``wait_floor``) under each Wait after an execution's
    first, and the parent woken by the child's end.

What the stack enforces and what it does not: ``docs/local-stack.md``.

Local code paths (``CodeUri``, ``ContentUri``, ``DefinitionUri``) are swapped for
placeholders before the transform and remembered, since nothing here uploads artifacts.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from picflow.core.catalogue import SPECS

from picflow_cli.local import (
    ddb_wire,
    iam,
    json_wire,
    routing,
    sfn_cache,
    sfn_rules,
    template_cache,
    waits,
)
from picflow_cli.local.runtime import (
    FunctionSpec,
    LambdaRuntime,
    defer_s3_notifications,
    enforce_tolerated_failures,
    fix_sfn_service_integration,
    install,
    start_forkserver,
)

__all__ = ["LOCAL_CREDENTIALS", "LocalStack", "StackInfo", "load_template", "repo_root"]

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARTIFACT_BUCKET = "picflow-local-artifacts"
# The mock upstream's default accounts (the documents' own example values).
LOCAL_CREDENTIALS = {
    "taskpic_token": "sk-xxxx",
    "tencent_secret_id": "AKIDMOCKUPSTREAM",
    "tencent_secret_key": "mock-upstream-secret-key",
    "hdredraw_user_key": "test-key",
    "notify_signing_key": "local-notify-signing-key",
}


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "template.yaml").is_file():
            return parent
    raise FileNotFoundError("template.yaml not found above " + str(here))


def load_template(path: Path) -> dict[str, Any]:
    """The template as plain JSON-like data (!Ref and friends as their long forms)."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if template is None:
        raise ValueError(f"{path}: {matches}")
    plain: dict[str, Any] = json.loads(json.dumps(template, default=str))
    return plain


@dataclass
class StackInfo:
    """What a client of the local stack needs to know."""

    moto_url: str
    upstream_url: str
    api_url: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # logical id -> physical id

    @property
    def input_bucket(self) -> str:
        return self.resources["InputBucket"]

    @property
    def output_bucket(self) -> str:
        return self.resources["OutputBucket"]

    @property
    def job_state_machine_arn(self) -> str:
        return self.resources["JobStateMachine"]

    @property
    def pipeline_state_machine_arn(self) -> str:
        return self.resources["PipelineStateMachine"]

    @property
    def batch_state_machine_arn(self) -> str:
        return self.resources["BatchStateMachine"]


def _placeholder_code(template: dict[str, Any], root: Path) -> dict[str, FunctionSpec]:
    """Swap local paths for placeholders; return the functions' local code by logical id."""
    specs: dict[str, FunctionSpec] = {}
    glob = template.get("Globals", {}).get("Function", {})
    for logical_id, res in template["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::Serverless::Function":
            code_dir = root / str(props.pop("CodeUri"))
            props["InlineCode"] = f"# runs locally from {code_dir.relative_to(root)}"
            specs[logical_id] = FunctionSpec(
                name=logical_id,  # replaced by the deployed name after create_stack
                code_dir=code_dir,
                handler=str(props["Handler"]),
                memory_mb=int(props.get("MemorySize", glob.get("MemorySize", 128))),
                timeout_s=int(props.get("Timeout", glob.get("Timeout", 3))),
            )
        elif res["Type"] == "AWS::Serverless::LayerVersion":
            props["ContentUri"] = {"Bucket": ARTIFACT_BUCKET, "Key": f"{logical_id}.zip"}
        elif res["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            props["Definition"] = json.loads((root / str(props.pop("DefinitionUri"))).read_text())
    return specs


def _join_substituted(text: str, subs: Mapping[str, Any]) -> Any:
    """``${Name}`` placeholders replaced by their values, as ``Fn::Join`` pieces.

    Not ``Fn::Sub``: moto's implementation rewrites ``$$`` (JSONPath's context object) too.
    """
    pieces: list[Any] = []
    pos = 0
    for match in re.finditer(r"\$\{([A-Za-z0-9_]+)\}", text):
        if match.group(1) not in subs:
            continue
        pieces += [text[pos : match.start()], subs[match.group(1)]]
        pos = match.end()
    pieces.append(text[pos:])
    return {"Fn::Join": ["", pieces]} if len(pieces) > 1 else text


def _substitutions_as_sub(resources: dict[str, Any]) -> None:
    """Gap 1: moto ignores DefinitionSubstitutions; resolve them with Fn::Join instead."""
    for res in resources.values():
        if res["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        props = res["Properties"]
        subs = props.pop("DefinitionSubstitutions", None)
        definition = props.pop("Definition", None)
        text = json.dumps(definition, indent=2) if definition is not None else props.get("DefinitionString")
        if isinstance(text, dict) and "Fn::Join" in text:
            sep, parts = text["Fn::Join"]
            text = sep.join(parts)
        props["DefinitionString"] = _join_substituted(str(text), subs or {})


def _without_refs(node: Any, dropped: set[str]) -> Any:
    """``node`` with each ``Ref`` to a dropped resource replaced by a placeholder (the local
    overrides set what the functions read from it: the API key id is the front door's)."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in dropped:
            return f"local-{node['Ref']}"
        return {k: _without_refs(v, dropped) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_refs(v, dropped) for v in node]
    return node


def _drop_api_gateway_plumbing(resources: dict[str, Any]) -> None:
    """Gap 6: keep each RestApi (its id names the callback URL) but not its deployment,
    stage, usage plan and keys, which moto cannot build from a SAM Body; the front door
    serves the routes instead (and holds the keys)."""
    dropped = {
        logical_id
        for logical_id, res in resources.items()
        if res["Type"].startswith("AWS::ApiGateway::") and res["Type"] != "AWS::ApiGateway::RestApi"
    }
    for logical_id in dropped:
        del resources[logical_id]
    for logical_id, res in list(resources.items()):
        resources[logical_id] = res = _without_refs(res, dropped)
        if res["Type"] == "AWS::ApiGateway::RestApi":
            # moto requires Name (SAM puts the title in the Body).
            res["Properties"].setdefault("Name", logical_id)
        depends = res.get("DependsOn")
        if isinstance(depends, list):
            res["DependsOn"] = [d for d in depends if d not in dropped]
        elif isinstance(depends, str) and depends in dropped:
            del res["DependsOn"]


class _PolicyLoader:
    """aws-sam-translator asks IAM for managed policy ARNs; moto's IAM knows them."""

    def __init__(self, iam: Any) -> None:
        self._iam = iam
        self._map: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        if self._map is None:
            self._map = {}
            for page in self._iam.get_paginator("list_policies").paginate(Scope="AWS"):
                self._map.update((p["PolicyName"], p["Arn"]) for p in page["Policies"])
        return self._map


def _layer_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("python/README", "picflow layer: the local stack imports it from the work tree")
    return buf.getvalue()


class LocalStack:
    """Starts moto (server mode, in this process), deploys the template, wires the gaps."""

    def __init__(
        self,
        upstream_url: str,
        *,
        stack_name: str = "picflow",
        moto_port: int = 0,
        api_port: int = 0,
        host: str = "127.0.0.1",
        parameters: Mapping[str, str] | None = None,
        template: Path | None = None,
        wait_floor: float = waits.WAIT_FLOOR,
    ) -> None:
        self.root = repo_root()
        self.wait_floor = wait_floor  # real seconds under each Wait after an execution's first
        self.template_path = template or self.root / "template.yaml"
        self.upstream_url = upstream_url.rstrip("/")
        self.stack_name = stack_name
        self.host = host
        self.moto_port = moto_port
        self.api_port = api_port
        self.parameters = {
            "TaskPicBaseUrl": self.upstream_url,
            "TencentEndpoint": self.upstream_url,
            "HdRedrawBaseUrl": self.upstream_url,
            "WaitScale": "0",
            **(parameters or {}),
        }
        self.runtime: LambdaRuntime | None = None
        self.programs: sfn_cache.ProgramCache | None = None  # parsed definitions (once deployed)
        self.info: StackInfo | None = None
        self._server: Any = None
        self._undo: list[Any] = []
        self._saved_env: dict[str, str | None] = {}
        self.frontdoor: Any = None
        self.secret_arns: dict[str, str] = {}
        self.iam = iam.Registry()  # who may call what (filled once deployed)
        self.timings: dict[str, float] = {}  # start()'s phases, wall seconds (demo's breakdown)
        self._clients: dict[tuple[str, str], Any] = {}  # (service, moto URL) -> boto3 client

    # --- lifecycle ----------------------------------------------------------------

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = str(value)

    def start(self) -> StackInfo:
        import time

        from picflow_cli.local.server import MotoServer

        began = time.perf_counter()
        if not os.environ.get("PICFLOW_LOCAL_VERBOSE"):
            # moto logs every failed state and task at ERROR: that is the jobs' business, not ours.
            logging.getLogger("moto").setLevel(logging.CRITICAL)
            # moto skips resource types this stack fills in itself, and powertools warns of
            # per-invocation dimensions piling up while metrics are not flushed (locally only).
            warnings.filterwarnings("ignore", "Tried to parse AWS", UserWarning)
            warnings.filterwarnings("ignore", "Dimension '.*' has already been added", UserWarning)
            logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
            # The server answers an app failure 500 (a retryable error to the SDKs) as werkzeug did.
            logging.getLogger("picflow_cli.local.server").setLevel(logging.CRITICAL)
        self._undo.append(routing.install())
        self._undo.append(json_wire.install())
        self._undo.append(ddb_wire.install())  # under json_wire: DynamoDB's values first
        self._server = MotoServer(self.host, self.moto_port)  # moto's app, keep-alive connections
        self._server.start()
        port = self._server.port  # the real port when 0 was asked for
        moto_url = f"http://{self.host}:{port}"
        # The Step Functions interpreter's own clients call localhost:$MOTO_PORT.
        self._set_env(
            {
                "MOTO_PORT": str(port),
                "AWS_ENDPOINT_URL": moto_url,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        import httpx

        httpx.post(
            f"{moto_url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}
        ).raise_for_status()
        self.info = StackInfo(moto_url=moto_url, upstream_url=self.upstream_url)
        # The Lambda fork server imports the layer while the template deploys.
        start_forkserver()
        self.timings["server"] = time.perf_counter() - began
        try:
            self._deploy()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.perf_counter() - began
        return self.info

    def stop(self) -> None:
        if self.frontdoor is not None:
            self.frontdoor.stop()
            self.frontdoor = None
        self._stop_executions()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._clients.clear()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        self._saved_env.clear()

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------

    def api_key_id(self, value: str) -> str | None:
        """The id of the enabled API key ``value`` in moto's API Gateway (where ``picflow tenants
        add`` puts a tenant's key while the stack runs), or None."""
        for page in self.client("apigateway").get_paginator("get_api_keys").paginate(includeValues=True):
            for key in page.get("items", []):
                if key.get("value") == value and key.get("enabled"):
                    return str(key["id"])
        return None

    def client(self, service: str) -> Any:
        """A client of the stack's moto server, one a service: building one loads its service model
        (~10-30 ms of CPU), which each wait, API key lookup and deploy step paid; calls on one
        client are thread-safe."""
        import boto3

        assert self.info is not None
        key = (service, self.info.moto_url)
        made = self._clients.get(key)
        if made is None:
            made = self._clients[key] = boto3.client(  # type: ignore[call-overload]
                service, endpoint_url=self.info.moto_url, region_name=REGION
            )
        return made

    def wait_for_execution(
        self, name: str, timeout: float = 60.0, *, cap: float | None = None
    ) -> dict[str, Any]:
        """The job execution ``name`` once it has ended (woken by each Lambda invocation)."""
        assert self.info is not None
        assert self.runtime is not None
        arn = self.info.job_state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return self.wait_for_arn(arn, timeout, cap=cap)

    def wait_for_arn(
        self, execution_arn: str, timeout: float = 60.0, *, cap: float | None = None
    ) -> dict[str, Any]:
        """The execution once it has ended; ``timeout`` and ``cap`` as :meth:`wait_until` reads them."""
        sfn = self.client("stepfunctions")
        last = {"status": "PENDING"}

        def ended() -> dict[str, Any] | None:
            nonlocal last
            try:
                last = sfn.describe_execution(executionArn=execution_arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                last = {"status": "PENDING"}
            return None if last["status"] in ("RUNNING", "PENDING") else last

        name = execution_arn.rsplit(":", 1)[-1]
        execution: dict[str, Any] = self.wait_until(
            ended,
            timeout,
            cap=cap,
            progress=lambda: last["status"],
            what=lambda: f"execution {name} still {last['status']}",
        )
        return execution

    def wait_until[T](
        self,
        condition: Callable[[], T | None],
        timeout: float = 15.0,
        *,
        cap: float | None = None,
        progress: Callable[[], object] | None = None,
        what: Callable[[], str] | None = None,
    ) -> T:
        """``condition()`` once it is truthy, re-checked after each Lambda invocation of the stack
        (and at least every 0.2 s, for Wait states): tests synchronise on this, never on sleeps.

        ``timeout`` is a no-progress limit, not a length (issue 15, finding 8): the wait gives up
        with one line (:class:`~picflow_cli.waiting.WaitTimeoutError`, a TimeoutError) only when the
        stack ran no Lambda invocation and ``progress()`` (if given) did not change for that long,
        or after ``cap`` seconds in all (default: ten times ``timeout``, at least 600 s).
        """
        from picflow_cli.waiting import Patience

        runtime = self.runtime
        assert runtime is not None
        patience = Patience(
            "not reached", stall=timeout, cap=cap if cap is not None else max(600.0, 10 * timeout)
        )
        while not (found := condition()):
            patience.see((len(runtime.invocations), progress() if progress is not None else None))
            if what is not None:
                patience.what = what()
            patience.check()
            with runtime.changed:
                runtime.changed.wait(min(patience.remaining(), 0.2))
        return found

    # --- deploy -------------------------------------------------------------------

    def _deploy(self) -> None:
        import time

        assert self.info is not None
        began = time.perf_counter()
        cache = template_cache.cache_dir(self.root)  # decode and transform: once per template text
        sam = template_cache.decoded(self.template_path, load_template, cache)
        specs = _placeholder_code(sam, self.root)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        for logical_id, res in sam["Resources"].items():
            if res["Type"] == "AWS::Serverless::LayerVersion":
                s3.put_object(Bucket=ARTIFACT_BUCKET, Key=f"{logical_id}.zip", Body=_layer_zip())
        sam, cfn_template = template_cache.transformed(
            sam, self.parameters, lambda: _PolicyLoader(self.client("iam")), cache
        )
        resources = cfn_template["Resources"]
        _substitutions_as_sub(resources)
        notifications = {
            logical_id: res["Properties"].pop("NotificationConfiguration")
            for logical_id, res in resources.items()
            if res["Type"] == "AWS::S3::Bucket" and "NotificationConfiguration" in res.get("Properties", {})
        }
        _drop_api_gateway_plumbing(resources)
        cfn_template.pop("Outputs", None)
        self.timings["template"] = time.perf_counter() - began  # decode + SAM transform
        cfn = self.client("cloudformation")
        cfn.create_stack(
            StackName=self.stack_name,
            TemplateBody=json.dumps(cfn_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = cfn.describe_stacks(StackName=self.stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise RuntimeError(f"local stack: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
        physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.describe_stack_resources(StackName=self.stack_name)["StackResources"]
            if r.get("PhysicalResourceId")
        }
        self.info.resources = physical
        self.timings["create_stack"] = time.perf_counter() - began - self.timings["template"]
        # Before the state machines are created: the parse that validates a definition is then the
        # one its executions run (sfn_cache), not one more.
        self.programs, undo_programs = sfn_cache.install()
        self._undo.append(undo_programs)
        self._recreate_state_machines(resources, physical)
        self._apply_notifications(notifications, physical)
        self._apply_versioning(resources, physical)
        functions = {
            physical[logical_id]: FunctionSpec(
                physical[logical_id], spec.code_dir, spec.handler, spec.memory_mb, spec.timeout_s
            )
            for logical_id, spec in specs.items()
        }
        self.runtime = LambdaRuntime(
            functions,
            base_environment={"AWS_ENDPOINT_URL": self.info.moto_url},
            credentials=self._credentials,
        )
        self._undo.append(self.runtime.stop)
        self._undo.append(install(self.runtime))
        self._undo.append(defer_s3_notifications())
        self._undo.append(fix_sfn_service_integration())
        self._undo.append(enforce_tolerated_failures())
        self._undo.append(sfn_rules.install())
        self._undo.append(waits.install(self.wait_floor))
        self._start_frontdoor(sam, physical)
        configurations = self._configurations(functions)
        self._apply_function_env(configurations, self._create_secrets(sam))
        self._build_iam(resources, configurations)
        self.runtime.prewarm()

    def _recreate_state_machines(self, resources: Mapping[str, Any], physical: Mapping[str, str]) -> None:
        """Gap 4: the definitions CloudFormation resolved, created in the executing backend."""
        from moto.stepfunctions.models import stepfunctions_backends

        legacy = stepfunctions_backends[ACCOUNT][REGION]
        sfn = self.client("stepfunctions")
        for logical_id, res in resources.items():
            if res["Type"] != "AWS::StepFunctions::StateMachine":
                continue
            machine = legacy.describe_state_machine(physical[logical_id])
            sfn.create_state_machine(
                name=machine.name, definition=machine.definition, roleArn=machine.roleArn, type="STANDARD"
            )

    def _apply_notifications(self, notifications: Mapping[str, Any], physical: Mapping[str, str]) -> None:
        """Gap 2: S3 → Lambda notifications, with the function references resolved."""
        s3 = self.client("s3")
        for bucket_id, config in notifications.items():
            lambdas = []
            for item in config.get("LambdaConfigurations", []):
                ref = item["Function"]
                logical = ref["Fn::GetAtt"][0] if isinstance(ref, dict) else ref
                arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{physical[logical]}"
                entry: dict[str, Any] = {"LambdaFunctionArn": arn, "Events": [item["Event"]]}
                if "Filter" in item:
                    entry["Filter"] = item["Filter"]
                lambdas.append(entry)
            s3.put_bucket_notification_configuration(
                Bucket=physical[bucket_id],
                NotificationConfiguration={"LambdaFunctionConfigurations": lambdas},
            )

    def _apply_versioning(self, resources: Mapping[str, Any], physical: Mapping[str, str]) -> None:
        """Gap 10: moto's CloudFormation ignores VersioningConfiguration; without it a re-upload
        of the same key would be the same object version (and so the same job) locally."""
        s3 = self.client("s3")
        for logical_id, res in resources.items():
            status = res.get("Properties", {}).get("VersioningConfiguration", {}).get("Status")
            if res["Type"] == "AWS::S3::Bucket" and status:
                s3.put_bucket_versioning(
                    Bucket=physical[logical_id], VersioningConfiguration={"Status": status}
                )

    def _start_frontdoor(self, sam: Mapping[str, Any], physical: Mapping[str, str]) -> None:
        from picflow_cli.local.frontdoor import (
            FrontDoor,
            gateway_templates,
            routes_from_template,
            usage_limits,
        )

        assert self.info is not None
        assert self.runtime is not None
        self.frontdoor = FrontDoor(
            self.runtime,
            routes_from_template(sam, physical),
            host=self.host,
            templates=gateway_templates(sam),
            limits=usage_limits(sam),
            lookup=self.api_key_id,
        )
        self.frontdoor.start(self.api_port)
        self.info.api_url = self.frontdoor.base_url

    def _credentials(self, function_name: str) -> dict[str, str]:
        """The credentials a function's execution environments get (as Lambda passes its role's):
        the key id names the function, so each call is checked against its role (iam.py)."""
        return {
            "AWS_ACCESS_KEY_ID": iam.Registry.function_key(function_name),
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
        }

    def _configurations(self, functions: Mapping[str, FunctionSpec]) -> dict[str, dict[str, Any]]:
        """Each function's deployed configuration, from one ListFunctions (not a
        GetFunctionConfiguration a function for its environment and again for its role)."""
        pages = self.client("lambda").get_paginator("list_functions").paginate()
        found = {
            c["FunctionName"]: c
            for page in pages
            for c in page["Functions"]
            if c["FunctionName"] in functions
        }
        missing = set(functions) - set(found)
        if missing:
            raise RuntimeError(f"local stack: functions not deployed: {sorted(missing)}")
        return found

    def _build_iam(
        self, resources: Mapping[str, Any], configurations: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """Each function's and state machine's role, its policies as deployed (the transformed
        template's, intrinsics resolved by moto's CloudFormation), then the request hook."""
        from moto.cloudformation.models import cloudformation_backends
        from moto.cloudformation.parsing import clean_json

        assert self.info is not None
        stacks = cloudformation_backends[ACCOUNT][REGION].stacks.values()
        resource_map = next(st for st in stacks if st.name == self.stack_name).resource_map
        from moto.iam.aws_managed_policies import aws_managed_policies_data

        managed = json.loads(aws_managed_policies_data)
        role_ids = {self.info.resources[k]: k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
        secret_refs = {json.dumps({"Ref": k}): json.dumps(arn) for k, arn in self.secret_arns.items()}

        own_policies = {
            self.info.resources[k].rsplit("/", 1)[-1]: k
            for k, r in resources.items()
            if r["Type"] == "AWS::IAM::ManagedPolicy" and k in self.info.resources
        }

        def resolved(document: Any) -> Mapping[str, Any]:
            text = json.dumps(document)
            for ref, arn in secret_refs.items():  # moto cannot resolve these (gap 7)
                text = text.replace(ref, arn)
            result: Mapping[str, Any] = clean_json(json.loads(text), resource_map)
            return result

        def documents(role_name: str) -> tuple[Mapping[str, Any], ...]:
            props = resources[role_ids[role_name]]["Properties"]
            docs = []
            for policy in props.get("Policies", []):
                docs.append(resolved(policy["PolicyDocument"]))
            for ref in props.get("ManagedPolicyArns", []):
                name = str(clean_json(ref, resource_map)).rsplit("/", 1)[-1]
                if name in own_policies:  # one of the template's AWS::IAM::ManagedPolicy
                    docs.append(resolved(resources[own_policies[name]]["Properties"]["PolicyDocument"]))
                else:  # AWS managed: moto ships their documents
                    docs.append(managed[name]["Document"])
            return tuple(docs)

        registry = iam.Registry()
        for name, configuration in configurations.items():
            role_arn = str(configuration["Role"])
            registry.principals[registry.function_key(name)] = iam.Principal(
                role_arn, name, documents(role_arn.rsplit("/", 1)[-1])
            )
        sfn = self.client("stepfunctions")
        for machine in sfn.list_state_machines()["stateMachines"]:
            role_arn = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["roleArn"]
            role_name = role_arn.rsplit("/", 1)[-1]
            if role_name in role_ids:
                registry.principals[registry.role_key(role_arn)] = iam.Principal(
                    role_arn, machine["name"], documents(role_name)
                )
        self.iam = registry
        self._undo.append(iam.install(registry))

    def _local_overrides(self) -> dict[str, str]:
        """What differs from the template here: addresses, and powertools' AWS-only features."""
        from picflow_cli.local.frontdoor import LOCAL_API_KEY_ID

        assert self.info is not None
        return {
            # The template's execute-api URL does not resolve here: callbacks come to the front door.
            "PICFLOW_CALLBACK_BASE_URL": self.info.api_url,
            "PICFLOW_URL_ALLOWLIST": ",".join(
                urlsplit(u).netloc for u in (self.info.upstream_url, self.info.moto_url, self.info.api_url)
            ),
            # Every provider's results come from the mock here: its address and nothing else on
            # loopback (the front door and moto are on the URL allow-list, never result hosts).
            "PICFLOW_RESULT_HOSTS": ",".join(
                f"{provider.value}={urlsplit(self.info.upstream_url).netloc}" for provider in SPECS
            ),
            # The front door's LOCAL_API_KEY is the template's own key here: the default tenant's.
            "PICFLOW_DEFAULT_TENANT_KEY": LOCAL_API_KEY_ID,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("PICFLOW_LOCAL_LOG_LEVEL", "WARNING"),
        }

    def _apply_function_env(
        self, configurations: Mapping[str, Mapping[str, Any]], secrets: Mapping[str, str]
    ) -> None:
        """Each function's deployed environment, with the local overrides and the secret ARNs,
        written back to its configuration: its execution environments are built from that.

        The union (checked for conflicts) also goes into this process's environment, for test
        and demo code that uses the layer directly (its table and bucket names); handlers never
        see it.
        """
        lam = self.client("lambda")
        merged: dict[str, str] = {}
        overrides = self._local_overrides()
        for name, configuration in configurations.items():
            env = {
                str(k): str(v) for k, v in configuration.get("Environment", {}).get("Variables", {}).items()
            }
            # moto's CloudFormation cannot resolve a !Ref to a secret (gap 7): the ARN goes in here.
            env |= secrets
            env |= overrides
            lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})
            for key, value in env.items():
                if key in merged and merged[key] != value:
                    raise RuntimeError(f"local stack: functions disagree on {key}")
                merged[key] = value
        self._set_env(merged)

    @contextmanager
    def function_environment(self, **values: str) -> Iterator[None]:
        """Every function's environment with ``values`` set, as ``UpdateFunctionConfiguration``
        would set them on AWS (new execution environments), restored on exit."""
        lam = self.client("lambda")
        assert self.runtime is not None
        saved = {
            name: lam.get_function_configuration(FunctionName=name)
            .get("Environment", {})
            .get("Variables", {})
            for name in self.runtime.functions
        }
        try:
            for name, env in saved.items():
                lam.update_function_configuration(
                    FunctionName=name, Environment={"Variables": {**env, **values}}
                )
            yield
        finally:
            for name, env in saved.items():
                lam.update_function_configuration(FunctionName=name, Environment={"Variables": env})

    def add_function(
        self,
        name: str,
        code_dir: Path,
        handler: str,
        *,
        policies: tuple[Mapping[str, Any], ...] = (),
        timeout_s: int = 3,
        memory_mb: int = 128,
        environment: Mapping[str, str] | None = None,
    ) -> str:
        """A function outside the template (tests feed the stack deliberately wrong handlers this
        way), with a role of its own holding ``policies``; returns its ARN."""
        assert self.runtime is not None
        trust = {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ]
        }
        role_arn: str = self.client("iam").create_role(
            RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]
        arn: str = self.client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler=handler,
            Code={"ZipFile": _layer_zip()},  # never run: the runtime runs code_dir
            Timeout=timeout_s,
            MemorySize=memory_mb,
            Environment={"Variables": {**self._local_overrides(), **(environment or {})}},
        )["FunctionArn"]
        self.runtime.add(FunctionSpec(name, code_dir, handler, memory_mb, timeout_s))
        self.iam.principals[self.iam.function_key(name)] = iam.Principal(role_arn, name, policies)
        return arn

    def _create_secrets(self, sam: Mapping[str, Any]) -> dict[str, str]:
        """Gap 7: moto's CloudFormation has no Secrets Manager; create the secrets here, filled
        with the mock's credentials; returns the variables that !Ref them with the ARN."""
        secret_ids = [k for k, r in sam["Resources"].items() if r["Type"] == "AWS::SecretsManager::Secret"]
        client = self.client("secretsmanager")
        arns = {
            logical_id: client.create_secret(
                Name=f"{self.stack_name}-{logical_id}", SecretString=json.dumps(LOCAL_CREDENTIALS)
            )["ARN"]
            for logical_id in secret_ids
        }
        self.secret_arns = arns
        env_blocks = [sam.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})]
        env_blocks += [
            r.get("Properties", {}).get("Environment", {}).get("Variables", {})
            for r in sam["Resources"].values()
            if r["Type"] == "AWS::Serverless::Function"
        ]
        return {
            key: arns[value["Ref"]]
            for block in env_blocks
            for key, value in block.items()
            if isinstance(value, dict) and value.get("Ref") in arns
        }

    def _stop_executions(self) -> None:
        """Executions left RUNNING keep going on daemon threads: stop them."""
        if self.info is None or self._server is None:
            return
        try:
            sfn = self.client("stepfunctions")
            for arn in (
                self.info.resources.get("BatchStateMachine"),
                self.info.resources.get("JobStateMachine"),
                self.info.resources.get("PipelineStateMachine"),
            ):
                if not arn:
                    continue
                for page in sfn.get_paginator("list_executions").paginate(
                    stateMachineArn=arn, statusFilter="RUNNING"
                ):
                    for execution in page["executions"]:
                        sfn.stop_execution(executionArn=execution["executionArn"], error="LocalStackStopped")
        except Exception:  # noqa: S110 - best effort on the way down
            pass


@contextmanager
def local_stack(upstream_url: str, **kwargs: Any) -> Iterator[LocalStack]:
    stack = LocalStack(upstream_url, **kwargs)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
