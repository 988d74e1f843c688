"""Pausing a batch: the flag in the coordination table, Validate ending a paused batch's items
before anything is paid, the job and pipeline workflows ending them without failing, and the
items a resume picks (moto: tables built from template.yaml)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.aws.pause import PAUSED_ERROR, pause, paused_at
from picflow.aws.services import Services
from picflow.batch.pipeline import PIPELINE_STEPS
from picflow.batch.plan import resumed_id, unfinished_items
from picflow.core.errors import InternalError
from picflow.core.names import items_key
from picflow.job.finish import job_output
from picflow.job.validate import validate

ROOT = Path(__file__).resolve().parents[2]
JOB_ASL = json.loads((ROOT / "statemachine" / "job.asl.json").read_text())
PIPELINE_ASL = json.loads((ROOT / "statemachine" / "pipeline.asl.json").read_text())


class _Untouchable:
    """A collaborator a paused item must never reach (slot, result cache, provider, image)."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a paused item touched the {self.what} ({name})")


@contextlib.contextmanager
def _touches_the_input_image() -> Iterator[None]:
    """Validate went on to read the image (the step types the fake's refusal as InternalError)."""
    with pytest.raises(InternalError) as caught:
        yield
    assert "input image" in str(caught.value.__cause__)


def _get_items(table: Any) -> list[str]:
    """The coordination table's GetItem calls, from here on."""
    asked: list[str] = []
    table.meta.client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: asked.append(params["Key"]["name"])
    )
    return asked


def _job(job_id: str, batch_id: str, **more: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "batch_id": batch_id,
        "operation": "face_enhance",
        "params": {},
        "input": {"bucket": "in", "key": "never-read.png"},
        "source": "batch",
        **more,
    }


# --- the flag ----------------------------------------------------------------------------


def test_pause_writes_the_flag_once_and_a_second_pause_keeps_the_first_time(semaphore_table: Any) -> None:
    assert paused_at(semaphore_table, "b") is None

    first = pause(semaphore_table, "b", "2026-01-01T00:00:00Z")
    again = pause(semaphore_table, "b", "2026-01-01T00:05:00Z")

    assert first == ("2026-01-01T00:00:00Z", True)
    assert again == ("2026-01-01T00:00:00Z", False)
    assert paused_at(semaphore_table, "b") == "2026-01-01T00:00:00Z"
    assert paused_at(semaphore_table, "other") is None  # one flag per batch


@pytest.mark.parametrize(
    ("batch_id", "resumed"),
    [("batch-abc", "batch-abc-r1"), ("batch-abc-r1", "batch-abc-r2"), ("batch-abc-r9", "batch-abc-r10")],
)
def test_resumed_id_numbers_resumes_from_the_first_batch(batch_id: str, resumed: str) -> None:
    assert resumed_id(batch_id) == resumed


# --- Validate ----------------------------------------------------------------------------


@pytest.fixture
def untouchable_svc(jobs_table: Any, semaphore_table: Any) -> Services:
    return Services(
        store=JobStore(jobs_table),
        coordination=semaphore_table,
        s3=_Untouchable("input image"),  # type: ignore[arg-type]
        semaphore=_Untouchable("provider slot"),  # type: ignore[arg-type]
        cache=_Untouchable("result cache"),  # type: ignore[arg-type]
        providers=_Untouchable("provider"),  # type: ignore[arg-type]
    )


def test_validate_of_a_paused_batchs_job_ends_it_cancelled_before_any_slot_claim_or_provider(
    untouchable_svc: Services, semaphore_table: Any
) -> None:
    # GIVEN batch b was paused before its item 3 started
    pause(semaphore_table, "b", "2026-01-01T00:00:00Z")
    asked = _get_items(semaphore_table)

    # WHEN the item's job runs Validate
    out = validate(_job("b-3", "b"), untouchable_svc)

    # THEN it ends there: CANCELLED with a BatchPaused error, after one GetItem, nothing else
    assert out["paused"] is True
    assert out["job_id"] == "b-3"
    assert out["error"]["type"] == PAUSED_ERROR
    assert "b was paused" in out["error"]["message"]
    record = untouchable_svc.store.get("b-3")
    assert record is not None
    assert record["status"] == "CANCELLED"
    assert record["error"] == out["error"]
    assert record["batch_id"] == "b"
    assert not record.get("submitted_at")
    assert asked == ["batch-pause#b"]


def test_validate_reads_the_flag_of_its_own_batch_only(
    untouchable_svc: Services, semaphore_table: Any
) -> None:
    # GIVEN another batch is paused
    pause(semaphore_table, "other", "2026-01-01T00:00:00Z")

    # WHEN a job of batch b runs Validate, THEN it goes on (to read its image, here a refusal)
    with _touches_the_input_image():
        validate(_job("b-1", "b"), untouchable_svc)


def test_a_pipelines_later_step_never_checks_the_flag(
    untouchable_svc: Services, semaphore_table: Any
) -> None:
    # GIVEN batch b paused while an item's pipeline had passed its cutout
    pause(semaphore_table, "b", "2026-01-01T00:00:00Z")
    asked = _get_items(semaphore_table)

    # WHEN its background step validates (the pipeline passes pausable false), THEN it goes on
    with _touches_the_input_image():
        validate(_job("b-1-background", "b", source="pipeline", pausable=False), untouchable_svc)
    assert asked == []


def test_a_job_outside_a_batch_never_reads_a_flag(untouchable_svc: Services, semaphore_table: Any) -> None:
    asked = _get_items(semaphore_table)
    with _touches_the_input_image():
        validate({**_job("api-1", ""), "batch_id": None}, untouchable_svc)
    assert asked == []


# --- the workflows -----------------------------------------------------------------------


def test_job_route_sends_a_paused_item_to_a_pass_that_ends_the_execution_succeeded() -> None:
    states = JOB_ASL["States"]
    # First: the other choices read cache and slot, which a paused item's state does not have.
    assert states["Route"]["Choices"][0] == {"Variable": "$.paused", "IsPresent": True, "Next": "Paused"}
    paused = states["Paused"]
    assert paused["Type"] == "Pass"
    assert paused["End"] is True
    # The batch map reads job_id and reused; a pipeline reads what it chains from, and paused.
    out = paused["Parameters"]
    assert out["job_id.$"] == "$.job_id"
    assert out["paused"] is True
    assert out["reused"] is False
    assert {"output_bucket", "primary_key", "manifest_key"} <= set(out)
    # Every other way a job ends successfully says paused false.
    assert job_output({"job_id": "j", "manifest": {"outputs": []}})["paused"] is False
    lost = states["NoticeLost"]  # a Choice: where this path left the job's result
    for name in [c["Next"] for c in lost["Choices"]] + [lost["Default"]]:
        assert states[name]["Parameters"]["paused"] is False


def test_pipeline_ends_an_item_whose_cutout_a_pause_ended_and_later_steps_never_pause() -> None:
    states = PIPELINE_ASL["States"]
    assert states["Cutout"]["ResultSelector"]["paused.$"] == "$.Output.paused"
    assert states["Cutout"]["Next"] == "Started"
    started = states["Started"]
    assert started["Choices"] == [{"Variable": "$.cutout.paused", "BooleanEquals": True, "Next": "Paused"}]
    assert started["Default"] == "Background"
    assert states["Paused"]["Type"] == "Pass"
    assert states["Paused"]["End"] is True
    # The batch's pipeline map reads the item's last job id from upscale.
    assert states["Paused"]["Parameters"]["upscale.$"] == "$.cutout"
    assert "pausable" not in states["Cutout"]["Parameters"]["Input"]
    for name in ("Background", "Upscale"):
        assert states[name]["Parameters"]["Input"]["pausable"] is False


# --- what a resume runs ------------------------------------------------------------------


@pytest.fixture
def output(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    s3.create_bucket(Bucket="outputs")
    monkeypatch.setenv("PICFLOW_OUTPUT_BUCKET", "outputs")
    return "outputs"


def _batch(s3: Any, table: Any, batch_id: str, total: int, records: list[dict[str, Any]]) -> list[Any]:
    items = [
        {"i": i, "bucket": "in", "key": f"{i}.png", "params": {"color_count": i + 2}} for i in range(total)
    ]
    s3.put_object(Bucket="outputs", Key=items_key(batch_id), Body=json.dumps(items).encode())
    for record in records:
        table.put_item(Item={"batch_id": batch_id, **record})
    return items


def test_unfinished_items_are_every_item_but_those_that_succeeded(
    s3: Any, jobs_table: Any, output: str
) -> None:
    # GIVEN an ended batch: 0 succeeded, 1 paused, 2 failed, 3 cancelled, 4 never started
    paused = {"type": PAUSED_ERROR, "message": "paused"}
    records = [
        {"job_id": "b-0", "status": "SUCCEEDED"},
        {"job_id": "b-1", "status": "CANCELLED", "error": paused},
        {"job_id": "b-2", "status": "FAILED"},
        {"job_id": "b-3", "status": "CANCELLED"},
    ]
    items = _batch(s3, jobs_table, "b", 5, records)

    # THEN a resume runs items 1-4 exactly as planned (same index, input and params)
    assert unfinished_items(s3, jobs_table, {"batch_id": "b"}) == items[1:]


def test_unfinished_items_of_a_pipeline_batch_need_all_three_steps_done(
    s3: Any, jobs_table: Any, output: str
) -> None:
    done = [{"job_id": f"b-0-{s}", "status": "SUCCEEDED"} for s, _ in PIPELINE_STEPS]
    records = [
        *done,
        {"job_id": "b-1-cutout", "status": "SUCCEEDED"},  # stopped between steps
        {"job_id": "b-1-background", "status": "SUCCEEDED"},
        {"job_id": "b-2-cutout", "status": "CANCELLED", "error": {"type": PAUSED_ERROR}},
    ]
    items = _batch(s3, jobs_table, "b", 3, records)

    assert unfinished_items(s3, jobs_table, {"batch_id": "b", "pipeline": True}) == items[1:]
