"""How long each operation's upstream tasks have been taking: the first poll is timed by it.

The history is the last KEEP durations per operation in the coordination table (the one that
also holds the provider slots), as Collect learns them (:func:`picflow.core.polling.task_duration`),
and the same per operation and parameters: a job's ``params_key`` (Validate's
:meth:`picflow.core.params.Params.duration_key`, a hash of the params that can change how long
the provider takes) keys a history of its own. Validate reads that one when it holds at least
HISTORY_MIN_SAMPLES durations, else the operation's (:func:`recent_for`); Collect records into
both (:func:`record_for`).
:func:`picflow.core.polling.first_wait` fits a log-normal to them and reads first at their 1 %
quantile. History decides only where the first read lands: after it the schedule's delay bound
holds whatever the history said, so lost or stale history costs polls, never a late result
(and a first read that already sees the task done teaches a shorter duration).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = [
    "KEEP",
    "DurationHistory",
    "DynamoDurationHistory",
    "MemoryDurationHistory",
    "history_key",
    "recent_for",
    "record_for",
]

# Enough for a spread (a log-normal fit, a prediction limit), few enough that a change in an
# operation's speed is learned within a few dozen jobs.
KEEP = 20


class DurationHistory(Protocol):
    """The last KEEP durations under a history key (an operation, or :func:`history_key`)."""

    def recent(self, operation: str) -> list[float]: ...

    def record(self, operation: str, seconds: float) -> None: ...


def history_key(operation: str, params_key: str | None) -> str:
    """The history of ``operation`` run with the params ``params_key`` names (the operation's own
    when there is no key: its params cannot change the duration)."""
    return f"{operation}#{params_key}" if params_key else operation


def recent_for(history: DurationHistory, operation: str, params_key: str | None) -> list[float]:
    """The durations a job's first wait is placed by: those of its operation and params once there
    are enough to fit (HISTORY_MIN_SAMPLES), else the operation's (a new setting starts from what
    the operation takes rather than blind)."""
    from picflow.core.polling import HISTORY_MIN_SAMPLES

    if params_key:
        specific = history.recent(history_key(operation, params_key))
        if len(specific) >= HISTORY_MIN_SAMPLES:
            return specific
    return history.recent(operation)


def record_for(history: DurationHistory, operation: str, params_key: str | None, seconds: float) -> None:
    """Record a task's duration in its operation's history and in its operation-and-params one."""
    history.record(operation, seconds)
    if params_key:
        history.record(history_key(operation, params_key), seconds)


class DynamoDurationHistory:
    def __init__(self, table: Table) -> None:
        self._table = table

    def recent(self, operation: str) -> list[float]:
        item = self._table.get_item(Key={"name": f"durations#{operation}"}).get("Item") or {}
        raw = item.get("durations") or []
        return [float(str(v)) for v in raw] if isinstance(raw, list) else []

    def record(self, operation: str, seconds: float) -> None:
        # Read-modify-write without a condition: two jobs finishing together may drop one
        # sample, which a statistic of recent durations can afford.
        kept = [*self.recent(operation), seconds][-KEEP:]
        self._table.put_item(
            Item={"name": f"durations#{operation}", "durations": [Decimal(str(round(v, 3))) for v in kept]}
        )


class MemoryDurationHistory:
    """For tests and benchmarks."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def recent(self, operation: str) -> list[float]:
        return list(self.samples.get(operation, []))

    def record(self, operation: str, seconds: float) -> None:
        self.samples[operation] = [*self.samples.get(operation, []), seconds][-KEEP:]
