"""``picflow``: the command line of picflow.

    picflow local up|down                   the whole system offline (moto + mock upstream)
    picflow run OPERATION INPUT [...]       upload, start jobs, follow them, download results
    picflow jobs | status ID | cancel ID    the jobs API's reads and its cancel
    picflow batch run|status|stop|pause|resume  a prefix or manifest through one operation
    picflow operations                      the catalogue with each parameter's rule
    picflow tenants add NAME                a tenant: an API key in the usage plan (local or deployed)
    picflow deploy [--dry-run]              sam build + sam deploy, then what to set
    picflow validate                        what AWS would reject, judged offline
    picflow demo                            the main job, offline, with out/report.html

Commands that talk to the jobs API find it through ``--api-url``/``--api-key``, else
``$PICFLOW_API_URL``/``$PICFLOW_API_KEY``, else the state file of ``picflow local up``.
Errors print one clear line to stderr and exit non-zero; read commands take ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from picflow.batch.pipeline import describe_pipeline
from picflow.core.catalogue import describe_catalogue
from picflow.core.errors import PicflowError

from picflow_cli import settings
from picflow_cli.errors import CliError

if TYPE_CHECKING:
    import httpx

    from picflow_cli.client import PicflowClient

__all__ = ["build_parser", "main"]

JOB_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
MODES = ("auto", "sync", "poll", "callback")


def _print_operations(as_json: bool) -> None:
    catalogue = describe_catalogue()
    if as_json:
        print(json.dumps(catalogue, ensure_ascii=False, indent=2))
        return
    for op in catalogue:
        print(f"{op['operation']}  [{op['provider']}, {'/'.join(op['styles'])}]  {op['summary']}")
        for p in op["params"]:
            flag = "required" if p["required"] else f"default {p['default']!r}"
            rule = f"; {p['rule']}" if p["rule"] else ""
            print(f"    {p['name']}: {p['type']} ({flag}{rule})  {p['description']}")
        limits = op["input"]
        print(f"    input: {limits['source']}, ≤ {limits['max_bytes']} bytes, {', '.join(limits['formats'])}")
        print(f"    results: {', '.join(op['results'])}; cost: {op['cost']['unit']}")
    pipeline = describe_pipeline()
    steps = " -> ".join(f"{s['step']} ({s['operation']})" for s in pipeline["steps"])
    print(f"{pipeline['pipeline']}  [batches only: picflow batch run pipeline]  {steps}")
    for p in pipeline["params"]:
        flag = "required" if p["required"] else f"default {p['default']!r}"
        print(f"    {p['name']}: {p['type']} ({flag}; {p['rule']})  {p['operation']}'s {p['description']}")


def _state_file(args: argparse.Namespace) -> Path:
    return Path(args.state_file) if args.state_file else settings.default_state_file()


def _client(args: argparse.Namespace) -> PicflowClient:
    from picflow_cli.client import PicflowClient, resolve_endpoint

    return PicflowClient(resolve_endpoint(args.api_url, args.api_key, _state_file(args)), http=args.http)


# --- handlers -----------------------------------------------------------------------------


def _cmd_operations(args: argparse.Namespace) -> int:
    _print_operations(args.json)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from picflow_cli.demo import run_demo

    return run_demo(args.out)


def _cmd_run(args: argparse.Namespace) -> int:
    from picflow_cli.local.state import read_state
    from picflow_cli.run import parse_params, run

    params = parse_params(args.param)
    with _client(args) as client:
        state = read_state(_state_file(args))
        local = state is not None and state.api_url.rstrip("/") == client.endpoint.api_url
        return run(
            client,
            args.operation,
            args.input,
            params=params,
            mode=args.mode,
            out_dir=Path(args.out),
            wait=args.wait,
            idempotency_key=args.idempotency_key,
            input_bucket=state.input_bucket if local and state is not None else None,
            interval=args.interval,
            timeout=args.timeout,
            stall=args.stall,
        )


def _answer(
    args: argparse.Namespace,
    fetch: Callable[[PicflowClient], Any],
    render: Callable[[Any, TextIO], None],
) -> int:
    """One API call; its answer as JSON with ``--json``, else rendered for people."""
    with _client(args) as client:
        answer = fetch(client)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        render(answer, sys.stdout)
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from picflow_cli.show import print_jobs

    def fetch(client: PicflowClient) -> Any:
        return client.list_jobs(
            status=args.status, operation=args.operation, limit=args.limit, cursor=args.cursor
        )

    return _answer(args, fetch, print_jobs)


def _cmd_status(args: argparse.Namespace) -> int:
    from picflow_cli.show import print_job

    return _answer(args, lambda client: client.get_job(args.job_id), print_job)


def _cmd_cancel(args: argparse.Namespace) -> int:
    from picflow_cli.show import print_cancel

    return _answer(args, lambda client: client.cancel_job(args.job_id), print_cancel)


def _cmd_batch_run(args: argparse.Namespace) -> int:
    from picflow_cli.batch import parse_source, run_batch
    from picflow_cli.local.state import read_state
    from picflow_cli.run import parse_params

    params = parse_params(args.param)
    with _client(args) as client:
        state = read_state(_state_file(args))
        local = state is not None and state.api_url.rstrip("/") == client.endpoint.api_url
        source = parse_source(args.prefix, args.manifest, state.input_bucket if local and state else None)
        return run_batch(
            client,
            args.operation,
            source,
            params=params,
            tolerated_failure_percent=args.tolerated_failure_percent,
            max_concurrency=args.max_concurrency,
            reuse=args.reuse,
            idempotency_key=args.idempotency_key,
            wait=args.wait,
            as_json=args.json,
            interval=args.interval,
            timeout=args.timeout,
            stall=args.stall,
        )


def _cmd_batch_list(args: argparse.Namespace) -> int:
    from picflow_cli.batch import print_batches

    def fetch(client: PicflowClient) -> Any:
        return client.list_batches(limit=args.limit, cursor=args.cursor)

    return _answer(args, fetch, print_batches)


def _cmd_batch_status(args: argparse.Namespace) -> int:
    from picflow_cli.batch import print_batch

    return _answer(args, lambda client: client.get_batch(args.batch_id), print_batch)


def _cmd_batch_stop(args: argparse.Namespace) -> int:
    from picflow_cli.batch import print_batch_stopped

    return _answer(args, lambda client: client.stop_batch(args.batch_id), print_batch_stopped)


def _cmd_batch_pause(args: argparse.Namespace) -> int:
    from picflow_cli.batch import print_batch_paused

    return _answer(args, lambda client: client.pause_batch(args.batch_id), print_batch_paused)


def _cmd_batch_resume(args: argparse.Namespace) -> int:
    from picflow_cli.batch import print_batch_resumed

    return _answer(args, lambda client: client.resume_batch(args.batch_id), print_batch_resumed)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from picflow_cli.deploy import deploy

    return deploy(
        stack_name=args.stack_name,
        region=args.region,
        guided=args.guided,
        parameters=args.parameter,
        out=sys.stdout,
        dry_run=args.dry_run,
    )


def _cmd_validate(args: argparse.Namespace) -> int:
    from picflow_cli.local.stack import repo_root
    from picflow_cli.validate import validate

    return validate(repo_root(), sys.stdout)


def _cmd_tenants_add(args: argparse.Namespace) -> int:
    from picflow_cli.tenants import add_tenant, print_tenant

    tenant = add_tenant(
        args.name,
        stack_name=args.stack_name,
        region=args.region,
        endpoint_url=args.endpoint_url,
        state_file=_state_file(args),
    )
    print_tenant(tenant, sys.stdout, as_json=args.json)
    return 0


def _cmd_local_up(args: argparse.Namespace) -> int:
    from picflow_cli.local.up import up

    return up(
        _state_file(args),
        moto_port=args.moto_port,
        api_port=args.api_port,
        upstream_port=args.upstream_port,
        out=sys.stdout,
    )


def _cmd_local_down(args: argparse.Namespace) -> int:
    from picflow_cli.local.up import down

    return down(_state_file(args), out=sys.stdout)


# --- the parser ---------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {port} (0 picks a free one)")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _within[N: (int, float)](kind: type[N], low: N, high: N) -> Callable[[str], N]:
    """An argparse type: a number of ``kind`` from low to high, else one clear line."""
    what = "whole number" if kind is int else "number"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g} to {high:g}: {text}")
        return value

    return parse


_percent = _within(float, 0.0, 100.0)
_concurrency = _within(int, 1, 1000)
_limit = _within(int, 1, 100)


def _command(
    sub: Any, name: str, handler: Callable[[argparse.Namespace], int], **kwargs: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picflow", description="AI image jobs on AWS, reliably and cheaply."
    )
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state-file",
        metavar="PATH",
        help=f"the local stack's state file (default ${settings.STATE_FILE_ENV} or "
        f"{settings.STATE_FILE_NAME} in the repository)",
    )
    api = argparse.ArgumentParser(add_help=False, parents=[state])
    api.add_argument("--api-url", metavar="URL", help=f"the jobs API (default ${settings.API_URL_ENV})")
    api.add_argument("--api-key", metavar="KEY", help=f"its API key (default ${settings.API_KEY_ENV})")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="the API's answer as JSON")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(
        sub,
        "operations",
        _cmd_operations,
        parents=[as_json],
        help="the operation catalogue with each parameter's rule",
    )

    run = _command(
        sub, "run", _cmd_run, parents=[api], help="run an operation on an image, a folder or an S3 object"
    )
    run.add_argument("operation", help="a name from `picflow operations`")
    run.add_argument(
        "input", help="an image file, a folder of images, s3://<input bucket>/<key> or an https URL"
    )
    run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="K=V",
        help="an operation parameter; V as JSON when it parses (3, true, [1,2]), else as a string",
    )
    run.add_argument("--mode", choices=MODES, default="auto", help="interaction style (default auto)")
    run.add_argument("--out", default="out", metavar="DIR", help="results go to DIR/<job id>/ (default out)")
    run.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the jobs and download their results (default), or print the job ids and return",
    )
    run.add_argument(
        "--idempotency-key",
        metavar="K",
        help="retry-safe key (K-0, K-1, … for a folder); the same key and request return the same job",
    )
    run.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="seconds between polls")
    run.add_argument(
        "--stall", type=_positive, default=900.0, metavar="S", help="give up when no job changed for S"
    )
    run.add_argument("--timeout", type=_positive, default=3600.0, metavar="S", help="give up after S in all")

    jobs = _command(sub, "jobs", _cmd_jobs, parents=[api, as_json], help="list jobs, newest first")
    jobs.add_argument("--status", choices=JOB_STATUSES)
    jobs.add_argument("--operation", metavar="O")
    jobs.add_argument("--limit", type=_limit, metavar="N", help="1 to 100 (the API's default: 50)")
    jobs.add_argument("--cursor", help="the next page, from a previous answer")

    status = _command(sub, "status", _cmd_status, parents=[api, as_json], help="a job's status and results")
    status.add_argument("job_id", metavar="ID")

    cancel = _command(sub, "cancel", _cmd_cancel, parents=[api, as_json], help="cancel a job")
    cancel.add_argument("job_id", metavar="ID")

    batch = sub.add_parser(
        "batch", help="a whole prefix or manifest of images through an operation or the pipeline"
    )
    batch_sub = batch.add_subparsers(
        dest="batch_command", required=True, metavar="run|list|status|stop|pause|resume"
    )
    batch_run = _command(
        batch_sub,
        "run",
        _cmd_batch_run,
        parents=[api, as_json],
        help="start a batch and follow it until it ends",
    )
    batch_run.add_argument("operation", help="a name from `picflow operations`, or pipeline")
    source = batch_run.add_mutually_exclusive_group(required=True)
    source.add_argument("--prefix", metavar="S3URL", help="every image under s3://<input bucket>/<prefix>")
    source.add_argument(
        "--manifest",
        metavar="FILE|S3URL",
        help="a .csv (key or url, params) or .jsonl ({key|url, params}) file, uploaded first, "
        "or s3://<input bucket>/<key> of one already there; an item's params override -p",
    )
    batch_run.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="K=V",
        help="every item's parameter; V as JSON when it parses, else as a string",
    )
    batch_run.add_argument(
        "--tolerated-failure-percent",
        type=_percent,
        metavar="P",
        help="the batch fails (and stops) once more than P%% of its items failed (the API's default: 5)",
    )
    batch_run.add_argument(
        "--max-concurrency",
        type=_concurrency,
        metavar="N",
        help="items in flight (default: the provider's cap)",
    )
    batch_run.add_argument(
        "--reuse",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="answer items done before from the result cache (default), or pay for every item",
    )
    batch_run.add_argument(
        "--idempotency-key",
        metavar="K",
        help="retry-safe key: the same key and request return the same batch",
    )
    batch_run.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the batch until it ends (default), or print its id and return",
    )
    batch_run.add_argument(
        "--interval", type=_positive, default=2.0, metavar="S", help="seconds between polls"
    )
    batch_run.add_argument(
        "--stall",
        type=_positive,
        default=900.0,
        metavar="S",
        help="give up when the batch did not change for S",
    )
    batch_run.add_argument(
        "--timeout", type=_positive, default=86400.0, metavar="S", help="give up after S in all"
    )
    batch_list = _command(
        batch_sub, "list", _cmd_batch_list, parents=[api, as_json], help="your batches, newest first"
    )
    batch_list.add_argument("--limit", type=_limit, metavar="N", help="at most N a page (1-100; default 20)")
    batch_list.add_argument("--cursor", metavar="C", help="the next page, as the last one said")
    # The commands that act on one batch by its id.
    for name, handler, help_text in (
        ("status", _cmd_batch_status, "a batch's progress and results"),
        ("stop", _cmd_batch_stop, "stop a batch, cancel its jobs"),
        ("pause", _cmd_batch_pause, "drain a batch: items not started end unpaid, started ones finish"),
        (
            "resume",
            _cmd_batch_resume,
            "once a batch has ended, run the items that did not succeed as a new batch",
        ),
    ):
        _command(batch_sub, name, handler, parents=[api, as_json], help=help_text).add_argument(
            "batch_id", metavar="ID"
        )

    deploy = _command(sub, "deploy", _cmd_deploy, help="sam build + sam deploy, then what to set")
    deploy.add_argument("--stack-name", default="picflow", help="the CloudFormation stack (default picflow)")
    deploy.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    deploy.add_argument(
        "--guided",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sam deploy --guided (default), or deploy with these flags and an SAM-managed bucket",
    )
    deploy.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter override (e.g. HdRedrawBaseUrl=https://…)",
    )
    deploy.add_argument(
        "--dry-run",
        action="store_true",
        help="sam build and every validator, then what would be created and the parameters needed; "
        "no AWS credentials, nothing deployed",
    )
    _command(
        sub,
        "validate",
        _cmd_validate,
        help="cfn-lint on the SAM-transformed template, asl-validator, redocly: what AWS would reject",
    )

    demo = _command(sub, "demo", _cmd_demo, help="run the main job offline (mock upstream)")
    demo.add_argument("--out", default="out", help="where results and the report go")

    tenants = sub.add_parser("tenants", help="tenants: one API key each")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True, metavar="add")
    add = _command(
        tenants_sub,
        "add",
        _cmd_tenants_add,
        parents=[state, as_json],
        help="add a tenant: a new API key in the jobs API's usage plan; prints its id and key",
    )
    add.add_argument("name", help="the tenant's name (the key's name)")
    where = add.add_mutually_exclusive_group()
    where.add_argument("--stack-name", metavar="NAME", help="a deployed stack (default: the local stack)")
    where.add_argument(
        "--endpoint-url", metavar="URL", help="the local stack's AWS endpoint (default: its state file's)"
    )
    add.add_argument("--region", metavar="REGION", help="the deployed stack's region (default: boto3's)")

    local = sub.add_parser("local", help="the whole system offline: moto, the template, the mock upstream")
    local_sub = local.add_subparsers(dest="local_command", required=True, metavar="up|down")
    up = _command(local_sub, "up", _cmd_local_up, parents=[state], help="start it and print the endpoints")
    for flag, default, what in (
        ("--api-port", settings.DEFAULT_API_PORT, "the jobs API front door"),
        ("--moto-port", settings.DEFAULT_MOTO_PORT, "moto (S3 and the other AWS APIs)"),
        ("--upstream-port", settings.DEFAULT_UPSTREAM_PORT, "the mock upstream"),
    ):
        up.add_argument(
            flag, type=_port, default=default, metavar="N", help=f"{what} (default {default}; 0: any)"
        )
    _command(local_sub, "down", _cmd_local_down, parents=[state], help="stop what `local up` started")
    return parser


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run one command; ``http`` is the transport seam for the API commands (tests)."""
    args = build_parser().parse_args(argv)
    args.http = http
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CliError as exc:
        print(f"picflow: {exc}", file=sys.stderr)
        return exc.exit_code
    except PicflowError as exc:
        print(f"picflow: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("picflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
