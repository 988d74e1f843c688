"""picflow.aws.durations: the recent task durations that time an operation's first poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from picflow.aws.durations import (
    KEEP,
    DynamoDurationHistory,
    MemoryDurationHistory,
    history_key,
    recent_for,
    record_for,
)
from picflow.aws.jobs import JobStore
from picflow.aws.semaphore import Semaphore
from picflow.aws.services import Services
from picflow.core.catalogue import Provider, validate_params
from picflow.core.polling import HISTORY_MIN_SAMPLES, first_wait, scaled
from picflow.job.validate import validate


@pytest.mark.parametrize("history_kind", ["dynamo", "memory"])
def test_history_keeps_the_last_few_durations_per_operation(semaphore_table: Any, history_kind: str) -> None:
    history = DynamoDurationHistory(semaphore_table) if history_kind == "dynamo" else MemoryDurationHistory()
    assert history.recent("redraw") == []
    seconds = [40.0 + k / 4 for k in range(KEEP + 2)]
    for value in seconds:
        history.record("redraw", value)
    history.record("segmentation", 3.0)
    assert history.recent("redraw") == seconds[-KEEP:]
    assert history.recent("segmentation") == [3.0]


def test_history_shares_the_table_with_the_provider_slots_without_touching_them(semaphore_table: Any) -> None:
    slots = Semaphore(semaphore_table)
    assert slots.acquire("hdredraw", "job-1", 4, 60).acquired
    DynamoDurationHistory(semaphore_table).record("hdredraw", 12.0)
    assert set(slots.holders("hdredraw")) == {"job-1"}


# --- by operation and params (issue 17: "a low quantile of recent durations of that operation and
# parameters") ---------------------------------------------------------------------------------


def test_record_for_keeps_the_operation_history_and_the_params_history() -> None:
    history = MemoryDurationHistory()
    record_for(history, "redraw", "k4", 80.0)
    record_for(history, "redraw", None, 20.0)
    assert history.recent("redraw") == [80.0, 20.0]  # every job teaches the operation's history
    assert history.recent(history_key("redraw", "k4")) == [80.0]  # and its own params' history


def test_recent_for_reads_the_params_history_once_it_has_enough_samples() -> None:
    # GIVEN an operation whose upscale-8 jobs take 4x its upscale-1 jobs
    history = MemoryDurationHistory()
    slow, fast = validate_params("redraw", {"upscale": 8}), validate_params("redraw", {"upscale": 1})
    slow_key, fast_key = slow.duration_key(), fast.duration_key()
    for _ in range(HISTORY_MIN_SAMPLES - 1):
        record_for(history, "redraw", fast_key, 20.0)
        record_for(history, "redraw", slow_key, 80.0)
    # WHEN the slow setting has fewer than HISTORY_MIN_SAMPLES of its own
    # THEN its first wait is placed by the operation's history (both settings mixed)
    assert sorted(recent_for(history, "redraw", slow_key)) == sorted([20.0, 80.0] * (HISTORY_MIN_SAMPLES - 1))
    # WHEN it has HISTORY_MIN_SAMPLES  THEN by its own only
    record_for(history, "redraw", slow_key, 80.0)
    assert recent_for(history, "redraw", slow_key) == [80.0] * HISTORY_MIN_SAMPLES
    assert recent_for(history, "redraw", fast_key) == history.recent("redraw")  # still too few: mixed
    # AND the first read of a slow job lands near the slow tasks, not at the mixed history's low end
    slow_first = first_wait(Provider.HDREDRAW, recent_for(history, "redraw", slow_key))
    mixed_first = first_wait(Provider.HDREDRAW, history.recent("redraw"))
    assert slow_first > 3 * mixed_first


def test_recent_for_without_a_params_key_is_the_operation_history() -> None:
    history = MemoryDurationHistory()
    record_for(history, "face_enhance", None, 9.0)
    assert recent_for(history, "face_enhance", None) == [9.0]


def test_params_history_lives_in_the_coordination_table_beside_the_operation_history(
    semaphore_table: Any,
) -> None:
    history = DynamoDurationHistory(semaphore_table)
    for _ in range(HISTORY_MIN_SAMPLES):
        record_for(history, "redraw", "abc", 33.0)
    assert recent_for(DynamoDurationHistory(semaphore_table), "redraw", "abc") == [33.0] * HISTORY_MIN_SAMPLES
    assert history.recent("redraw") == [33.0] * HISTORY_MIN_SAMPLES


@pytest.mark.parametrize(
    ("operation", "a", "b"),
    [
        ("redraw", {"upscale": 2}, {"upscale": 4}),
        ("background", {"batch_size": 1, "prompt": "x"}, {"batch_size": 4, "prompt": "x"}),
        ("segmentation", {"output_type": 1}, {"output_type": 2}),
        (
            "replace_background",
            {"prompt": "a", "resolution": "1024:1024"},
            {"prompt": "a", "resolution": "1280:720"},
        ),
    ],
)
def test_duration_key_differs_when_a_timed_param_differs(
    operation: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert validate_params(operation, a).duration_key() != validate_params(operation, b).duration_key()


@pytest.mark.parametrize(
    ("operation", "a", "b"),
    [
        # Free text does not split the history job by job; defaults equal explicit values.
        ("redraw", {"prompt": "a cat"}, {"prompt": "a dog", "upscale": 1.0}),
        ("background", {"prompt": "sunset"}, {"prompt": "forest", "batch_size": 2}),
        ("replace_background", {"prompt": "beach", "product": "shoe"}, {"prompt": "snow"}),
        ("edit_image", {"prompt": "x"}, {"prompt": "y", "model_version": "v1"}),
    ],
)
def test_duration_key_ignores_free_text_and_spelled_out_defaults(
    operation: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert validate_params(operation, a).duration_key() == validate_params(operation, b).duration_key()


def test_duration_key_is_none_when_no_param_can_change_the_duration() -> None:
    assert validate_params("face_enhance", {}).duration_key() is None


PNG = (Path(__file__).resolve().parents[2] / "mock_upstream" / "samples" / "image.png").read_bytes()


def test_validate_places_the_first_read_by_the_jobs_params_history(
    jobs_table: Any, semaphore_table: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN segmentation jobs that take 10 s with output_type 1 and 60 s with output_type 2
    monkeypatch.setenv("PICFLOW_OPERATION_FUNCTIONS", "segmentation=op-seg")
    monkeypatch.setenv("PICFLOW_OUTPUT_BUCKET", "outputs")
    s3.create_bucket(Bucket="inputs")
    s3.put_object(Bucket="inputs", Key="uploads/a.png", Body=PNG)
    history = MemoryDurationHistory()
    svc = Services(store=JobStore(jobs_table), s3=s3, semaphore=Semaphore(semaphore_table), durations=history)
    keys = {t: validate_params("segmentation", {"output_type": t}).duration_key() for t in (1, 2)}
    for k in range(8):
        record_for(history, "segmentation", keys[1], 10.0 + k / 10)
        record_for(history, "segmentation", keys[2], 60.0 + k / 10)

    # WHEN Validate decides each job's first wait
    def first(output_type: int) -> dict[str, Any]:
        state = {
            "job_id": f"api-{output_type}",
            "operation": "segmentation",
            "reuse": False,
            "params": {"output_type": output_type},
            "input": {"bucket": "inputs", "key": "uploads/a.png"},
        }
        return dict(validate(state, svc)["job"])  # type: ignore[arg-type]

    slow, fast = first(2), first(1)
    # THEN each names its params' history and reads first where its own tasks end
    assert (slow["params_key"], fast["params_key"]) == (keys[2], keys[1])
    own = history.recent(history_key("segmentation", keys[2]))
    assert slow["first_wait"] == scaled(first_wait(Provider.TASKPIC, own))
    assert 40 < slow["first_wait"] < 60
    assert fast["first_wait"] < 10
