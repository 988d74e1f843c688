"""A per-provider semaphore on DynamoDB: caps in-flight upstream jobs, leaks nothing forever.

The pattern AWS documents for Step Functions ("Controlling concurrency in distributed
systems"): one item per provider holds the holders; acquiring is a conditional write
that only succeeds while fewer than ``cap`` holders are present. Each holder carries an
expiry, so a crashed or stopped execution that never released its slot loses it at
expiry; acquire prunes expired holders in the same conditional write (optimistic
concurrency on a version counter).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["Acquired", "Semaphore"]


@dataclass(frozen=True)
class Acquired:
    acquired: bool
    holders: int
    cap: int


class Semaphore:
    def __init__(self, table: Table, *, clock: Callable[[], float] = time.time, attempts: int = 5) -> None:
        self._table = table
        self._clock = clock
        self._attempts = attempts

    def _read(self, name: str) -> tuple[dict[str, float], int]:
        item = self._table.get_item(Key={"name": name}, ConsistentRead=True).get("Item") or {}
        raw: Any = item.get("holders") or {}
        return {k: float(v) for k, v in raw.items()}, int(item.get("version", 0))  # type: ignore[arg-type]

    def acquire(self, name: str, holder: str, cap: int, ttl_seconds: float) -> Acquired:
        """Take a slot for ``holder`` (idempotent: a holder that has one keeps it)."""
        from botocore.exceptions import ClientError

        for _ in range(self._attempts):
            holders, version = self._read(name)
            now = self._clock()
            live = {k: v for k, v in holders.items() if v > now}
            if holder not in live and len(live) >= cap:
                return Acquired(False, len(live), cap)
            from decimal import Decimal

            live[holder] = now + ttl_seconds
            try:
                self._table.put_item(
                    Item={
                        "name": name,
                        "holders": {k: Decimal(str(round(v, 3))) for k, v in live.items()},
                        "version": version + 1,
                    },
                    ConditionExpression="attribute_not_exists(#n) OR version = :v",
                    ExpressionAttributeNames={"#n": "name"},
                    ExpressionAttributeValues={":v": version},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue  # someone else wrote in between: read again
                raise
            return Acquired(True, len(live), cap)
        return Acquired(False, cap, cap)

    def release(self, name: str, holder: str) -> bool:
        """Give the slot back; False when ``holder`` held none (already released or expired)."""
        from botocore.exceptions import ClientError

        try:
            self._table.update_item(
                Key={"name": name},
                UpdateExpression="REMOVE holders.#h ADD version :one",
                ConditionExpression="attribute_exists(holders.#h)",
                ExpressionAttributeNames={"#h": holder},
                ExpressionAttributeValues={":one": 1},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def holders(self, name: str) -> dict[str, float]:
        holders, _ = self._read(name)
        now = self._clock()
        return {k: v for k, v in holders.items() if v > now}
