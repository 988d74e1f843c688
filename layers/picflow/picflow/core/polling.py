"""The polling schedule, as maths: when to read an upstream task's status next.

bench/polling.py measures it. A task that ends at t should be noticed within max(2 s, 10 % of
t): after a read at t the next comes at most that much later (times POLL_MARGIN), and never
sooner than the provider's floor (its spec's ``poll_floor``: HD redraw caches status for 3 s, so
polling faster buys nothing) nor later than POLL_CEILING (long tasks are noticed sooner than by a
fixed 30 s poll). The first read waits for what the operation's recent tasks took
(:mod:`picflow.aws.durations`), so short and long tasks alike cost a few reads.

Every wait is a Wait state of the state machine (data a step hands back): a Lambda never sleeps
while polling. :func:`scaled` applies ``PICFLOW_WAIT_SCALE`` (0 in tests: moto's Wait really sleeps).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.core import config

if TYPE_CHECKING:
    from picflow.core.catalogue import Provider

__all__ = [
    "POLL_CEILING",
    "POLL_INTERPOLATE",
    "POLL_MARGIN",
    "POLL_MIN_DELAY",
    "POLL_RATIO",
    "POLL_SPREAD",
    "SLOT_WAIT",
    "SUBMIT_GRACE",
    "first_wait",
    "next_wait",
    "scaled",
    "task_duration",
]

POLL_MIN_DELAY = 2.0
POLL_RATIO = 0.1
POLL_MARGIN = 0.95
POLL_CEILING = 15.0
POLL_SPREAD = 0.9
# Where in the last gap between reads a polled task is taken to have ended (task_duration):
# past the middle would let a task at the quick end of the gap be noticed too late.
POLL_INTERPOLATE = 0.5
# Seconds between two tries for a provider slot (AcquireSlot), or after a throttled submit.
SLOT_WAIT = 2.0
# Longer than an operation function may run (its Timeout in template.yaml, 90 s): a submit still
# without a task this long after Check first looked for one has ended.
SUBMIT_GRACE = 120.0


def scaled(seconds: float) -> int:
    """A wait as the state machine's Wait gets it: whole seconds, times ``PICFLOW_WAIT_SCALE``."""
    return max(0, round(seconds * config.env_float(config.WAIT_SCALE, 1.0)))


def _floor(provider: Provider) -> float:
    # The catalogue where it is used: the Slot, Finalize and Notify functions never load it.
    from picflow.core.catalogue import SPECS

    return SPECS[provider].poll_floor


def _allowed_delay(elapsed: float) -> float:
    return POLL_MARGIN * max(POLL_MIN_DELAY, POLL_RATIO * elapsed)


def next_wait(provider: Provider, elapsed: float, progress: int | None) -> float:
    """Seconds until the next status check (unscaled)."""
    floor = _floor(provider)
    wait = max(floor, min(POLL_CEILING, _allowed_delay(elapsed)))
    if progress and 0 < progress < 100 and elapsed > 0:
        # The provider's progress gives a direct estimate of the time left.
        remaining = elapsed * (100 - progress) / progress
        wait = min(wait, max(floor, remaining))
    return wait


def first_wait(provider: Provider, recent: list[float]) -> float:
    """Seconds from submit to the first status check (unscaled), from recent task durations."""
    floor = _floor(provider)
    if not recent:
        return floor
    # Allow for a task somewhat quicker than any seen, and read just past it.
    quickest = POLL_SPREAD * min(recent)
    return max(floor, quickest + min(POLL_CEILING, _allowed_delay(quickest)))


def task_duration(poll: Mapping[str, Any], since_submit: float) -> float | None:
    """How long the upstream task took, or None when nothing can be said.

    Polled: it ended between the last read that saw it running and the read that saw it done;
    the figure is POLL_INTERPOLATE of the way into that gap. The bare lower bound would be
    safe but wastes reads: a blind first job reads at 1, 3, 5 s and would teach "3 s" for a
    5 s task. When the very first read already saw it done there is no gap, and nothing is
    learned. Called back: the provider called as it finished, so the time since submit is
    close to exact.
    """
    if "elapsed" not in poll:
        return since_submit
    lower = float(poll.get("last_pending") or 0.0)
    if lower <= 0:
        return None
    upper = max(lower, float(poll["elapsed"]))
    return round(lower + POLL_INTERPOLATE * (upper - lower), 3)
