"""picflow.entry.callbacks at the trust boundary: a provider callback is believed only with the
job's secret, and even then a result URL off the provider's result hosts is never handed on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aws_xray_sdk.core  # noqa: F401 - opens its UDP socket on import: here, before sockets are blocked
import pytest
from callback_fakes import FakeServices, verdicts, waiting_job
from picflow.entry.callbacks import CallbackOutcome, handle_callback

SECRET = "per-job-secret-0123456789abcdef"


@pytest.fixture
def svc(jobs_table: Any) -> FakeServices:
    return waiting_job(jobs_table, SECRET, provider_task_id="t-1")


def done(image: str) -> bytes:
    return json.dumps({"status": 200, "data": {"task_id": "t-1", "state": 1, "image": image}}).encode()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/stolen.png", "http://169.254.169.254/latest/", "https://attacker.example/x.png"],
)
def test_callback_result_off_the_providers_hosts_is_refused_and_never_forwarded(
    svc: FakeServices, url: str
) -> None:
    # GIVEN a callback with the right secret whose result is on a host task/pic never uses
    outcome = handle_callback("job-1", SECRET, done(url), svc)
    # THEN it is refused, the execution keeps waiting (and polling), and the job is not done
    assert outcome == CallbackOutcome(422, "unsafe_url")
    assert svc.sfn.calls == []
    assert "callback_received_at" not in (svc.store.get("job-1") or {})
    assert verdicts(svc) == ["unsafe_url"]
    # AND the provider's real result (on a result host) still gets through afterwards
    assert handle_callback("job-1", SECRET, done("https://oss.example/out.png"), svc) == CallbackOutcome(
        200, "accepted"
    )
    ((name, kwargs),) = svc.sfn.calls
    assert name == "send_task_success"
    assert json.loads(kwargs["output"])["results"][0]["url"] == "https://oss.example/out.png"


@dataclass
class LambdaContext:
    function_name: str = "picflow-CallbackFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:picflow-CallbackFunction"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"


def test_callback_handler_counts_rejections_in_a_metric_and_answers_unknown_and_wrong_alike(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "picflow")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    path = Path(__file__).resolve().parents[2] / "functions/callback/app.py"
    spec = importlib.util.spec_from_file_location("functions_callback_app", path)
    assert spec is not None
    assert spec.loader is not None
    handler = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(handler)
    monkeypatch.setattr(handler, "services", lambda: svc)
    before = svc.store.get("job-1")

    answers = [
        handler.lambda_handler(
            {
                "pathParameters": {"job_id": job_id, "secret": secret},
                "body": done("https://oss.example/o.png"),
            },
            LambdaContext(),
        )
        for job_id, secret in (("job-1", "guess"), ("no-such-job", SECRET), ("no-such-job", "guess"))
    ]

    assert [(a["statusCode"], a["body"]) for a in answers] == [(403, '{"verdict": "rejected"}')] * 3
    assert svc.store.get("job-1") == before
    metrics = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "ProviderCallbacks" in line
    ]
    assert [(m["verdict"], m["ProviderCallbacks"]) for m in metrics] == [("rejected", [1.0])] * 3
