"""The job's deadline, one rule for every loop of the job workflow (statemachine/job.asl.json).

Every cycle of the job state machine (the throttled submit, the slot wait, the twin wait, the
callback's throttled resubmit, the poll loop, and the Retry of each of their states) runs one of
the steps that call :func:`enforce_deadline`: once the job's ``deadline_at`` has passed the step
raises :class:`~picflow.core.errors.DeadlineExceededError` and the job ends FAILED through the
Catch (its slot released, nothing paid). ``tests/unit/test_deadline_asl.py`` walks the ASL graph
and proves every cycle passes such a step. Waits are cut at the deadline (:func:`wait_within`),
so a long Retry-After does not carry a job far past it; the state machine's ``TimeoutSeconds`` is
only a backstop.

The slot wait backs off (:func:`slot_backoff`): a provider that stays full is asked less often.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from picflow.core.errors import DeadlineExceededError

__all__ = ["SLOT_WAIT_CAP", "enforce_deadline", "slot_backoff", "wait_within"]

# The slot wait doubles from polling.SLOT_WAIT up to this many seconds.
SLOT_WAIT_CAP = 30.0


def enforce_deadline(meta: Mapping[str, Any], now: float, *, waiting_for: str) -> None:
    """Raise DeadlineExceededError once the job's deadline (``$.job.deadline_at``) has passed."""
    deadline = float(meta["deadline_at"])
    if now >= deadline:
        raise DeadlineExceededError(
            f"the job reached its deadline while {waiting_for} ({now - deadline:.0f} s past it)",
            code="Deadline",
        )


def wait_within(meta: Mapping[str, Any], now: float, seconds: int) -> int:
    """A Wait state's ``seconds`` (already scaled), but no later than just past the deadline: the
    step after the wait then ends the job."""
    left = float(meta["deadline_at"]) - now
    return max(0, min(seconds, math.floor(left) + 1))


def slot_backoff(tries: int, first: float) -> float:
    """Seconds before the ``tries``-th next try for a provider slot: doubling, capped."""
    return min(SLOT_WAIT_CAP, first * 2.0 ** min(max(tries, 0), 16))
