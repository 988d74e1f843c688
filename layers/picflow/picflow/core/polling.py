"""The polling schedule, as maths: when to read an upstream task's status next.

The guarantee (``tests/unit/test_polling.py`` proves it with hypothesis, rounding included):
after the first status read, every wait is at most

    bound(elapsed) = max(POLL_MIN_DELAY, the provider's status cache, POLL_RATIO x elapsed)

where ``elapsed`` is the time from the submit to the read the wait follows. A task that ends
after the first read, at T, ends inside some gap between two reads, and that gap started before T,
so it is noticed within max(2 s, cache, 10 % of T), whatever the history says. The provider's
status cache is its spec's ``poll_floor`` (HD redraw caches status for 3 s: reading faster buys
nothing). :func:`scaled` truncates to whole seconds (never rounds up past the bound).

History decides only where the first read lands (:func:`first_wait`): a low quantile
(FIRST_QUANTILE) of the operation's recent task durations (:mod:`picflow.aws.durations`, the
last KEEP), estimated by a log-normal fit: the mean and standard deviation of the logs, and the
lower limit of the one-sided prediction interval for one more task, mu + t x s x sqrt(1 + 1/n)
(Student's t, n - 1 degrees of freedom), with s at least HISTORY_MIN_SIGMA (durations learned
from polls are known to a few % only). So about 99 % of tasks end after the first read, and a
task that ends before it costs only that one early read. Without enough history the first read
comes at the provider's floor and the bound holds from the start.

Every wait is a Wait state of the state machine (data a step hands back): a Lambda never sleeps
while polling. :func:`scaled` applies ``PICFLOW_WAIT_SCALE`` (0 in tests: moto's Wait really sleeps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from picflow.core import config

if TYPE_CHECKING:
    from picflow.core.catalogue import Provider

__all__ = [
    "CALLBACK_MIN_WINDOW",
    "CALLBACK_QUANTILE",
    "CALLBACK_SLACK",
    "FIRST_QUANTILE",
    "HISTORY_MIN_SAMPLES",
    "HISTORY_MIN_SIGMA",
    "POLL_CEILING",
    "POLL_INTERPOLATE",
    "POLL_MIN_DELAY",
    "POLL_RATIO",
    "POLL_SHRINK",
    "SLOT_WAIT",
    "SUBMIT_GRACE",
    "callback_window",
    "delay_bound",
    "duration_quantile",
    "first_wait",
    "next_wait",
    "scaled",
    "task_duration",
]

POLL_MIN_DELAY = 2.0
POLL_RATIO = 0.1
# No wait is longer than this, whatever the elapsed time (a wait only ever shortens the delay).
POLL_CEILING = 120.0
# The first read comes at this quantile of the operation's recent durations.
FIRST_QUANTILE = 0.01
# Fewer samples than this say too little: the first read comes at the provider's floor.
HISTORY_MIN_SAMPLES = 5
# The spread assumed at least (log scale): a polled duration is known to within about 5 %.
HISTORY_MIN_SIGMA = 0.05
# Where in the last gap between reads a polled task is taken to have ended (task_duration):
# past the middle would let a task at the quick end of the gap be noticed too late.
POLL_INTERPOLATE = 0.5
# When the very first read already saw the task done, it took at most that long; this fraction
# of it is learned, so history that has grown stale (the operation got faster) moves down.
POLL_SHRINK = 0.5
# A callback that has not come by CALLBACK_SLACK x this quantile of the operation's durations is
# taken as lost: the job polls from there (a late callback finds it polling, which sees the task).
CALLBACK_QUANTILE = 0.95
CALLBACK_SLACK = 1.2
CALLBACK_MIN_WINDOW = 5  # seconds: room for the provider's call itself to arrive
# Seconds between two tries for a provider slot (AcquireSlot), or after a throttled submit.
SLOT_WAIT = 2.0
# Longer than an operation function may run (its Timeout in template.yaml, 90 s): a submit still
# without a task this long after Check first looked for one has ended.
SUBMIT_GRACE = 120.0


def scaled(seconds: float) -> int:
    """A wait as the state machine's Wait gets it: whole seconds (truncated: never past the
    schedule's bound), times ``PICFLOW_WAIT_SCALE``."""
    return max(0, math.floor(seconds * config.env_float(config.WAIT_SCALE, 1.0)))


def _floor(provider: Provider) -> float:
    # The catalogue where it is used: the Slot, Finalize and Notify functions never load it.
    from picflow.core.catalogue import SPECS

    return SPECS[provider].poll_floor


def delay_bound(provider: Provider, elapsed: float) -> float:
    """The longest a task that ends at ``elapsed`` after the submit may go unnoticed (after the
    first read): max(2 s, the provider's status cache, 10 % of ``elapsed``)."""
    return max(POLL_MIN_DELAY, _floor(provider), POLL_RATIO * elapsed)


def next_wait(provider: Provider, elapsed: float, progress: int | None) -> float:
    """Seconds until the next status check (unscaled), after a read ``elapsed`` s past the submit:
    at most :func:`delay_bound` of ``elapsed``, never under the provider's floor."""
    floor = _floor(provider)
    wait = max(floor, min(POLL_CEILING, delay_bound(provider, max(0.0, elapsed))))
    if progress and 0 < progress < 100 and elapsed > 0:
        # The provider's progress gives a direct estimate of the time left.
        remaining = elapsed * (100 - progress) / progress
        wait = min(wait, max(floor, remaining))
    return wait


def duration_quantile(recent: Sequence[float], quantile: float = FIRST_QUANTILE) -> float | None:
    """The ``quantile`` of the next task's duration from a log-normal fit of ``recent`` (a
    prediction limit, see the module docstring), or None with fewer than HISTORY_MIN_SAMPLES."""
    logs = [math.log(s) for s in recent if s > 0 and math.isfinite(s)]
    n = len(logs)
    if n < max(2, HISTORY_MIN_SAMPLES):
        return None
    mu = sum(logs) / n
    sigma = max(HISTORY_MIN_SIGMA, math.sqrt(sum((x - mu) ** 2 for x in logs) / (n - 1)))
    z = NormalDist().inv_cdf(quantile)
    # Student's t quantile, n - 1 degrees of freedom (Cornish-Fisher: within 4 % from 4 on).
    dof = n - 1
    t = z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
    return math.exp(mu + t * sigma * math.sqrt(1 + 1 / n))


def first_wait(provider: Provider, recent: Sequence[float]) -> float:
    """Seconds from submit to the first status check (unscaled), from recent task durations."""
    floor = _floor(provider)
    low = duration_quantile(recent)
    return floor if low is None else max(floor, low)


def callback_window(provider: Provider, recent: Sequence[float], configured: int) -> int:
    """Seconds a callback job waits for the provider's call before it polls (the wait's
    heartbeat, counted from when the provider took the task). The fallback's first read (after
    SeedPoll's first wait) lands at CALLBACK_SLACK x the operation's CALLBACK_QUANTILE duration
    (a log-normal prediction limit), so a lost callback is noticed within about twice its p95.
    At least CALLBACK_MIN_WINDOW; the configured window without enough history, and never more."""
    high = duration_quantile(recent, CALLBACK_QUANTILE)
    if high is None:
        return configured
    window = math.ceil(CALLBACK_SLACK * high - first_wait(provider, recent))
    return min(configured, max(CALLBACK_MIN_WINDOW, window))


def task_duration(poll: Mapping[str, Any], since_submit: float) -> float | None:
    """How long the upstream task took (what the history learns), or None when nothing can be said.

    Polled: it ended between the last read that saw it running and the read that saw it done;
    the figure is POLL_INTERPOLATE of the way into that gap (the gap is at most 10 %, so the
    figure is within 5 %). When the very first read already saw it done, the task took at most
    that long: POLL_SHRINK of it is learned, so a history that overestimates comes down. Called
    back: the provider called as it finished, so the time since submit is close to exact.
    """
    if "elapsed" not in poll:
        return since_submit
    upper_read = float(poll["elapsed"])
    lower = float(poll.get("last_pending") or 0.0)
    if lower <= 0:
        return round(POLL_SHRINK * upper_read, 3) if upper_read > 0 else None
    upper = max(lower, upper_read)
    return round(lower + POLL_INTERPOLATE * (upper - lower), 3)
