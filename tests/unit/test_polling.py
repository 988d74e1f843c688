"""picflow.core.polling: the schedule's delay bound (proved over random durations and histories,
with the production rounding), the first read from history, and what a finished poll teaches."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from picflow.core import config
from picflow.core.catalogue import SPECS, Provider
from picflow.core.polling import (
    CALLBACK_MIN_WINDOW,
    FIRST_QUANTILE,
    HISTORY_MIN_SAMPLES,
    POLL_CEILING,
    callback_window,
    delay_bound,
    duration_quantile,
    first_wait,
    next_wait,
    scaled,
    task_duration,
)

ELAPSED = st.floats(0, 7 * 86400, allow_nan=False)
PROGRESS = st.one_of(st.none(), st.integers(-5, 105))
PROVIDERS = st.sampled_from(list(Provider))
DURATIONS = st.floats(0.01, 3 * 86400, allow_nan=False)
HISTORIES = st.lists(st.floats(0.001, 10 * 86400, allow_nan=False), max_size=40)


@pytest.fixture(autouse=True)
def _real_seconds(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Waits as production gets them: whole seconds, unscaled.
    monkeypatch.setenv(config.WAIT_SCALE, "1")
    return


def _reads(
    provider: Provider, duration: float, recent: Sequence[float], progress: Sequence[int | None] = ()
) -> tuple[float, float, float]:
    """A task of ``duration`` s polled by the production schedule, rounding included:
    (first read, last read that saw it running or 0, the read that saw it done)."""
    now = float(scaled(first_wait(provider, recent)))
    first, pending = now, 0.0
    while now < duration:
        pending = now
        seen = progress[len(progress) and int(now) % len(progress)] if progress else None
        wait = scaled(next_wait(provider, now, seen))
        assert wait >= 1
        now += wait
    return first, pending, now


# --- the guarantee -------------------------------------------------------------------------


@settings(deadline=None, max_examples=400)
@given(
    provider=PROVIDERS,
    duration=DURATIONS,
    recent=HISTORIES,
    progress=st.lists(PROGRESS, max_size=5),
)
def test_a_task_ending_after_the_first_read_is_seen_within_max_2s_cache_10_percent_whatever_the_history(
    provider: Provider, duration: float, recent: list[float], progress: list[int | None]
) -> None:
    first, _, seen = _reads(provider, duration, recent, progress)
    if duration > first:
        bound = max(2.0, SPECS[provider].poll_floor, 0.1 * duration)
        assert seen - duration <= bound
        assert bound == delay_bound(provider, duration)


@settings(deadline=None, max_examples=200)
@given(provider=PROVIDERS, duration=DURATIONS)
def test_without_history_every_task_is_seen_within_the_bound(provider: Provider, duration: float) -> None:
    _, _, seen = _reads(provider, duration, [])
    assert seen - duration <= delay_bound(provider, duration)


@settings(deadline=None)
@given(provider=PROVIDERS, elapsed=ELAPSED, progress=PROGRESS)
def test_each_wait_as_the_wait_state_gets_it_is_within_the_bound_of_the_read_it_follows(
    provider: Provider, elapsed: float, progress: int | None
) -> None:
    wait = scaled(next_wait(provider, elapsed, progress))
    assert SPECS[provider].poll_floor <= wait <= delay_bound(provider, elapsed)
    assert wait <= POLL_CEILING


def test_scaled_truncates_where_rounding_would_pass_the_bound() -> None:
    # 10 % of 29.5 s is 2.95 s: a 3 s wait would let a task ending just after the read go 3 s unseen.
    assert scaled(next_wait(Provider.TASKPIC, 29.5, None)) == 2
    assert scaled(2.999) == 2


def test_scaled_applies_the_wait_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.WAIT_SCALE, "0")
    assert scaled(300.0) == 0
    monkeypatch.setenv(config.WAIT_SCALE, "0.5")
    assert scaled(9.0) == 4


def test_next_wait_hd_redraw_never_polls_faster_than_its_3_second_status_cache() -> None:
    assert next_wait(Provider.HDREDRAW, 0, None) == 3.0
    assert next_wait(Provider.HDREDRAW, 100, 99) == 3.0
    assert next_wait(Provider.TASKPIC, 0, None) == 2.0


def test_next_wait_grows_with_the_elapsed_time_then_caps() -> None:
    assert next_wait(Provider.TASKPIC, 100, None) == pytest.approx(10.0)
    assert next_wait(Provider.TASKPIC, 600, None) == pytest.approx(60.0)
    assert next_wait(Provider.TASKPIC, 10_000, None) == POLL_CEILING


def test_next_wait_near_completion_progress_shortens_the_wait() -> None:
    # 95 % after 100 s: about 5 s left, sooner than the 10 s the elapsed time alone allows.
    assert next_wait(Provider.HDREDRAW, 100, 95) == pytest.approx(100 * 5 / 95)


@pytest.mark.parametrize("progress", [None, 0, 100, 10])
def test_next_wait_progress_without_information_or_far_from_done_changes_nothing(
    progress: int | None,
) -> None:
    assert next_wait(Provider.TASKPIC, 100, progress) == pytest.approx(10.0)


@settings(deadline=None)
@given(a=ELAPSED, b=ELAPSED)
def test_next_wait_without_progress_never_shrinks_as_time_passes(a: float, b: float) -> None:
    early, late = sorted((a, b))
    assert next_wait(Provider.HDREDRAW, early, None) <= next_wait(Provider.HDREDRAW, late, None)


# --- the first read, from history ----------------------------------------------------------


def test_first_wait_without_enough_history_is_the_floor() -> None:
    assert first_wait(Provider.HDREDRAW, []) == 3.0
    assert first_wait(Provider.TASKPIC, [100.0] * (HISTORY_MIN_SAMPLES - 1)) == 1.0
    assert first_wait(Provider.HDREDRAW, [0.5] * 20) == 3.0  # never under the floor


def test_first_wait_of_identical_durations_comes_a_little_before_them() -> None:
    # No spread seen: the assumed minimum (5 %) still reads first before the usual end.
    wait = first_wait(Provider.TASKPIC, [100.0] * 20)
    assert 85.0 < wait < 95.0


@pytest.mark.parametrize("sigma", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("n", [HISTORY_MIN_SAMPLES, 20])
def test_first_read_comes_before_all_but_about_one_percent_of_tasks(sigma: float, n: int) -> None:
    # GIVEN histories of n log-normal durations and one more task from the same distribution
    rng = random.Random(17)
    trials, early = 4000, 0
    for _ in range(trials):
        recent = [100 * rng.lognormvariate(0, sigma) for _ in range(n)]
        low = duration_quantile(recent)
        assert low is not None
        early += 100 * rng.lognormvariate(0, sigma) < low
    # THEN the prediction limit holds: about FIRST_QUANTILE of tasks end before the first read
    assert early / trials <= 2 * FIRST_QUANTILE


def test_first_read_of_a_history_that_grew_stale_comes_back_within_a_few_jobs() -> None:
    # GIVEN an operation whose tasks took 600 s, now 60 s: the first read lands far too late
    recent = [600.0] * 20
    jobs = 0
    while jobs < 15:
        jobs += 1
        first, pending, seen = _reads(Provider.TASKPIC, 60.0, recent)
        if first < 60.0:
            break
        learned = task_duration({"elapsed": seen, "last_pending": pending}, seen)
        assert learned is not None
        recent = [*recent, learned][-20:]
    # THEN what those first reads teach (half of what they saw) brings it back before the end
    assert first < 60.0
    assert jobs <= 6


# --- the callback window -------------------------------------------------------------------


def test_callback_window_without_history_is_the_configured_one() -> None:
    assert callback_window(Provider.TASKPIC, [], 600) == 600
    assert callback_window(Provider.TASKPIC, [30.0] * (HISTORY_MIN_SAMPLES - 1), 600) == 600


@pytest.mark.parametrize("sigma", [0.0, 0.2, 0.5])
@pytest.mark.parametrize("median", [5.0, 30.0, 120.0])
def test_a_lost_callback_is_polled_for_before_twice_the_p95_duration(sigma: float, median: float) -> None:
    # GIVEN a history of 20 log-normal durations of median `median`
    rng = random.Random(15)
    p95 = median * math.exp(1.645 * sigma)
    late = 0
    for _ in range(200):
        recent = [median * rng.lognormvariate(0, sigma) for _ in range(20)]
        # WHEN the callback never comes: the heartbeat ends, SeedPoll waits the first wait
        first_read = callback_window(Provider.TASKPIC, recent, 3600) + scaled(
            first_wait(Provider.TASKPIC, recent)
        )
        late += first_read > 2 * p95
    # THEN the fallback's first read comes before twice the p95 (all but a few histories)
    assert late <= 10


def test_callback_window_is_never_longer_than_configured_nor_under_the_minimum() -> None:
    assert callback_window(Provider.TASKPIC, [5000.0] * 20, 600) == 600
    assert callback_window(Provider.TASKPIC, [0.5] * 20, 600) == CALLBACK_MIN_WINDOW


# --- task_duration -------------------------------------------------------------------------


def test_task_duration_is_the_middle_of_the_last_gap_between_reads() -> None:
    # Running at 9 s, done at 12 s: it ended in between; the middle is the unbiased guess.
    assert task_duration({"elapsed": 12.0, "last_pending": 9.0}, 12.5) == 10.5
    assert task_duration({"elapsed": 9.0, "last_pending": 9.0}, 9.5) == 9.0
    assert task_duration({}, 42.0) == 42.0  # a callback: as it finished


def test_task_duration_when_the_first_read_saw_it_done_is_half_of_that_read() -> None:
    assert task_duration({"elapsed": 6.0, "last_pending": 0.0}, 6.5) == 3.0
    assert task_duration({"elapsed": 0.0}, 0.5) is None


def test_duration_quantile_ignores_what_cannot_be_a_duration() -> None:
    assert duration_quantile([0.0, -1.0, math.inf, 5.0, 5.0]) is None
