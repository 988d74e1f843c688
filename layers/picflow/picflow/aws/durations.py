"""How long each operation's upstream tasks have been taking: the first poll is timed by it.

Polling blind has a floor on its cost: to notice a task within max(2 s, 10 %) of its end,
a schedule that knows nothing must start reading early and often. An operation's tasks take
similar times, so the first status check waits until just past the quickest of its recent
tasks; from there the ordinary schedule takes over. The history is a handful of numbers
per operation in the coordination table (the one that also holds the provider slots);
lost or stale history only costs a few more polls, never a missed result.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["KEEP", "DurationHistory", "DynamoDurationHistory", "MemoryDurationHistory"]

KEEP = 3  # few, so a change in an operation's speed is learned within a few jobs


class DurationHistory(Protocol):
    def recent(self, operation: str) -> list[float]: ...

    def record(self, operation: str, seconds: float) -> None: ...


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
