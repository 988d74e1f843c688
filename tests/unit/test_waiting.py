"""Waits give up on no progress, not at a fixed length (issue 15, finding 8): picflow_cli.waiting,
and the demo's one-line report of a wait that gave up."""

from __future__ import annotations

import pytest
from picflow_cli import demo
from picflow_cli.waiting import Patience, WaitTimeoutError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_wait_that_keeps_seeing_progress_outlives_its_stall_time() -> None:
    clock = Clock()
    patience = Patience("job j", stall=10, cap=1000, clock=clock)
    for step in range(50):  # 250 s, a change every 5 s
        clock.now += 5
        patience.see(step)
        patience.check()
    assert clock.now == 250


def test_a_wait_without_progress_ends_after_its_stall_time_in_one_line() -> None:
    clock = Clock()
    patience = Patience("job j", stall=10, cap=1000, clock=clock)
    patience.see("RUNNING")
    clock.now = 9.9
    patience.see("RUNNING")
    patience.check()
    assert patience.remaining() == pytest.approx(0.1)
    clock.now = 10
    with pytest.raises(WaitTimeoutError) as caught:
        patience.check()
    assert str(caught.value) == "job j: nothing changed for 10 s (gave up after 10 s)"
    assert caught.value.reason == "nothing changed for 10 s (gave up after 10 s)"
    assert isinstance(caught.value, TimeoutError)


def test_a_wait_that_always_changes_still_ends_at_its_cap() -> None:
    clock = Clock()
    patience = Patience("batch b", stall=10, cap=60, clock=clock)
    for step in range(59):
        clock.now += 1
        patience.see(step)
        patience.check()
    clock.now += 1
    patience.see("new")
    with pytest.raises(WaitTimeoutError, match="still going after the 60 s cap"):
        patience.check()


def test_the_demo_reports_a_wait_that_gave_up_as_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    def stalled(*_: object) -> int:
        raise WaitTimeoutError("execution s-1 still RUNNING", "nothing changed for 60 s (gave up after 61 s)")

    monkeypatch.setattr(demo, "_run", stalled)
    assert demo.run_demo(str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "execution s-1 still RUNNING: nothing changed for 60 s" in err
