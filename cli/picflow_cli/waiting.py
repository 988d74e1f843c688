"""Waiting on work that moves at the speed of a loaded machine: give up when nothing changes.

A fixed number of seconds for a whole wait fails a slow but healthy run (issue 15, finding 8: the
demo and two e2e tests died at 60 / 120 s under a load average of 15 while their jobs were still
advancing). :class:`Patience` gives up only when the watched *progress mark* (a job's status and
counters, an execution's history length, the stack's Lambda invocations) has not changed for
``stall`` seconds, or after ``cap`` seconds overall (a livelock still ends). Its
:class:`WaitTimeoutError` says so in one line; the demo and the CLI print that line, no traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Patience", "WaitTimeoutError"]

_UNSET = object()


class WaitTimeoutError(TimeoutError):
    """A wait gave up: nothing changed for its ``stall`` seconds, or its ``cap`` passed.

    ``str()`` is one line, ``<what>: <reason>``; ``reason`` alone for a caller's own wording."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: {reason}")
        self.what = what
        self.reason = reason


@dataclass
class Patience:
    """Give up after ``stall`` seconds without progress, or ``cap`` seconds in all.

    Call :meth:`see` with the current progress mark (anything comparable with ``==``) at each
    look; :meth:`check` raises :class:`WaitTimeoutError` once the wait has run out.
    """

    what: str
    stall: float
    cap: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    changed_at: float = field(init=False)
    _mark: object = field(init=False, default=_UNSET)

    def __post_init__(self) -> None:
        if self.stall <= 0 or self.cap <= 0:
            raise ValueError("stall and cap must be positive")
        self.started = self.changed_at = self.clock()

    def see(self, mark: object) -> None:
        """Record the current progress mark; a different one than last time restarts the stall clock."""
        if mark != self._mark:
            self._mark = mark
            self.changed_at = self.clock()

    def remaining(self) -> float:
        """Seconds until the wait runs out if nothing changes (0 once it has)."""
        now = self.clock()
        return max(0.0, min(self.changed_at + self.stall, self.started + self.cap) - now)

    def check(self) -> None:
        """Raise WaitTimeoutError once the wait has run out (one line, what and why)."""
        now = self.clock()
        waited = now - self.started
        if now - self.changed_at >= self.stall:
            raise WaitTimeoutError(
                self.what, f"nothing changed for {self.stall:g} s (gave up after {waited:.0f} s)"
            )
        if waited >= self.cap:
            raise WaitTimeoutError(self.what, f"still going after the {self.cap:g} s cap")
