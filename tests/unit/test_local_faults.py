"""The local stack's AWS faults for chaos runs (picflow_cli.local.faults): S3 503 SlowDown as
botocore reads S3's own, and a crash timer that kills the process mid-handler."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from picflow_cli.local import faults


def test_s3_requests_are_answered_slow_down_and_botocore_retries_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(faults.S3_FAULT_RATE, "1")
    monkeypatch.delenv(faults.FAULTS_EXCEPT, raising=False)
    undo = faults.install_s3_faults()
    assert undo is not None
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url="http://127.0.0.1:9",
            region_name="us-east-1",
            aws_access_key_id="k",
            aws_secret_access_key="s",
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )
        with pytest.raises(ClientError) as caught:
            s3.get_object(Bucket="b", Key="k")
    finally:
        undo()
    error = caught.value.response
    assert error["Error"]["Code"] == "SlowDown"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error["ResponseMetadata"]["RetryAttempts"] >= 2  # retried as S3's own SlowDown


def test_no_rate_no_hook_and_a_spared_function_gets_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.S3_FAULT_RATE, raising=False)
    assert faults.install_s3_faults() is None
    monkeypatch.setenv(faults.S3_FAULT_RATE, "1")
    monkeypatch.setenv(faults.CRASH_RATE, "1")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "trigger")
    monkeypatch.setenv(faults.FAULTS_EXCEPT, "api,trigger")
    assert faults.install_s3_faults() is None
    assert faults.crash_timer() is None


def test_a_crash_timer_kills_the_process_unless_the_handler_returns_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exits: list[int] = []
    fired = threading.Event()

    def fake_exit(code: int) -> Any:
        exits.append(code)
        fired.set()

    monkeypatch.setattr(faults.os, "_exit", fake_exit)
    monkeypatch.setenv(faults.CRASH_RATE, "1")
    monkeypatch.delenv(faults.FAULTS_EXCEPT, raising=False)
    timer = faults.crash_timer()
    assert timer is not None
    assert fired.wait(faults.CRASH_WITHIN + 5)
    assert exits == [1]
    cancelled = faults.crash_timer()
    assert cancelled is not None
    cancelled.cancel()
    monkeypatch.setenv(faults.CRASH_RATE, "0")
    assert faults.crash_timer() is None
