"""Cold start: import + initialise each handler in a fresh process, against the issue's baseline.

Baseline (issue 17): a process that imports boto3 and creates one S3 client
(``boto3.client("s3")``, no call). Goals: every entry point's init <= 1.25x it, and init + first
call <= 1.5x (the baseline + that function's first AWS call made by bare boto3 on the same moto).

Each measurement is a new interpreter started the way Lambda starts one as far as imports go:
``-S`` (no site-packages), and on ``sys.path`` only the function's code directory, the layer's
source and a "layer site" holding the distributions the layer installs (layers/picflow/
requirements.txt and their dependencies, symlinked from the venv) plus boto3, which the runtime
provides. So optional packages the dev venv happens to hold (requests, rich, moto...) are not
imported by accident, as they would not be in AWS. The environment is a Lambda's:
``LAMBDA_TASK_ROOT`` (so powertools' Tracer is enabled and patches, as with ``Tracing: Active``),
``AWS_LAMBDA_FUNCTION_NAME``, the template's ``POWERTOOLS_*``, dummy ``PICFLOW_*`` values, and
``AWS_ENDPOINT_URL`` naming a moto server the bench runs on loopback (the tables and bucket the
first calls read exist there).

The handler module is loaded from its file path (Lambda's bootstrap imports ``app`` from
/var/task) and the handler attribute is looked up; the time is the child's CPU time
(process_time) around that, so other work on the machine does not count (imports read .py/.pyc
files from the page cache: they are CPU-bound; moto's work is in the bench's process). Every entry
point is measured RUNS times, and each of its runs is paired with a baseline run right beside it
(the baseline process making that entry point's bare first call; which of the two goes first
alternates by round), so load drifts hit both. Each figure is the fastest of its runs, for the
handlers and the baseline alike: contention on a shared machine (caches, a sibling hyperthread)
only ever adds CPU time, so the minimum is the estimate of the cost itself (timeit's rule). An
entry point's ratios compare the fastest of its RUNS runs with the fastest of its own RUNS paired
baseline runs: the same number of draws on each side. (The fastest of more draws is lower under
load: a baseline taken as the fastest of many processes against a handler's 5 favours the
baseline. In one full run at load 12-22 the API read 1.52x against its own 5 pairs and 1.58x
against the fastest of all 95 GetItem baseline processes.)

The "+1st call" column adds, in the same process right after init, what the function's first
invocation does once and later ones do not, then its first AWS call: FIRST_CALL lists per function
the modules its step imports where used, the boto3 clients it creates (once per container), the
httpx client and TLS context, the params model it builds, Pillow's first open, and then the call
its step makes first, through the handler's own objects (every job step: a consistent GetItem of
the jobs table; the slot: the coordination table's; the S3 and URL ways in: a HeadObject; the API:
a POST /jobs its request model refuses, then GET /jobs/{id} of a job that does not exist, its
GetItem answering 404). The baseline's "+ call" column is the same process as the baseline plus
that same AWS call made by bare boto3 (BARE_CALL: a DynamoDB client and its GetItem, or the S3
client's HeadObject). Provider calls are not made. So nothing moved out of init into the first
invocation can hide: that column is the cold start a first request sees, as far as our code goes.

``--only operations,api`` (names of ``functions/`` directories) measures those functions alone, with
their baseline runs; the exit status then speaks for them only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 5
GOAL = 1.25
FIRST_GOAL = 1.5

CHILD = r"""
import sys, time
started = time.process_time()
s3 = None
if sys.argv[1] == "boto3":
    import boto3
    s3 = boto3.client("s3")
else:
    import importlib.util
    spec = importlib.util.spec_from_file_location("app", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    getattr(module, sys.argv[2])
elapsed = time.process_time() - started
print(" ".join(sorted(m for m in ("pydantic", "httpx", "PIL.Image", "aws_xray_sdk.core", "botocore.client")
                      if m in sys.modules)))
exec(compile(sys.argv[3], "first-call", "exec"), {"module": sys.modules.get("app"), "s3": s3})
print(elapsed * 1000, (time.process_time() - started) * 1000)
"""

# A 1x1 PNG: Validate and Collect open every image with Pillow (picflow.core.images).
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
_SVC = "from picflow.aws.services import services\nsvc = services()\n"
_IMAGE = f"""
import base64, io
from picflow.core import catalogue, images
images.inspect_image(io.BytesIO(base64.b64decode({PNG!r})), catalogue.get_operation("segmentation").input)
"""


def _api_event(method: str, path: str, resource: str, body: object = None) -> dict[str, object]:
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "pathParameters": {"job_id": path.rsplit("/", 1)[1]} if "{" in resource else None,
        "requestContext": {
            "stage": "Prod",
            "requestId": "bench",
            "resourcePath": resource,
            "httpMethod": method,
            "identity": {"apiKeyId": "bench-key"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


# The first AWS call of each function's first invocation, made through the handler's own objects
# (so the client or table it builds for it counts) and, for the baseline, the same call made by
# bare boto3 in the baseline process (its S3 client is ``s3``; another service needs its client).
# Every job step reads the job record first (a consistent GetItem of the jobs table); the slot
# step starts on the coordination table; the S3 and URL ways in start with a HeadObject.
_JOB_ID = "api-" + "0" * 32
_GET_JOB = "svc.store.get('bench-none')\n"
_BARE_GET_JOB = (
    "import boto3\nboto3.client('dynamodb').get_item(TableName='dummy-jobs_table',"
    " Key={'job_id': {'S': 'bench-none'}}, ConsistentRead=True)\n"
)
_GET_SLOT = "svc.coordination_table.get_item(Key={'name': 'bench-none'}, ConsistentRead=True)\n"
_BARE_GET_SLOT = (
    "import boto3\nboto3.client('dynamodb').get_item(TableName='dummy-semaphore_table',"
    " Key={'name': {'S': 'bench-none'}}, ConsistentRead=True)\n"
)
_HEAD = (
    "try:\n    S3.head_object(Bucket='dummy-input_bucket', Key='bench-none')\n"
    "except Exception as exc:\n    assert '404' in str(exc), exc\n"
)
_HANDLER_HEAD = "S3 = svc.s3\n" + _HEAD
_BARE_HEAD = "S3 = s3\n" + _HEAD
# By functions/<name>: what its first invocation does once (see the module docstring), then its first
# AWS call. Operations: a submit (a status check needs less: no S3).
FIRST_CALL: dict[str, str] = {
    "validate": _SVC
    + "svc.store; svc.s3; svc.cache; svc.durations; svc.semaphore\n"
    + "from picflow.core.catalogue import validate_params\nvalidate_params('segmentation', {})\n"
    + _IMAGE
    + _GET_JOB,
    # A submit sends the params Validate checked and handed on (CheckedParams: no params model).
    "operations": _SVC
    + "svc.store; svc.s3; svc.semaphore; svc.cache\n"
    + "from picflow.core.catalogue import CheckedParams, get_operation\n"
    + "from picflow.providers import taskpic\n"
    + "taskpic.TaskPicClient._param_values(get_operation('segmentation'),"
    + " CheckedParams('segmentation', {'output_type': 2, 'crop': 0, 'format': 'png'}))\n"
    # The secrets client load_credentials() reads the provider keys with (no GetSecretValue here).
    + "from picflow.providers import registry\nregistry._secrets()\n"
    + "svc.providers.downloads()\n"
    + _GET_JOB,
    "collect": _SVC
    + "svc.store; svc.s3; svc.cache; svc.durations; svc.semaphore; svc.providers.downloads()\n"
    + "import picflow.job.results\n"
    + _IMAGE
    + _GET_JOB,
    "slot": _SVC + "svc.semaphore\n" + _GET_SLOT,
    "finalize": _SVC + "svc.store\n" + _GET_JOB,
    "batch": _SVC + "svc.s3; svc.store\n" + _HANDLER_HEAD,
    "notify": _SVC + "svc.store; svc.events\nimport picflow.net.webhooks\n" + _GET_JOB,
    "s3_trigger": _SVC + "svc.s3; svc.store; svc.sfn\n" + _HANDLER_HEAD,
    "fetch": _SVC + "svc.s3; svc.store\nfrom picflow.net import urls\nurls.safe_client()\n" + _HANDLER_HEAD,
    "callback": _SVC + "svc.store; svc.sfn\nfrom picflow.providers import taskpic\n" + _GET_JOB,
    # Two requests through the resolver: a POST /jobs its request model refuses (422: routing and
    # validation, no AWS call), then GET /jobs/{id} of a job that does not exist (its GetItem: 404).
    "api": _SVC
    + "svc.s3; svc.sfn\n"
    + f"r = module.app.resolve({_api_event('POST', '/jobs', '/jobs', {'operation': 'cutout'})!r}, None)\n"
    + "assert r['statusCode'] == 422, r\n"
    + f"r = module.app.resolve({_api_event('GET', '/jobs/' + _JOB_ID, '/jobs/{job_id}')!r}, None)\n"
    + "assert r['statusCode'] == 404, r\n",
}
# The same first AWS call, made by bare boto3 in the baseline process.
BARE_CALL: dict[str, str] = {
    name: _BARE_GET_SLOT
    if name == "slot"
    else _BARE_HEAD
    if name in ("batch", "s3_trigger", "fetch")
    else _BARE_GET_JOB
    for name in FIRST_CALL
}


def start_moto() -> tuple[object, str]:
    """moto on loopback with the tables and bucket the first calls read (their names from lambda_env)."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    kw: dict[str, str] = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ddb = boto3.client("dynamodb", **kw)
    for table, key in (("dummy-jobs_table", "job_id"), ("dummy-semaphore_table", "name")):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    boto3.client("s3", **kw).create_bucket(Bucket="dummy-input_bucket")
    return server, url


def requirements() -> list[str]:
    lines = (ROOT / "layers" / "picflow" / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()] + ["boto3"]


def _name_and_extras(requirement: str) -> tuple[str, set[str]]:
    match = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", requirement)
    assert match is not None, requirement
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1), extras


def closure(roots: list[str]) -> set[str]:
    """Distribution names needed by ``roots`` (with their extras), following Requires-Dist."""
    seen: set[str] = set()
    todo = [_name_and_extras(r) for r in roots]
    while todo:
        name, extras = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            marker = marker.strip()
            if marker:
                wanted = any(f'extra == "{e}"' in marker for e in extras)
                if "extra ==" in marker and not wanted:
                    continue
                if "extra ==" not in marker and ("python_version <" in marker or "sys_platform" in marker):
                    continue
            todo.append(_name_and_extras(spec.strip()))
    return seen


def layer_site(dest: Path) -> list[str]:
    """Symlink the top-level packages of the layer's distributions into ``dest``."""
    names = closure(requirements())
    for name in sorted(names):
        dist = metadata.distribution(name)
        tops: set[str] = set()
        for file in dist.files or []:
            first = file.parts[0]
            if first.endswith((".dist-info", ".data")) or first in ("..", "bin") or first.startswith("__"):
                continue
            tops.add(first)
        for top in tops:
            source = Path(str(dist.locate_file(top)))
            target = dest / top
            if source.exists() and not target.exists():
                target.symlink_to(source)
    return sorted(names)


def lambda_env(code_dir: Path, handler: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "LAMBDA_TASK_ROOT": str(code_dir),
        "AWS_LAMBDA_FUNCTION_NAME": f"picflow-{code_dir.name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "_HANDLER": handler,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_SERVICE_NAME": "picflow",
        "POWERTOOLS_METRICS_NAMESPACE": "picflow",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    for name in (
        "JOBS_TABLE",
        "SEMAPHORE_TABLE",
        "INPUT_BUCKET",
        "OUTPUT_BUCKET",
        "PROVIDER_SECRET",
        "TASKPIC_BASE_URL",
        "TENCENT_ENDPOINT",
        "HDREDRAW_BASE_URL",
        "STATE_MACHINE_ARN",
        "CALLBACK_BASE_URL",
        "EVENT_BUS_NAME",
        "OPERATION_FUNCTIONS",
        "RESULT_CACHE_TABLE",
        "BATCH_STATE_MACHINE_ARN",
    ):
        env[f"PICFLOW_{name}"] = f"dummy-{name.lower()}"
    env |= {
        "PICFLOW_CONCURRENCY": "taskpic=8,tencent=1,hdredraw=4",
        "PICFLOW_JOB_DEADLINE": "1800",
        "PICFLOW_CALLBACK_TIMEOUT": "600",
        "PICFLOW_WAIT_SCALE": "1",
        "PICFLOW_JOB_TTL_DAYS": "30",
    }
    env.pop("PYTHONDONTWRITEBYTECODE")
    return env


def entry_points() -> list[tuple[str, Path, str]]:
    """(label, app.py, attribute) for every handler of template.yaml's functions/ code."""
    handlers = re.findall(
        r"CodeUri: (functions/\w+)/\s*\n(?:.*\n){0,6}?\s*Handler: app\.(\w+)",
        (ROOT / "template.yaml").read_text(),
    )
    seen: list[tuple[str, Path, str]] = []
    for code_uri, attr in handlers:
        label = Path(code_uri).name + ("" if attr == "lambda_handler" else f".{attr}")
        entry = (label, ROOT / code_uri / "app.py", attr)
        if entry not in seen:
            seen.append(entry)
    return seen


def measure(
    site: Path, endpoint: str, target: str, attr: str, code_dir: Path, bare: str = ""
) -> tuple[float, float, str]:
    """(init ms, init + first call ms, heavy modules loaded by init) in a fresh interpreter.

    ``target`` "boto3" is the baseline process; ``bare`` is then the first AWS call it makes."""
    env = lambda_env(code_dir, f"app.{attr}")
    env["PYTHONPATH"] = os.pathsep.join([str(code_dir), str(ROOT / "layers" / "picflow"), str(site)])
    env["AWS_ENDPOINT_URL"] = endpoint
    # A function not listed yet: at least the jobs table and S3, which nearly every step uses.
    first = bare if target == "boto3" else FIRST_CALL.get(code_dir.name, _SVC + "svc.s3\n" + _GET_JOB)
    out = subprocess.run(
        [sys.executable, "-S", "-c", CHILD, target, attr, first],
        env=env,
        cwd=code_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{target}: {out.stderr[-2000:]}")
    modules, times = out.stdout.splitlines()[-2:]
    init, total = times.split()
    return float(init), float(total), modules


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated functions/<name> directories to measure (e.g. operations,api); all by default",
    )
    args = parser.parse_args(argv)
    entries = entry_points()
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = wanted - {path.parent.name for _, path, _ in entries}
        if unknown:
            parser.error(f"no such function: {', '.join(sorted(unknown))}")
        entries = [entry for entry in entries if entry[1].parent.name in wanted]
    bare_of = {label: BARE_CALL.get(path.parent.name, _BARE_GET_JOB) for label, path, _ in entries}
    variants = sorted(set(bare_of.values()))
    server, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory(prefix="picflow-layer-site-") as tmp:
            site = Path(tmp)
            dists = layer_site(site)
            print(f"layer site: {', '.join(dists)}")
            # A first pass warms the page cache and writes .pyc files; it is not counted.
            for bare in variants:
                measure(site, endpoint, "boto3", "-", ROOT, bare)
            for _, path, attr in entries:
                measure(site, endpoint, str(path), attr, path.parent)
            # Each entry point's runs are paired with as many baseline runs, made right beside them.
            times: dict[str, list[float]] = {label: [] for label, _, _ in entries}
            firsts: dict[str, list[float]] = {label: [] for label, _, _ in entries}
            base_times: dict[str, list[float]] = {label: [] for label, _, _ in entries}
            base_firsts: dict[str, list[float]] = {label: [] for label, _, _ in entries}
            loaded: dict[str, str] = {}
            for round_ in range(RUNS):
                for label, path, attr in entries:
                    pair = [("boto3", "-", ROOT, bare_of[label]), (str(path), attr, path.parent, "")]
                    for target, name, code_dir, bare in pair if round_ % 2 == 0 else pair[::-1]:
                        ms, first, modules = measure(site, endpoint, target, name, code_dir, bare)
                        if target == "boto3":
                            base_times[label].append(ms)
                            base_firsts[label].append(first)
                        else:
                            times[label].append(ms)
                            firsts[label].append(first)
                            loaded[label] = modules
    finally:
        server.stop()  # type: ignore[attr-defined]
    every_base = [ms for values in base_times.values() for ms in values]
    base = min(every_base)
    print(
        f'\nbaseline `import boto3; boto3.client("s3")`: fastest {base:.0f} ms'
        f" of {len(every_base)} processes,"
        f" {RUNS} paired with each entry point's {RUNS}; each row's ratios are to its own pairs' fastest"
        " (base ms, base+call: the same process making that entry point's first call by bare boto3)"
    )
    print()
    header = (
        f"{'handler':30} {'init ms':>7} {'base ms':>7} {'ratio':>6} {'+1st call ms':>12} {'base+call':>9}"
        f" {'ratio':>6}  heavy modules loaded at init"
    )
    print(header)
    print("-" * (len(header) + 20))
    misses = []
    rows = {}
    for label, _, _ in entries:
        fastest = min(times[label])
        paired = min(base_times[label])
        ratio = fastest / paired
        first = min(firsts[label])
        reference = min(base_firsts[label])
        rows[label] = {
            "ms": round(fastest, 1),
            "baseline_ms": round(paired, 1),
            "ratio": round(ratio, 3),
            "first_call_ms": round(first, 1),
            "baseline_first_call_ms": round(reference, 1),
            "first_call_ratio": round(first / reference, 3),
        }
        if ratio > GOAL or first / reference > FIRST_GOAL:
            misses.append(label)
        print(
            f"{label:30} {fastest:>7.0f} {paired:>7.0f} {ratio:>6.2f} {first:>12.0f} {reference:>9.0f}"
            f" {first / reference:>6.2f}  {loaded[label] or '-'}"
        )
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(
            json.dumps({"baseline_ms": base, "handlers": rows}, indent=2)
        )
    verdict = "OK" if not misses else f"MISSED ({len(misses)} over: {', '.join(misses)})"
    worst = max(rows, key=lambda label: rows[label]["ratio"])
    worst_first = max(rows, key=lambda label: rows[label]["first_call_ratio"])
    print(
        f"\nsummary: baseline {base:.0f} ms; init worst {worst} {rows[worst]['ratio']:.2f}x"
        f" (goal <= {GOAL}x); init + 1st call worst {worst_first}"
        f" {rows[worst_first]['first_call_ratio']:.2f}x (goal <= {FIRST_GOAL}x)"
        f" over {len(entries)} handlers: {verdict}"
    )
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
