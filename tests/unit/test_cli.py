"""The picflow CLI without a stack: parsing, the client on an in-memory fake of the jobs API
(httpx.MockTransport), error rendering, ``deploy`` with a fake ``sam``, ``local down``/``up`` refusals.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow_cli import settings
from picflow_cli.client import Endpoint, PicflowClient, resolve_endpoint
from picflow_cli.errors import ApiError, ConfigError, JobsFailedError, TransportError, UsageError
from picflow_cli.local import state as state_module
from picflow_cli.local.state import LocalState, read_state, write_state
from picflow_cli.main import build_parser, main
from picflow_cli.run import ProgressBoard, Source, Tracked, expand_inputs, parse_params, run

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mock_upstream" / "samples"
API = "http://api.test/v1"
KEY = "test-key"


pytestmark = pytest.mark.usefixtures("no_ambient_cli_config")


def local_state(pid: int, api_url: str = API) -> LocalState:
    return LocalState(
        pid=pid,
        api_url=api_url,
        api_key="local-key",
        s3_endpoint="http://s3.test",
        input_bucket="in-bucket",
        output_bucket="out-bucket",
        upstream_url="http://upstream.test",
        region="us-east-1",
    )


@pytest.fixture
def gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


# --- an in-memory fake of the jobs API --------------------------------------------------------


@dataclass
class FakeApi:
    """Just enough of the jobs API and S3's presigned URLs, with the API's error shape."""

    polls_to_finish: int = 2
    final_status: str = "SUCCEEDED"
    frozen: bool = False  # a running job's view never changes (no progress)
    results: dict[str, bytes] = field(default_factory=lambda: {"image.png": b"\x89PNG result"})
    fail_first: dict[str, int] = field(default_factory=dict)  # "METHOD /path" -> 503s before answering
    requests: list[httpx.Request] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path}"
        if self.fail_first.get(route, 0) > 0:
            self.fail_first[route] -= 1
            return httpx.Response(503, json={"message": "Service Unavailable"})
        if request.url.host == "s3.test":
            return self.s3(request)
        if request.headers.get("x-api-key") != KEY:
            return httpx.Response(403, json={"message": "Forbidden"})
        path = request.url.path.removeprefix("/v1")
        if request.method == "POST" and path == "/uploads":
            body = json.loads(request.content)
            upload_id = f"{len(self.uploads):032x}"
            self.uploads[upload_id] = b""
            return httpx.Response(
                201,
                json={
                    "upload_id": upload_id,
                    "key": f"uploads/{upload_id}/{body['filename']}",
                    "url": f"http://s3.test/in/uploads/{upload_id}",
                    "method": "PUT",
                    "headers": {"Content-Type": body["content_type"]},
                    "expires_in": 900,
                },
            )
        if request.method == "POST" and path == "/jobs":
            body = json.loads(request.content)
            if body["params"].get("batch_size") == 9:
                return error(
                    422, "ParamValidationError", "batch_size: too big", "params.batch_size", "1 to 4"
                )
            job_id = f"api-{len(self.jobs)}"
            self.jobs[job_id] = {"request": body, "gets": 0, "key": request.headers["idempotency-key"]}
            return httpx.Response(
                202, json={"job_id": job_id, "status": "QUEUED", "created": True, "links": {}}
            )
        match = re.fullmatch(r"/jobs/([^/]+)", path)
        if match and match.group(1) not in self.jobs:
            return error(404, "NotFound", f"no job {match.group(1)}", "job_id", "an existing job")
        if match and request.method == "GET":
            return httpx.Response(200, json=self.view(match.group(1)))
        if match and request.method == "DELETE":
            return error(
                409,
                "JobFinal",
                f"job {match.group(1)} is already SUCCEEDED",
                "job_id",
                "a job that has not finished",
            )
        if request.method == "GET" and path == "/jobs":
            jobs = [{"job_id": j, "status": "SUCCEEDED", "operation": "segmentation"} for j in self.jobs]
            return httpx.Response(200, json={"jobs": jobs, "cursor": None})
        return error(404, "NotFound", f"no route {request.method} {path}")

    def s3(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.uploads[request.url.path.rsplit("/", 1)[-1]] = request.content
            return httpx.Response(200)
        name = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, content=self.results[name])

    def view(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        job["gets"] += 1
        done = job["gets"] > self.polls_to_finish
        status = self.final_status if done else "RUNNING"
        results = [
            {
                "kind": "image",
                "index": i,
                "key": f"jobs/{job_id}/{name}",
                "content_type": "image/png",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "url": f"http://s3.test/out/{name}",
                "expires_in": 900,
            }
            for i, (name, data) in enumerate(self.results.items())
        ]
        failed = done and status == "FAILED"
        return {
            "job_id": job_id,
            "status": status,
            "operation": job["request"]["operation"],
            "params": job["request"]["params"],
            "progress": None if done else 50 if self.frozen else 50 * job["gets"],
            "polls": 1 if self.frozen else job["gets"],
            "timings": {},
            "cost": {},
            "error": {"type": "UpstreamTaskFailedError", "message": "no subject found"} if failed else None,
            "results": results if done and status == "SUCCEEDED" else [],
            "texts": {},
            "links": {},
        }


def error(
    status: int, kind: str, message: str, field: str | None = None, rule: str | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": kind, "message": message, "field": field, "rule": rule}}
    )


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> PicflowClient:
    return PicflowClient(Endpoint(API, KEY, "--api-url"), http=api.client())


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("picflow_cli.client._retry_after", lambda response, attempt: 0.0)


def cli(capsys: pytest.CaptureFixture[str], api: FakeApi, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--api-url", API, "--api-key", KEY], http=api.client())
    out, err = capsys.readouterr()
    return code, out, err


def run_sample(
    capsys: pytest.CaptureFixture[str], api: FakeApi, out: Path, *extra: str, sample: str = "product.jpg"
) -> tuple[int, str, str]:
    """``picflow run segmentation <sample>`` into ``out``, polling quickly."""
    argv = ["run", "segmentation", str(SAMPLES / sample), "--out", str(out), "--interval", "0.01", *extra]
    return cli(capsys, api, *argv)


# --- argument parsing -------------------------------------------------------------------------


def test_parser_run_defaults_wait_auto_mode_and_out_dir():
    args = build_parser().parse_args(["run", "segmentation", "shoe.jpg"])
    assert (args.operation, args.input, args.mode, args.out, args.wait) == (
        "segmentation",
        "shoe.jpg",
        "auto",
        "out",
        True,
    )
    assert args.param == []
    assert args.idempotency_key is None


def test_parser_run_takes_repeated_params_no_wait_and_mode():
    args = build_parser().parse_args(
        [
            "run",
            "background",
            "dir/",
            "-p",
            "prompt=beach",
            "--param",
            "batch_size=2",
            "--no-wait",
            "--mode",
            "poll",
        ]
    )
    assert args.param == ["prompt=beach", "batch_size=2"]
    assert (args.wait, args.mode) == (False, "poll")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "segmentation", "x.png", "--mode", "fast"],
        ["jobs", "--status", "DONE"],
        ["jobs", "--limit", "0"],
        ["local", "up", "--api-port", "70000"],
        ["local", "up", "--moto-port", "http"],
        ["local"],
    ],
)
def test_parser_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_parser_local_up_ports_default_and_zero():
    args = build_parser().parse_args(["local", "up", "--api-port", "0", "--state-file", "s.json"])
    assert (args.api_port, args.moto_port, args.upstream_port) == (
        0,
        settings.DEFAULT_MOTO_PORT,
        settings.DEFAULT_UPSTREAM_PORT,
    )
    assert args.state_file == "s.json"


def test_parser_deploy_is_guided_by_default():
    assert build_parser().parse_args(["deploy"]).guided is True
    assert build_parser().parse_args(["deploy", "--no-guided"]).guided is False


# --- --param parsing and inputs ---------------------------------------------------------------


def test_parse_params_json_where_it_parses_else_string():
    params = parse_params(
        ["n=3", "on=true", "fit=0.5", "list=[1,2]", "prompt=a red shoe", 'quoted="3"', "empty="]
    )
    assert params == {
        "n": 3,
        "on": True,
        "fit": 0.5,
        "list": [1, 2],
        "prompt": "a red shoe",
        "quoted": "3",
        "empty": "",
    }


def test_parse_params_keeps_equals_signs_in_the_value():
    assert parse_params(["prompt=a=b"]) == {"prompt": "a=b"}


@pytest.mark.parametrize("bad", ["novalue", "=3"])
def test_parse_params_without_a_name_is_a_usage_error(bad: str):
    with pytest.raises(UsageError, match="expected name=value"):
        parse_params([bad])


def test_parse_params_twice_is_a_usage_error():
    with pytest.raises(UsageError, match="given twice"):
        parse_params(["a=1", "a=2"])


def test_expand_inputs_folder_takes_its_images_sorted(tmp_path: Path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [s.label for s in expand_inputs(str(tmp_path))] == ["a.JPG", "b.png"]


def test_expand_inputs_s3_only_from_the_input_bucket():
    assert expand_inputs("s3://in-bucket/cats/a.png", "in-bucket") == [
        Source(label="cats/a.png", key="cats/a.png")
    ]
    with pytest.raises(UsageError, match="input bucket"):
        expand_inputs("s3://elsewhere/a.png", "in-bucket")
    with pytest.raises(UsageError, match="s3://bucket/key"):
        expand_inputs("s3://in-bucket")


@pytest.mark.parametrize(
    ("target", "message"), [("missing.png", "no such file"), ("notes.txt", "not an image")]
)
def test_expand_inputs_refuses_what_it_cannot_send(tmp_path: Path, target: str, message: str):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UsageError, match=message):
        expand_inputs(str(tmp_path / target))


# --- where the API is ---------------------------------------------------------------------------


def test_resolve_endpoint_flags_beat_environment(tmp_path: Path):
    env = {settings.API_URL_ENV: "http://env/v1", settings.API_KEY_ENV: "env-key"}
    endpoint = resolve_endpoint("http://flag/v1/", "flag-key", tmp_path / "none.json", env)
    assert (endpoint.api_url, endpoint.api_key, endpoint.origin) == (
        "http://flag/v1",
        "flag-key",
        "--api-url",
    )
    endpoint = resolve_endpoint(None, None, tmp_path / "none.json", env)
    assert (endpoint.api_url, endpoint.api_key) == ("http://env/v1", "env-key")


def test_resolve_endpoint_falls_back_to_a_running_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "state.json"
    write_state(path, local_state(pid=4242))
    monkeypatch.setattr(state_module, "pid_alive", lambda pid: pid == 4242)
    endpoint = resolve_endpoint(None, None, path, {})
    assert (endpoint.api_url, endpoint.api_key, endpoint.origin) == (API, "local-key", str(path))


def test_resolve_endpoint_stale_state_file_says_start_it(tmp_path: Path, gone_pid: int):
    path = tmp_path / "state.json"
    write_state(path, local_state(pid=gone_pid))
    with pytest.raises(ConfigError, match=r"not running.*picflow local up"):
        resolve_endpoint(None, None, path, {})


def test_resolve_endpoint_url_without_key_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no API key"):
        resolve_endpoint("http://flag/v1", None, tmp_path / "none.json", {})


def test_no_api_anywhere_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]):
    assert main(["jobs"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("picflow: no jobs API to talk to")


# --- the client and error rendering ---------------------------------------------------------------


def test_api_refusal_is_one_line_with_status_type_field_and_rule(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
):
    api.jobs["api-0"] = {"request": {"operation": "segmentation", "params": {}}, "gets": 0}
    code, out, err = cli(capsys, api, "cancel", "api-0")
    assert code == 2
    assert out == ""
    assert err == (
        "picflow: job api-0 is already SUCCEEDED "
        "(HTTP 409 JobFinal; job_id must be a job that has not finished)\n"
    )


def test_api_gateway_forbidden_names_the_api_key(api: FakeApi, capsys: pytest.CaptureFixture[str]):
    code = main(["jobs", "--api-url", API, "--api-key", "wrong"], http=api.client())
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err == "picflow: Forbidden: check the API key (--api-key, $PICFLOW_API_KEY) and the URL "
        "(HTTP 403 Forbidden)\n"
    )


def test_unreachable_api_is_a_transport_error(no_backoff: None):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = PicflowClient(
        Endpoint(API, KEY, "--api-url"), http=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(TransportError, match=r"cannot reach http://api.test: connection refused"):
        client.list_jobs()


def test_reads_are_retried_on_503(api: FakeApi, client: PicflowClient, no_backoff: None):
    api.fail_first["GET /v1/jobs"] = 2
    assert client.list_jobs()["jobs"] == []
    assert len(api.requests) == 3


def test_cancel_is_not_retried(api: FakeApi, client: PicflowClient, no_backoff: None):
    api.jobs["api-0"] = {"request": {}, "gets": 0}
    api.fail_first["DELETE /v1/jobs/api-0"] = 1
    with pytest.raises(ApiError) as exc:
        client.cancel_job("api-0")
    assert exc.value.status == 503
    assert len(api.requests) == 1


def test_create_job_always_sends_an_idempotency_key(api: FakeApi, client: PicflowClient):
    client.create_job("segmentation", {"key": "a.png"})
    client.create_job("segmentation", {"key": "a.png"}, idempotency_key="mine")
    keys = [r.headers["idempotency-key"] for r in api.requests]
    assert keys[0].startswith("cli-")
    assert keys[1] == "mine"


def test_list_jobs_sends_only_the_filters_given(api: FakeApi, client: PicflowClient):
    client.list_jobs(status="FAILED", limit=5)
    assert dict(api.requests[0].url.params) == {"status": "FAILED", "limit": "5"}


def test_api_key_never_goes_to_the_presigned_urls(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    assert run_sample(capsys, api, tmp_path)[0] == 0
    s3 = [r for r in api.requests if r.url.host == "s3.test"]
    assert s3
    assert all("x-api-key" not in r.headers for r in s3)


# --- run -------------------------------------------------------------------------------------


def test_run_uploads_starts_follows_and_downloads(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    code, out, err = run_sample(capsys, api, tmp_path, "-p", "output_type=1")
    assert (code, err) == (0, "")
    assert api.uploads["0" * 32] == (SAMPLES / "product.jpg").read_bytes()
    assert api.jobs["api-0"]["request"] == {
        "operation": "segmentation",
        "params": {"output_type": 1},
        "input": {"upload_id": "0" * 32},
        "mode": "auto",
    }
    assert (tmp_path / "api-0" / "image.png").read_bytes() == b"\x89PNG result"
    record = json.loads((tmp_path / "api-0" / "job.json").read_text())
    assert record["status"] == "SUCCEEDED"
    assert "url" not in record["results"][0]
    lines = out.splitlines()
    # Not a terminal: one plain line per change, no escape codes.
    assert "\x1b" not in out
    assert [line.split()[2] for line in lines[:3]] == ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert "[##########..........]  50%" in lines[0]
    assert lines[-1] == f"api-0: 1 result(s) in {tmp_path / 'api-0'}"


def test_run_folder_starts_one_job_per_image_with_derived_keys(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"img")
    code, out, _ = cli(
        capsys, api, "run", "background", str(folder), "--no-wait", "--idempotency-key", "batch"
    )
    assert code == 0
    assert [j["key"] for j in api.jobs.values()] == ["batch-0", "batch-1"]
    assert out.splitlines()[:2] == ["api-0  QUEUED  a.png", "api-1  QUEUED  b.jpg"]
    assert all(r.url.path != "/v1/jobs/api-0" for r in api.requests)  # --no-wait: no polling


def test_run_s3_input_is_passed_as_key(api: FakeApi, client: PicflowClient, tmp_path: Path):
    run(
        client,
        "segmentation",
        "s3://in-bucket/cats/a.png",
        params={},
        wait=False,
        input_bucket="in-bucket",
        stdout=io.StringIO(),
    )
    assert api.jobs["api-0"]["request"]["input"] == {"key": "cats/a.png"}
    assert not api.uploads


def test_run_failed_job_exits_1_with_its_error(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    api.final_status = "FAILED"
    code, _, err = run_sample(capsys, api, tmp_path)
    assert code == 1
    assert err == (
        "picflow: 1 of 1 job(s) did not succeed: api-0 (product.jpg) "
        "FAILED UpstreamTaskFailedError: no subject found\n"
    )
    assert not (tmp_path / "api-0").exists()


def test_run_api_validation_error_exits_2(api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    code, _, err = cli(capsys, api, "run", "background", str(SAMPLES / "image.png"), "-p", "batch_size=9")
    assert code == 2
    assert (
        err
        == "picflow: batch_size: too big (HTTP 422 ParamValidationError; params.batch_size must be 1 to 4)\n"
    )


def test_run_gives_up_at_the_overall_cap_even_while_the_job_advances(
    api: FakeApi, client: PicflowClient, tmp_path: Path
):
    api.polls_to_finish = 10**6
    with pytest.raises(JobsFailedError, match=r"still running .*: still going after the 0.05 s cap"):
        run(
            client,
            "segmentation",
            str(SAMPLES / "product.jpg"),
            params={},
            interval=0.01,
            timeout=0.05,
            stdout=io.StringIO(),
        )


def test_run_waits_past_the_stall_time_while_the_job_advances(
    api: FakeApi, client: PicflowClient, tmp_path: Path
):
    # GIVEN a job that needs 40 reads at 10 ms (>= 0.4 s), each showing new progress
    api.polls_to_finish = 40
    started = time.monotonic()
    code = run(
        client,
        "segmentation",
        str(SAMPLES / "product.jpg"),
        params={},
        out_dir=tmp_path,
        interval=0.01,
        stall=0.1,
        stdout=io.StringIO(),
    )
    # THEN the wait outlived its 0.1 s no-progress limit, and the job was collected
    assert code == 0
    assert time.monotonic() - started > 0.1 * 3


def test_run_without_progress_ends_with_one_line(
    api: FakeApi, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    # GIVEN a job that stays RUNNING and never changes
    api.polls_to_finish = 10**6
    api.frozen = True
    code, _, err = cli(
        capsys, api, "run", "segmentation", str(SAMPLES / "product.jpg"), "--out", str(tmp_path),
        "--interval", "0.01", "--stall", "0.1", "--timeout", "60",
    )  # fmt: skip
    # THEN the CLI gives up after the stall, not the 60 s timeout, in one line without a traceback
    assert code == 1
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert err.startswith("picflow: 1 job(s) still running (api-0): nothing changed for 0.1 s")
    assert "picflow status <job id>" in err


def test_download_refuses_bytes_that_do_not_match_the_sha256(
    api: FakeApi, client: PicflowClient, tmp_path: Path
):
    result: Any = {"key": "jobs/x/image.png", "url": "http://s3.test/out/image.png", "sha256": "0" * 64}
    with pytest.raises(TransportError, match="sha256"):
        client.download(result, tmp_path / "image.png")
    assert list(tmp_path.iterdir()) == []


def test_progress_board_redraws_in_place_on_a_terminal():
    stream = io.StringIO()
    board = ProgressBoard(stream, tty=True)
    jobs = [Tracked(Source("a.png"), "api-0", "RUNNING"), Tracked(Source("b.png"), "api-1", "QUEUED")]
    board.render(jobs)
    jobs[0].status = "SUCCEEDED"
    board.render(jobs)
    text = stream.getvalue()
    assert text.count("\x1b[2K") == 4
    assert text.count("\x1b[2F") == 1  # the second drawing goes back up two lines first
    assert text.index("\x1b[2F") > text.index("api-1")


# --- jobs / status ---------------------------------------------------------------------------


def test_jobs_json_prints_the_api_answer(api: FakeApi, capsys: pytest.CaptureFixture[str]):
    api.jobs["api-0"] = {"request": {}, "gets": 0}
    code, out, _ = cli(capsys, api, "jobs", "--json", "--status", "SUCCEEDED")
    assert code == 0
    assert json.loads(out) == {
        "jobs": [{"job_id": "api-0", "status": "SUCCEEDED", "operation": "segmentation"}],
        "cursor": None,
    }


def test_status_of_an_unknown_job_is_a_404_line(api: FakeApi, capsys: pytest.CaptureFixture[str]):
    code, _, err = cli(capsys, api, "status", "nope")
    assert code == 2
    assert err == "picflow: no job nope (HTTP 404 NotFound; job_id must be an existing job)\n"


# --- deploy with a fake sam --------------------------------------------------------------------------

FAKE_SAM = """#!{python}
import json, os, sys
with open(os.environ["FAKE_SAM_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["list", "stack-outputs"]:
    print(json.dumps([
        {{"OutputKey": "ProviderSecretArn", "OutputValue": "arn:aws:secretsmanager:eu-west-1:1:secret:prov"}},
        {{"OutputKey": "ApiKeyId", "OutputValue": "k3y1d"}},
        {{"OutputKey": "ApiUrl", "OutputValue": "https://abc.execute-api.eu-west-1.amazonaws.com/v1"}},
    ]))
sys.exit(int(os.environ.get("FAKE_SAM_EXIT_" + sys.argv[1], "0")))
"""


# The runtime's python3.12 as the deploy runs it to compile the build: it logs the call instead.
FAKE_PYTHON = """#!{python}
import json, os, sys
if sys.argv[1:3] == ["-m", "compileall"]:
    with open(os.environ["FAKE_SAM_LOG"], "a") as fh:
        fh.write(json.dumps(["python3.12", *sys.argv[1:]]) + "\\n")
    sys.exit(int(os.environ.get("FAKE_SAM_EXIT_compileall", "0")))
"""


@pytest.fixture
def fake_sam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sam = bin_dir / "sam"
    sam.write_text(FAKE_SAM.format(python=sys.executable))
    sam.chmod(0o755)
    python = tmp_path / "runtime" / "python3.12"
    python.parent.mkdir()
    python.write_text(FAKE_PYTHON.format(python=sys.executable))
    python.chmod(0o755)
    monkeypatch.setattr("picflow_cli.deploy.python312", lambda: str(python))
    log = tmp_path / "sam.log"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_SAM_LOG", str(log))
    return log


def sam_calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_deploy_builds_then_deploys_guided_with_capabilities(
    fake_sam: Path, capsys: pytest.CaptureFixture[str]
):
    code = main(
        [
            "deploy",
            "--stack-name",
            "pics",
            "--region",
            "eu-west-1",
            "--parameter",
            "HdRedrawBaseUrl=https://hd.example",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    build, compiled, deploy, outputs = sam_calls(fake_sam)
    assert build == ["build", "--template-file", str(ROOT / "template.yaml")]
    built = str(ROOT / ".aws-sam" / "build")
    assert compiled == [
        "python3.12",
        "-m",
        "compileall",
        "-q",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        built,
        built,
    ]
    assert deploy[:5] == [
        "deploy",
        "--template-file",
        str(ROOT / ".aws-sam" / "build" / "template.yaml"),
        "--stack-name",
        "pics",
    ]
    assert deploy[deploy.index("--capabilities") + 1 :][:2] == ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    assert deploy[deploy.index("--region") + 1] == "eu-west-1"
    assert deploy[deploy.index("--parameter-overrides") + 1] == "HdRedrawBaseUrl=https://hd.example"
    assert deploy[-1] == "--guided"
    assert outputs == [
        "list",
        "stack-outputs",
        "--stack-name",
        "pics",
        "--output",
        "json",
        "--region",
        "eu-west-1",
    ]
    assert (
        "aws secretsmanager put-secret-value --region eu-west-1 "
        "--secret-id arn:aws:secretsmanager:eu-west-1:1:secret:prov" in out
    )
    assert '"taskpic_token": "..."' in out
    assert "aws apigateway get-api-key --region eu-west-1 --api-key k3y1d --include-value" in out
    assert "export PICFLOW_API_URL=https://abc.execute-api.eu-west-1.amazonaws.com/v1" in out


def test_deploy_no_guided_lets_sam_manage_the_bucket(fake_sam: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["deploy", "--no-guided"]) == 0
    deploy = sam_calls(fake_sam)[2]
    assert "--guided" not in deploy
    assert "--resolve-s3" in deploy
    assert deploy[deploy.index("--stack-name") + 1] == "picflow"


def test_deploy_unknown_template_parameter_is_refused_before_sam_runs(
    fake_sam: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["deploy", "--parameter", "Nope=1"]) == 2
    assert "the template has no such parameter" in capsys.readouterr().err
    assert not fake_sam.exists()


def test_deploy_stops_when_sam_build_fails(
    fake_sam: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_SAM_EXIT_build", "3")
    assert main(["deploy"]) == 2
    assert capsys.readouterr().err == "picflow: `sam build` failed (exit 3); its output above says why\n"
    assert len(sam_calls(fake_sam)) == 1


def test_deploy_ships_what_compiled_when_some_file_did_not(
    fake_sam: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    # compileall's 1: a file did not compile (Lambda could not import it either)
    monkeypatch.setenv("FAKE_SAM_EXIT_compileall", "1")
    assert main(["deploy", "--no-guided"]) == 0
    assert "some files did not compile (listed above); the rest ships as bytecode" in capsys.readouterr().out
    assert [call[0] for call in sam_calls(fake_sam)] == ["build", "python3.12", "deploy", "list"]


def test_deploy_stops_when_the_compile_step_cannot_run(
    fake_sam: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FAKE_SAM_EXIT_compileall", "2")
    assert main(["deploy"]) == 2
    assert capsys.readouterr().err == "picflow: `compileall` failed (exit 2); its output above says why\n"
    assert [call[0] for call in sam_calls(fake_sam)] == ["build", "python3.12"]


def test_deploy_without_sam_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("picflow_cli.deploy.SAM_VENV", str(tmp_path / "no-venv"))
    assert main(["deploy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("picflow: `sam` is not on PATH nor in .venv-sam/: install the AWS SAM CLI")
    assert err.count("\n") == 1


def test_deploy_falls_back_to_the_sam_make_setup_installs(
    fake_sam: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    venv = tmp_path / "venv"
    venv.mkdir()
    (tmp_path / "bin").rename(venv / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("picflow_cli.deploy.SAM_VENV", str(venv))
    assert main(["deploy", "--no-guided"]) == 0
    assert [call[0] for call in sam_calls(fake_sam)] == ["build", "python3.12", "deploy", "list"]


# --- local down / up without a stack -----------------------------------------------------------------


def test_local_down_with_no_state_file_says_nothing_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["local", "down", "--state-file", str(tmp_path / "none.json")]) == 0
    assert (
        capsys.readouterr().out
        == f"picflow local: nothing running (no state file at {tmp_path / 'none.json'})\n"
    )


def test_local_down_with_a_dead_pid_removes_the_stale_file(
    tmp_path: Path, gone_pid: int, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "state.json"
    write_state(path, local_state(pid=gone_pid))
    assert main(["local", "down", "--state-file", str(path)]) == 0
    assert "nothing running" in capsys.readouterr().out
    assert not path.exists()


def test_local_up_refuses_while_another_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "state.json"
    write_state(path, local_state(pid=4242))
    monkeypatch.setattr(state_module, "pid_alive", lambda pid: True)
    assert main(["local", "up", "--state-file", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"picflow: a local stack is already running (pid 4242, {API}); `picflow local down` stops it\n"
    )
    assert read_state(path) == local_state(pid=4242)


def test_local_up_refuses_the_same_port_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert (
        main(
            [
                "local",
                "up",
                "--api-port",
                "4000",
                "--moto-port",
                "4000",
                "--state-file",
                str(tmp_path / "s.json"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err == "picflow: --api-port and --moto-port both ask for port 4000\n"


def test_pid_alive_is_false_for_a_reaped_child(gone_pid: int):
    assert not state_module.pid_alive(gone_pid)


def test_pid_alive_judges_a_live_process_by_its_command_line():
    # A pid reused by some other program is not taken for the stack.
    sleep = "import sys; print('up', flush=True); sys.stdin.read()"
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    other = subprocess.Popen([sys.executable, "-c", sleep], **pipes)
    ours = subprocess.Popen([sys.executable, "-c", sleep, "picflow"], **pipes)
    try:
        # Until a child has exec'd, its /proc cmdline is still pytest's: wait for each to speak.
        for proc in (other, ours):
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"up\n"
        assert not state_module.pid_alive(other.pid)
        assert state_module.pid_alive(ours.pid)
    finally:
        for proc in (other, ours):
            proc.communicate()


def test_operations_ends_with_the_pipeline_a_batch_can_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["operations"]) == 0

    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("pipeline "))
    assert "cutout (segmentation) -> background (background) -> upscale (redraw)" in line
    assert "batch run pipeline" in line
    assert "    upscale: number (default 1.0; ≥ 1, ≤ 8)" in out
