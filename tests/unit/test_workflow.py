"""The job steps' pure parts (Validate's payload) and picflow.entry.callbacks; the poll schedule's
tests are tests/unit/test_polling.py.

Callbacks run against a fake Services (tests/unit/callback_fakes.py, shared with
test_callback_trust.py): the real JobStore on moto (table from template.yaml) and a
fake Step Functions client that records SendTaskSuccess/SendTaskFailure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError
from callback_fakes import TOKEN, FakeServices, verdicts, waiting_job
from picflow.core.catalogue import Provider
from picflow.core.errors import (
    DeadlineExceededError,
    OutcomeUnknownError,
    ResultUnavailableError,
    TransientError,
)
from picflow.core.polling import SUBMIT_GRACE
from picflow.core.tasks import Submission
from picflow.entry.callbacks import MAX_LOG, CallbackOutcome, body_of, handle_callback
from picflow.job.check import check
from picflow.job.submit import submit
from picflow.job.validate import state_from_event

# --- state_from_event ----------------------------------------------------------------------


def test_state_from_event_names_the_job_after_the_execution() -> None:
    event = {
        "request": {"operation": "redraw", "params": {}},
        "execution_name": "api-abc",
        "execution_id": "arn:x",
    }
    state = state_from_event(event)
    assert state == {"operation": "redraw", "params": {}, "job_id": "api-abc", "execution_id": "arn:x"}
    assert "job_id" not in event["request"]  # the event itself is left alone


def test_state_from_event_keeps_a_job_id_the_caller_chose() -> None:
    event = {"request": {"job_id": "pipeline-7"}, "execution_name": "other", "execution_id": "arn:y"}
    assert state_from_event(event)["job_id"] == "pipeline-7"


def test_state_from_event_without_request_is_just_the_names() -> None:
    assert state_from_event({"execution_name": "n", "execution_id": "e"}) == {
        "job_id": "n",
        "execution_id": "e",
    }


# --- callbacks -----------------------------------------------------------------------------

SECRET = "s3cr3t-per-job-token-urlsafe"


@pytest.fixture
def svc(jobs_table: Any) -> FakeServices:
    return waiting_job(jobs_table, SECRET, polls=2)


def body(state: int, **data: Any) -> bytes:
    return json.dumps({"status": 200, "data": {"task_id": "t-1", "state": state, **data}}).encode()


DONE = body(1, image="https://oss.example/out.png", mask="https://oss.example/mask.png", progress=100)


def callback(
    svc: FakeServices, raw: bytes = DONE, *, secret: str = SECRET, job_id: str = "job-1"
) -> CallbackOutcome:
    return handle_callback(job_id, secret, raw, svc)


def test_handle_callback_done_sends_task_success_once_with_the_parsed_status(svc: FakeServices) -> None:
    assert callback(svc) == CallbackOutcome(200, "accepted")
    ((name, kwargs),) = svc.sfn.calls
    assert name == "send_task_success"
    assert kwargs["taskToken"] == TOKEN
    output = json.loads(kwargs["output"])
    assert output["state"] == "done"
    assert output["task_id"] == "t-1"
    assert output["polls"] == 2
    assert [(r["kind"], r["url"]) for r in output["results"]] == [
        ("image", "https://oss.example/out.png"),
        ("mask", "https://oss.example/mask.png"),
    ]
    job = svc.store.get("job-1")
    assert job is not None
    assert job["callback_received_at"]
    assert verdicts(svc) == ["accepted"]


def test_handle_callback_wrong_secret_is_403_and_writes_nothing(svc: FakeServices) -> None:
    before = svc.store.get("job-1")
    assert callback(svc, secret="guess") == CallbackOutcome(403, "rejected")
    assert svc.sfn.calls == []
    assert svc.store.get("job-1") == before  # counted by the handler's metric, not on the job


def test_handle_callback_job_without_a_secret_refuses_every_caller(svc: FakeServices) -> None:
    svc.store.create({"job_id": "job-2", "operation": "segmentation", "task_token": TOKEN})
    assert callback(svc, job_id="job-2", secret="") == CallbackOutcome(403, "rejected")
    assert svc.sfn.calls == []


def test_handle_callback_unknown_job_answers_exactly_as_a_wrong_secret(svc: FakeServices) -> None:
    # No oracle: whether job-1 exists cannot be told from the answer.
    assert callback(svc, job_id="nope") == callback(svc, secret="guess") == CallbackOutcome(403, "rejected")
    assert callback(svc, job_id="nope", secret=SECRET) == CallbackOutcome(403, "rejected")
    assert svc.sfn.calls == []
    assert svc.store.get("nope") is None


def test_handle_callback_duplicate_is_409_and_not_forwarded_again(svc: FakeServices) -> None:
    callback(svc)
    assert callback(svc) == CallbackOutcome(409, "duplicate")
    assert len(svc.sfn.calls) == 1
    assert verdicts(svc) == ["accepted", "duplicate"]


def test_handle_callback_for_a_finished_job_is_409(svc: FakeServices) -> None:
    svc.store.update("job-1", {"status": "SUCCEEDED"})
    assert callback(svc) == CallbackOutcome(409, "duplicate")
    assert svc.sfn.calls == []


def test_handle_callback_failed_task_sends_task_failure_and_records_the_error(svc: FakeServices) -> None:
    outcome = callback(svc, body(-5, state_detail="image over 15 MB"))
    assert outcome == CallbackOutcome(200, "accepted")
    ((name, kwargs),) = svc.sfn.calls
    assert name == "send_task_failure"
    assert kwargs["taskToken"] == TOKEN
    assert kwargs["error"] == "UpstreamTaskFailedError"
    assert kwargs["cause"].startswith("-5: ")
    assert len(kwargs["cause"]) <= 256
    error = svc.store.get("job-1")["last_error"]
    assert (error["type"], error["code"], error["provider"]) == ("UpstreamTaskFailedError", -5, "taskpic")


def test_handle_callback_progress_notice_keeps_waiting(svc: FakeServices) -> None:
    assert callback(svc, body(4, progress=40)) == CallbackOutcome(202, "progress")
    assert svc.sfn.calls == []
    assert callback(svc) == CallbackOutcome(200, "accepted")  # the final notice still counts


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"status": 200}', body(1)], ids=["text", "list", "nodata", "noresult"]
)
def test_handle_callback_malformed_body_is_400(svc: FakeServices, raw: bytes) -> None:
    assert callback(svc, raw) == CallbackOutcome(400, "malformed")
    assert svc.sfn.calls == []
    assert verdicts(svc) == ["malformed"]


def test_handle_callback_without_a_waiting_execution_is_accepted_for_polling(svc: FakeServices) -> None:
    svc.store.update("job-1", {"task_token": ""})
    assert callback(svc) == CallbackOutcome(202, "accepted")
    assert svc.sfn.calls == []


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken", "TaskDoesNotExist"])
def test_handle_callback_after_the_wait_timed_out_is_still_accepted(svc: FakeServices, code: str) -> None:
    svc.sfn.error = code
    assert callback(svc) == CallbackOutcome(200, "accepted")


def test_handle_callback_other_step_functions_error_propagates(svc: FakeServices) -> None:
    svc.sfn.error = "ThrottlingException"
    with pytest.raises(ClientError):
        callback(svc)


def test_handle_callback_log_keeps_only_the_latest_attempts(svc: FakeServices) -> None:
    for _ in range(MAX_LOG + 5):
        callback(svc, body(4, progress=40))
    assert verdicts(svc) == ["progress"] * MAX_LOG


def test_handle_callback_background_single_image_is_an_images_result(svc: FakeServices) -> None:
    # The poll path names a background result `images`; the callback path must agree.
    svc.store.update("job-1", {"operation": "background"})
    callback(svc, body(1, image="https://oss.example/bg.png"))
    output = json.loads(svc.sfn.calls[0][1]["output"])
    assert [r["kind"] for r in output["results"]] == ["images"]


@pytest.mark.parametrize(
    ("event", "raw"),
    [
        ({"body": '{"a": 1}'}, b'{"a": 1}'),
        ({"body": "eyJhIjogMX0=", "isBase64Encoded": True}, b'{"a": 1}'),
        ({"body": None}, b""),
        ({}, b""),
    ],
)
def test_body_of_reads_api_gateway_bodies(event: dict[str, Any], raw: bytes) -> None:
    assert body_of(event) == raw


# --- Check before the submit recorded its task ---------------------------------------------


def _waiting_state(deadline_at: float) -> dict[str, Any]:
    job = {"provider": "taskpic", "deadline_at": deadline_at, "max_polls": 200}
    return {"job_id": "job-1", "job": job, "poll": {"state": "pending", "polls": 0, "errors": 0}}


def test_check_before_the_submit_recorded_a_task_waits_without_reading_a_status(svc: FakeServices) -> None:
    # GIVEN the callback wait ran out while a slow submit was still running (no task id yet)
    # WHEN Check runs (FakeServices has no provider clients: reading a status would raise)
    out = check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]

    # THEN it waits for the task instead of polling a made-up id
    assert (out["state"], out["task_id"], out["polls"]) == ("pending", None, 3)


def test_check_still_without_a_task_at_the_deadline_fails_the_job(svc: FakeServices) -> None:
    with pytest.raises(DeadlineExceededError):
        check("segmentation", _waiting_state(deadline_at=1_699_999_999.0), svc)  # type: ignore[arg-type]


def test_check_without_a_task_after_a_submit_in_doubt_fails_with_that_verdict(svc: FakeServices) -> None:
    # GIVEN the slow submit ended after the wait, its answer unreadable (the provider may have billed)
    doubt = {"type": "OutcomeUnknownError", "message": "unreadable answer", "code": "MalformedAnswer"}
    svc.store.update("job-1", {"submit_marker": "m", "last_error": doubt})

    with pytest.raises(OutcomeUnknownError) as caught:
        check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]

    assert (caught.value.message, caught.value.code) == ("unreadable answer", "MalformedAnswer")


@pytest.mark.parametrize(
    ("marker", "error", "code"),
    [(None, TransientError, "NoTask"), ("m", OutcomeUnknownError, "SubmitInDoubt")],
)
def test_check_still_without_a_task_after_the_grace_fails_the_job(
    svc: FakeServices, marker: str | None, error: type[Exception], code: str
) -> None:
    # GIVEN Check first found no task longer ago than any submit can run
    since = 1_700_000_000.0 - SUBMIT_GRACE - 1
    svc.store.update("job-1", {"awaiting_task_since": since, **({"submit_marker": marker} if marker else {})})

    # THEN the submit has ended without a task: paid nothing (released claim) or in doubt (held claim)
    with pytest.raises(error) as caught:
        check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_check_without_a_task_within_the_grace_keeps_waiting(svc: FakeServices) -> None:
    svc.store.update("job-1", {"awaiting_task_since": 1_700_000_000.0 - SUBMIT_GRACE + 5})
    out = check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]
    assert out["state"] == "pending"


def test_submit_retried_after_a_sync_call_paid_fails_as_lost_result_without_paying(svc: FakeServices) -> None:
    # GIVEN a Tencent (sync-only) submit paid, then failed storing its inline result
    svc.store.update("job-1", {"provider_task_id": "req-1"})
    state = {"job_id": "job-1", "params": {"prompt": "snow"}, "job": {"style": "sync", "deadline_at": 1.8e9}}

    # WHEN Step Functions retries the submit (FakeServices has no provider clients: paying would raise)
    with pytest.raises(ResultUnavailableError) as caught:
        submit("replace_background", state, svc=svc)  # type: ignore[arg-type]

    # THEN there is no task to follow: the job fails honestly instead of polling another provider
    assert caught.value.code == "SyncResultLost"


# --- the callback window -------------------------------------------------------------------


@dataclass
class FakeTaskPic:
    """Takes the task (no status: the answer comes by callback) and records what it was sent."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def submit(self, operation: str, params: Any, image: Any, **kwargs: Any) -> Submission:
        self.sent.append({"operation": operation, **kwargs})
        return Submission(provider=Provider.TASKPIC, task_id="t-42")


@dataclass
class FakeRegistry:
    taskpic: FakeTaskPic = field(default_factory=FakeTaskPic)

    def client(self, provider: Provider) -> FakeTaskPic:
        assert provider is Provider.TASKPIC
        return self.taskpic


@dataclass
class FakeS3:
    def generate_presigned_url(self, *args: Any, **kwargs: Any) -> str:
        return "https://in.example/p.jpg?sig"


def _callback_submit(svc: FakeServices, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("PICFLOW_CALLBACK_BASE_URL", "https://api.example/cb")
    svc.providers = FakeRegistry()  # type: ignore[attr-defined]
    svc.s3 = FakeS3()  # type: ignore[attr-defined]
    state = {
        "job_id": "job-1",
        "params": {},
        "input": {"bucket": "in", "key": "p.jpg"},
        "job": {"style": "callback", "first_wait": 2, "deadline_at": 1_700_000_600.0},
    }
    return submit("segmentation", state, task_token=TOKEN, svc=svc)  # type: ignore[arg-type]


def test_a_callback_submit_starts_the_callback_window_once_the_provider_has_the_task(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _callback_submit(svc, monkeypatch)

    # The wait's heartbeat clock restarts after the task is recorded: a slow submit does not
    # eat into the time the provider has to call back.
    assert (out["state"], out["task_id"]) == ("pending", "t-42")
    assert svc.sfn.calls == [("send_task_heartbeat", {"taskToken": TOKEN})]
    job = svc.store.get("job-1")
    assert job is not None
    assert job["provider_task_id"] == "t-42"
    assert job["task_token"] == TOKEN


@pytest.mark.parametrize("code", ["TaskTimedOut", "InvalidToken"])
def test_a_refused_heartbeat_never_fails_a_submit_that_paid(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    # GIVEN the callback arrived first (or the wait ended): Step Functions refuses the heartbeat
    svc.sfn.error = code

    out = _callback_submit(svc, monkeypatch)

    assert out["task_id"] == "t-42"  # the paid task is kept; the job follows it either way
    assert [name for name, _ in svc.sfn.calls] == ["send_task_heartbeat"]


# --- a submit that never sent anything gives its claim back ----------------------------------


@dataclass
class FakeHdRedraw:
    sent: list[str] = field(default_factory=list)

    def submit(self, operation: str, params: Any, image: Any, **kwargs: Any) -> Submission:
        self.sent.append(operation)
        return Submission(provider=Provider.HDREDRAW, task_id="hd-1")


@dataclass
class FlakyInputS3:
    """Answers the first GetObject 503 SlowDown (botocore's retries used up), then the image."""

    failures: int = 1

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "GetObject",
            )
        return {"Body": FakeBody(b"\x89PNG image")}


@dataclass
class FakeBody:
    data: bytes

    def iter_chunks(self, size: int) -> Any:
        yield self.data


def test_an_input_read_failing_before_the_paid_call_frees_the_claim_and_the_retry_pays_once(
    svc: FakeServices,
) -> None:
    # GIVEN an HD redraw job (the image is uploaded) whose first read of the input fails
    hd = FakeHdRedraw()
    svc.providers = type("Registry", (), {"client": lambda self, provider: hd})()  # type: ignore[attr-defined]
    svc.s3 = FlakyInputS3()  # type: ignore[attr-defined]
    state = {
        "job_id": "job-1",
        "params": {},
        "input": {"bucket": "in", "key": "i.png"},
        "job": {"style": "poll", "first_wait": 2, "deadline_at": 1_700_000_600.0},
    }

    # WHEN the submit fails on it, and Step Functions retries the step (TransientError)
    with pytest.raises(TransientError):
        submit("remove_fabric", state, svc=svc)  # type: ignore[arg-type]
    job = svc.store.get("job-1") or {}
    assert "submit_marker" not in job  # nothing was sent: the claim is given back
    out = submit("remove_fabric", state, svc=svc)  # type: ignore[arg-type]

    # THEN the retry submits (it used to refuse as in doubt, OutcomeUnknownError), once
    assert (out["state"], out["task_id"]) == ("pending", "hd-1")
    assert hd.sent == ["remove_fabric"]


# --- callbacks that still bring a paid result (issue 15, finding 4) --------------------------


def test_a_callback_after_the_wait_timed_out_is_kept_and_the_next_check_collects_it(
    svc: FakeServices,
) -> None:
    # GIVEN the job's callback wait has timed out (Step Functions refuses its token): it polls
    svc.store.update("job-1", {"provider_task_id": "t-1"})
    svc.sfn.error = "TaskTimedOut"

    # WHEN the provider's callback comes
    assert callback(svc).verdict == "accepted"

    # THEN the next Check hands its results to Collect without a status read (FakeServices has
    # no provider clients: a read would raise)
    out = check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]
    assert (out["state"], out["task_id"]) == ("done", "t-1")
    assert [r["url"] for r in out["results"]] == [
        "https://oss.example/out.png",
        "https://oss.example/mask.png",
    ]


def test_a_callback_names_the_task_of_a_submit_whose_answer_was_lost(svc: FakeServices) -> None:
    # GIVEN the submit was sent (its claim held) but its answer lost: no task id on the job
    svc.store.update("job-1", {"submit_marker": "m-1", "status": "QUEUED"})

    # WHEN the provider calls back naming the task
    assert callback(svc).verdict == "accepted"

    # THEN the job follows that task, and the waiting execution gets the result
    job = svc.store.get("job-1") or {}
    assert (job["provider_task_id"], job["status"]) == ("t-1", "RUNNING")
    (name, sent), *_ = svc.sfn.calls
    assert name == "send_task_success"
    assert json.loads(sent["output"])["task_id"] == "t-1"


def test_check_waits_for_the_callback_of_a_lost_answer_until_the_deadline_then_fails_with_it(
    svc: FakeServices,
) -> None:
    lost = OutcomeUnknownError("the answer was cut", code="NoAnswer")
    svc.store.update(
        "job-1", {"submit_marker": "m-1", "awaiting_callback": True, "last_error": lost.to_dict()}
    )
    # Before the deadline: wait (no read, no failure), long past the submit's grace
    out = check("segmentation", _waiting_state(deadline_at=1_700_000_000.0 + SUBMIT_GRACE * 3), svc)  # type: ignore[arg-type]
    assert (out["state"], out["task_id"]) == ("pending", None)
    assert out["wait_seconds"] >= 0
    # At the deadline: the submit's own error
    with pytest.raises(OutcomeUnknownError) as caught:
        check("segmentation", _waiting_state(deadline_at=1_700_000_000.0), svc)  # type: ignore[arg-type]
    assert caught.value.code == "NoAnswer"
    assert "no callback named the task by the deadline" in caught.value.message


# --- a polled task/pic job sends its callback URL too (issue 15, finding 4) ------------------


@dataclass
class LosingTaskPic:
    """Takes the task, then the answer is lost on the way back (a paid OutcomeUnknownError)."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def submit(self, operation: str, params: Any, image: Any, **kwargs: Any) -> Submission:
        self.sent.append({"operation": operation, "params": params, **kwargs})
        raise OutcomeUnknownError("the answer was cut", code="NoAnswer")


def _losing_taskpic(svc: FakeServices) -> LosingTaskPic:
    """svc's provider registry answers with a LosingTaskPic (returned), its S3 with a FakeS3."""
    taskpic = LosingTaskPic()
    svc.providers = type("Registry", (), {"client": lambda self, provider: taskpic})()  # type: ignore[attr-defined]
    svc.s3 = FakeS3()  # type: ignore[attr-defined]
    return taskpic


def _poll_state() -> dict[str, Any]:
    return {
        "job_id": "job-1",
        "params": {},
        "input": {"bucket": "in", "key": "p.jpg"},
        "job": {"style": "poll", "first_wait": 2, "deadline_at": 1_700_000_600.0},
    }


def test_a_polled_job_whose_answer_was_lost_waits_for_the_callback_and_collects_it(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN callbacks are configured and a polled task/pic submit whose paid answer is lost
    monkeypatch.setenv("PICFLOW_CALLBACK_BASE_URL", "https://api.example/cb")
    taskpic = _losing_taskpic(svc)

    # WHEN it is submitted: the callback URL went out with it, and the job polls on (no failure)
    out = submit("segmentation", _poll_state(), svc=svc)  # type: ignore[arg-type]
    assert str(taskpic.sent[0]["callback_url"]).startswith("https://api.example/cb/callbacks/job-1/")
    assert (out["state"], out["task_id"]) == ("pending", None)
    assert svc.sfn.calls == []  # a polled job has no token to heartbeat

    # THEN Check waits for the callback (no status read: FakeServices' registry would raise)
    waiting = check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]
    assert (waiting["state"], waiting["task_id"]) == ("pending", None)
    # and once the provider calls back naming the task, the next Check has its results
    secret = str(taskpic.sent[0]["callback_url"]).rsplit("/", 1)[-1]
    assert callback(svc, secret=secret).verdict == "accepted"
    done = check("segmentation", _waiting_state(deadline_at=1_700_000_600.0), svc)  # type: ignore[arg-type]
    assert (done["state"], done["task_id"]) == ("done", "t-1")


def test_submit_hands_the_provider_the_params_validate_checked_as_they_are(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validate checked the params against the model and handed on its dump: Submit does not build
    # the model again (pydantic is ~65 ms of a cold submit), the client sends the values as given.
    from picflow.core.catalogue import CheckedParams

    monkeypatch.delenv("PICFLOW_CALLBACK_BASE_URL", raising=False)
    taskpic = _losing_taskpic(svc)
    state = _poll_state() | {"params": {"output_type": 3, "crop": 0, "format": "png"}}

    with pytest.raises(OutcomeUnknownError):
        submit("segmentation", state, svc=svc)  # type: ignore[arg-type]

    assert [sent["params"] for sent in taskpic.sent] == [
        CheckedParams("segmentation", {"output_type": 3, "crop": 0, "format": "png"})
    ]


def test_a_polled_job_without_callbacks_configured_still_fails_a_lost_answer(
    svc: FakeServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PICFLOW_CALLBACK_BASE_URL", raising=False)
    taskpic = _losing_taskpic(svc)

    with pytest.raises(OutcomeUnknownError):
        submit("segmentation", _poll_state(), svc=svc)  # type: ignore[arg-type]
    assert taskpic.sent[0]["callback_url"] is None  # nothing could name the task
