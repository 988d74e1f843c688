"""``picflow batch run|status|stop|pause|resume`` without a stack: arguments, and the commands against an
in-memory fake of the ``/batches`` routes (httpx.MockTransport)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow_cli.batch import BatchSource, batch_line, parse_source
from picflow_cli.client import BatchView
from picflow_cli.errors import UsageError
from picflow_cli.main import build_parser, main

API = "http://api.test/v1"
KEY = "test-key"


pytestmark = pytest.mark.usefixtures("no_ambient_cli_config")


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("picflow_cli.batch.time.sleep", lambda seconds: None)


@dataclass
class FakeBatches:
    """POST /uploads, S3's presigned PUT and the /batches routes, with the API's error shape.

    A batch moves one item along per GET; ``failing`` items end FAILED; ``final`` is the
    execution's status once every item is done."""

    total: int = 3
    failing: int = 0
    final: str = "SUCCEEDED"
    requests: list[httpx.Request] = field(default_factory=list)
    puts: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whether batches have ended (pause refuses, resume accepts) or still run.
    ended: bool = False

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def posted(self, path: str) -> list[dict[str, Any]]:
        return [
            json.loads(r.content) for r in self.requests if r.method == "POST" and r.url.path == f"/v1{path}"
        ]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "s3.test":
            self.puts[request.url.path] = request.content
            return httpx.Response(200)
        assert request.headers["x-api-key"] == KEY
        path = request.url.path.removeprefix("/v1")
        if request.method == "POST" and path == "/uploads":
            body = json.loads(request.content)
            return httpx.Response(
                201,
                json={
                    "upload_id": "0" * 32,
                    "key": f"uploads/{'0' * 32}/{body['filename']}",
                    "url": f"http://s3.test/in/uploads/{body['filename']}",
                    "method": "PUT",
                    "headers": {"Content-Type": body["content_type"]},
                    "expires_in": 900,
                },
            )
        if request.method == "POST" and path == "/batches":
            body = json.loads(request.content)
            if body["operation"] == "nope":
                return error(422, "ParamValidationError", "unknown operation 'nope'", "operation", "a name")
            batch_id = f"batch-{len(self.batches)}"
            self.batches[batch_id] = {"body": body, "gets": 0, "key": request.headers["idempotency-key"]}
            created = {
                "batch_id": batch_id,
                "status": "RUNNING",
                "created": True,
                "total": self.total,
                "max_concurrency": 4,
                "links": {},
            }
            return httpx.Response(202, json=created)
        batch_id, _, action = path.removeprefix("/batches/").partition("/")
        if batch_id not in self.batches:
            return error(404, "NotFound", f"no batch {batch_id}", "batch_id", "an existing batch")
        if request.method == "POST" and action in ("pause", "resume"):
            return self.pause(batch_id) if action == "pause" else self.resume(batch_id)
        if request.method == "GET":
            return httpx.Response(200, json=self.view(batch_id))
        if request.method == "DELETE":
            return error(409, "BatchFinal", f"batch {batch_id} is already SUCCEEDED", "batch_id", "running")
        return error(404, "NotFound", "no route")

    def pause(self, batch_id: str) -> httpx.Response:
        if self.ended:
            return error(409, "BatchFinal", f"batch {batch_id} is already SUCCEEDED", "batch_id", "running")
        paused = {
            "batch_id": batch_id,
            "status": "RUNNING",
            "paused": True,
            "paused_at": "2026-01-01T00:00:00Z",
        }
        return httpx.Response(200, json=paused | {"note": "Items that had not started end CANCELLED."})

    def resume(self, batch_id: str) -> httpx.Response:
        if not self.ended:
            return error(409, "BatchRunning", f"batch {batch_id} is still running", "batch_id", "ended")
        created = {
            "batch_id": f"{batch_id}-r1",
            "status": "RUNNING",
            "created": True,
            "total": 2,
            "max_concurrency": 4,
            "resumed_from": batch_id,
            "links": {},
        }
        return httpx.Response(202, json=created)

    def view(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        done = min(self.total, batch["gets"])
        batch["gets"] += 1
        failed = min(done, self.failing)
        finished = done == self.total
        return {
            "batch_id": batch_id,
            "status": self.final if finished else "RUNNING",
            "operation": batch["body"]["operation"],
            "params": batch["body"]["params"],
            "source": {k: batch["body"][k] for k in ("prefix", "manifest") if k in batch["body"]},
            "total": self.total,
            "counts": {
                "SUCCEEDED": done - failed,
                "FAILED": failed,
                "RUNNING": 0 if finished else 1,
                "NOT_STARTED": self.total - done - (0 if finished else 1),
            },
            "done": done,
            "progress": done / self.total,
            "reused": 1 if done else 0,
            "cost": {"units": max(0, done - failed - 1), "unit": "hdredraw.call"},
            "max_concurrency": 4,
            "tolerated_failure_percentage": batch["body"].get("tolerated_failure_percentage", 5),
            "results_key": f"batches/{batch_id}/results.jsonl" if finished else None,
            "results_bucket": "out-bucket" if finished else None,
            "results_url": "http://s3.test/out/results.jsonl?X-Amz-Signature=x" if finished else None,
            "error": {"type": "TooManyItemsFailed", "message": "2 of 3 items failed"}
            if self.final == "FAILED"
            else None,
            "links": {},
        }


def error(
    status: int, kind: str, message: str, field: str | None = None, rule: str | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": kind, "message": message, "field": field, "rule": rule}}
    )


def cli(capsys: pytest.CaptureFixture[str], api: FakeBatches, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--api-url", API, "--api-key", KEY], http=api.client())
    out, err = capsys.readouterr()
    return code, out, err


# --- arguments -------------------------------------------------------------------------------


def test_parser_batch_run_defaults():
    args = build_parser().parse_args(["batch", "run", "remove_fabric", "--prefix", "s3://in/catalogue/"])
    assert (args.operation, args.prefix, args.manifest) == ("remove_fabric", "s3://in/catalogue/", None)
    assert (args.tolerated_failure_percent, args.max_concurrency, args.reuse, args.wait) == (
        None,
        None,
        True,
        True,
    )
    assert args.param == []


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "run", "remove_fabric"],  # no source
        ["batch", "run", "remove_fabric", "--prefix", "s3://in/a/", "--manifest", "m.csv"],  # two sources
        ["batch", "run", "remove_fabric", "--prefix", "s3://in/a/", "--tolerated-failure-percent", "101"],
        ["batch", "run", "remove_fabric", "--prefix", "s3://in/a/", "--tolerated-failure-percent", "lots"],
        ["batch", "run", "remove_fabric", "--prefix", "s3://in/a/", "--max-concurrency", "0"],
        ["batch", "status"],
        ["batch"],
    ],
)
def test_parser_bad_batch_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_parse_source_prefix_and_s3_manifest_become_keys():
    assert parse_source("s3://in/catalogue/", None, "in") == BatchSource(prefix="catalogue/")
    assert parse_source(None, "s3://in/lists/items.jsonl", None) == BatchSource(
        manifest_key="lists/items.jsonl"
    )


def test_parse_source_local_manifest_file(tmp_path: Path):
    manifest = tmp_path / "items.CSV"
    manifest.write_text("key\na.png\n")
    assert parse_source(None, str(manifest)) == BatchSource(manifest_file=manifest)


@pytest.mark.parametrize(
    ("prefix", "manifest", "message"),
    [
        ("catalogue/", None, "expected s3://<input bucket>/<prefix>"),
        ("s3://in", None, "expected s3://<input bucket>/<prefix>"),
        ("s3://other/catalogue/", None, "only the stack's input bucket (in)"),
        (None, "s3://in/", "expected s3://<input bucket>/<manifest>"),
        (None, "missing.csv", "no such file"),
        (None, None, "exactly one of"),
    ],
)
def test_parse_source_refusals_name_the_flag(prefix: str | None, manifest: str | None, message: str):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_source(prefix, manifest, "in")


def test_parse_source_refuses_a_manifest_of_another_type(tmp_path: Path):
    manifest = tmp_path / "items.txt"
    manifest.write_text("a.png\n")
    with pytest.raises(UsageError, match=r"expected a \.csv, \.jsonl, \.ndjson file"):
        parse_source(None, str(manifest))


# --- the commands ----------------------------------------------------------------------------


def test_batch_run_uploads_a_local_manifest_then_follows_to_the_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    # GIVEN a local CSV manifest; WHEN batch run starts it with params and a tolerance
    api = FakeBatches(total=3, failing=1)
    manifest = tmp_path / "items.csv"
    manifest.write_text('key,params\na.png,\nb.png,"{""color_count"": 8}"\n')
    code, out, err = cli(
        capsys,
        api,
        *("batch", "run", "vectorize", "--manifest", str(manifest), "-p", "color_count=5"),
        *("--tolerated-failure-percent", "40", "--idempotency-key", "cat-1", "--no-reuse"),
    )

    # THEN the file went up as a CSV upload and the batch names its key
    assert (code, err) == (0, "")
    assert api.posted("/uploads") == [{"filename": "items.csv", "content_type": "text/csv"}]
    assert api.puts == {"/in/uploads/items.csv": manifest.read_bytes()}
    assert api.posted("/batches") == [
        {
            "operation": "vectorize",
            "params": {"color_count": 5},
            "reuse": False,
            "manifest": f"uploads/{'0' * 32}/items.csv",
            "tolerated_failure_percentage": 40.0,
        }
    ]
    assert api.batches["batch-0"]["key"] == "cat-1"
    # AND (not a terminal) one line per change of progress, then the summary
    lines = out.splitlines()
    assert [line.split()[4] for line in lines[:-2]] == ["0/3", "1/3", "2/3", "3/3"]
    assert "failed 1" in lines[-3]
    assert lines[-2] == (
        "batch-0: SUCCEEDED, 3 item(s): 2 succeeded, 1 failed or cancelled; 1 reused (not paid again); "
        "cost 1 hdredraw.call"
    )
    assert lines[-1] == "results: s3://out-bucket/batches/batch-0/results.jsonl"


def test_batch_run_prefix_as_json_prints_only_the_final_view(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=2)
    code, out, _ = cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--json")
    assert code == 0
    view = json.loads(out)
    assert (view["status"], view["done"], view["source"]) == ("SUCCEEDED", 2, {"prefix": "cat/"})
    assert api.posted("/uploads") == []


def test_batch_run_that_fails_exits_1_with_the_batch_error(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=3, failing=2, final="FAILED")
    code, out, err = cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/")
    assert code == 1
    assert "batch-0: FAILED, 3 item(s): 1 succeeded, 2 failed" in out
    assert err == "picflow: batch batch-0 ended FAILED: TooManyItemsFailed: 2 of 3 items failed\n"


def test_batch_run_timeout_says_how_to_follow(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=1000)
    code, _, err = cli(
        capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--timeout", "0.000001"
    )
    assert code == 1
    assert "still running (0/1000 done): still going after the 1e-06 s cap" in err
    assert "picflow batch status batch-0" in err


def test_batch_run_no_wait_prints_the_id(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=7)
    code, out, _ = cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")
    assert code == 0
    assert out == "batch-0  RUNNING  7 item(s)\nfollow with `picflow batch status batch-0`\n"
    assert not any(r.method == "GET" for r in api.requests)


def test_batch_run_api_refusal_is_one_line(capsys: pytest.CaptureFixture[str]):
    code, out, err = cli(capsys, FakeBatches(), "batch", "run", "nope", "--prefix", "s3://in/cat/")
    assert (code, out) == (2, "")
    assert (
        err == "picflow: unknown operation 'nope' (HTTP 422 ParamValidationError; operation must be a name)\n"
    )


def test_batch_status_json_and_human(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=1)
    cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")

    code, out, _ = cli(capsys, api, "batch", "status", "batch-0", "--json")
    assert code == 0
    assert json.loads(out)["batch_id"] == "batch-0"
    code, out, _ = cli(capsys, api, "batch", "status", "batch-0")
    assert "status       SUCCEEDED" in out
    assert "results      s3://out-bucket/batches/batch-0/results.jsonl" in out
    assert "X-Amz-Signature" not in out  # the presigned URL only with --json

    code, _, err = cli(capsys, api, "batch", "status", "batch-9")
    assert code == 2
    assert err.startswith("picflow: no batch batch-9 (HTTP 404 NotFound")


def test_batch_stop_of_a_finished_batch_is_the_apis_409_and_not_retried(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=1)
    cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")
    code, out, err = cli(capsys, api, "batch", "stop", "batch-0")
    assert (code, out) == (2, "")
    assert "(HTTP 409 BatchFinal" in err
    assert sum(r.method == "DELETE" for r in api.requests) == 1


def test_batch_pause_says_when_and_how_to_resume(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=3)
    cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")

    code, out, err = cli(capsys, api, "batch", "pause", "batch-0")

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "batch-0: paused at 2026-01-01T00:00:00Z (batch RUNNING)",
        "note: Items that had not started end CANCELLED.",
        "once it has ended: `picflow batch resume batch-0`",
    ]
    (request,) = [r for r in api.requests if r.url.path.endswith("/pause")]
    assert (request.method, request.url.path) == ("POST", "/v1/batches/batch-0/pause")
    code, out, _ = cli(capsys, api, "batch", "pause", "batch-0", "--json")
    assert json.loads(out)["paused"] is True


def test_batch_pause_of_an_ended_batch_is_the_apis_409(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=1, ended=True)
    cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")
    code, out, err = cli(capsys, api, "batch", "pause", "batch-0")
    assert (code, out) == (2, "")
    assert "(HTTP 409 BatchFinal" in err


def test_batch_resume_names_the_new_batch_and_refuses_a_running_one(capsys: pytest.CaptureFixture[str]):
    api = FakeBatches(total=3)
    cli(capsys, api, "batch", "run", "remove_fabric", "--prefix", "s3://in/cat/", "--no-wait")

    code, out, err = cli(capsys, api, "batch", "resume", "batch-0")
    assert (code, out) == (2, "")
    assert err.startswith("picflow: batch batch-0 is still running (HTTP 409 BatchRunning")

    api.ended = True
    code, out, err = cli(capsys, api, "batch", "resume", "batch-0")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "batch-0: started batch-0-r1 (2 item(s) that did not succeed)",
        "follow with `picflow batch status batch-0-r1`",
    ]
    code, out, _ = cli(capsys, api, "batch", "resume", "batch-0", "--json")
    assert json.loads(out)["resumed_from"] == "batch-0"


def test_batch_status_of_a_paused_resume_shows_both(capsys: pytest.CaptureFixture[str]):
    from picflow_cli.batch import print_batch

    out = io.StringIO()
    print_batch(
        _view() | {"paused": True, "paused_at": "2026-01-01T00:00:00Z", "resumed_from": "batch-w"}, out
    )
    lines = out.getvalue().splitlines()
    assert "paused       at 2026-01-01T00:00:00Z (items not started end CANCELLED, BatchPaused)" in lines
    assert "resumes      batch-w" in lines


def test_batch_line_on_a_terminal_carries_the_time():
    view = _view()
    line = batch_line(view, elapsed=3.25)
    assert line.startswith("batch-x  RUNNING    [##########..........]  50.0%  2/4")
    assert "succeeded 1, failed 1, running 2" in line
    assert line.endswith("reused 0  cost 1 taskpic.call     3.2s")


def test_batch_run_on_a_terminal_redraws_one_line():
    from picflow_cli.batch import run_batch
    from picflow_cli.client import Endpoint, PicflowClient

    api = FakeBatches(total=2)
    out = io.StringIO()
    with PicflowClient(Endpoint(API, KEY, "--api-url"), http=api.client()) as client:
        code = run_batch(client, "remove_fabric", BatchSource(prefix="cat/"), params={}, stdout=out, tty=True)
    assert code == 0
    progress = out.getvalue().split("\n")[0]  # splitlines would also split at \r
    assert progress.count("\r\x1b[2K") == 3  # 0/2, 1/2, 2/2 on one line


def _view() -> BatchView:
    return {
        "batch_id": "batch-x",
        "status": "RUNNING",
        "operation": "segmentation",
        "params": {},
        "source": {"prefix": "cat/"},
        "total": 4,
        "counts": {"SUCCEEDED": 1, "FAILED": 1, "RUNNING": 2, "QUEUED": 0, "CANCELLED": 0, "NOT_STARTED": 0},
        "done": 2,
        "progress": 0.5,
        "reused": 0,
        "cost": {"units": 1, "unit": "taskpic.call"},
        "max_concurrency": 8,
        "tolerated_failure_percentage": 5.0,
        "links": {},
    }
