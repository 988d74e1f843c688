"""picflow.aws.durations: the recent task durations that time an operation's first poll."""

from __future__ import annotations

from typing import Any

import pytest
from picflow.aws.durations import KEEP, DynamoDurationHistory, MemoryDurationHistory
from picflow.aws.semaphore import Semaphore


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
