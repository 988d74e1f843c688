"""A batch's pause flag: one item, ``batch-pause#<batch id>``, in the coordination table.

``POST /batches/{id}/pause`` writes it (:func:`pause`); the job workflow's Validate reads it
(:func:`paused_at`, one GetItem) for a job carrying ``batch_id`` before the result cache, the claim
and the slot, so an item not yet started ends CANCELLED with a :data:`PAUSED_ERROR` error without
paying. Read here by the job and batch layers alike, so neither imports the other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["PAUSED_ERROR", "pause", "paused_at"]

# The error type of an item a pause ended before it started (its job record is CANCELLED).
PAUSED_ERROR = "BatchPaused"


def _pause_name(batch_id: str) -> str:
    return f"batch-pause#{batch_id}"


def paused_at(table: Table, batch_id: str) -> str | None:
    """When the batch was paused, or None. Strongly consistent: an item that starts after the
    pause was acknowledged must see it."""
    item = table.get_item(Key={"name": _pause_name(batch_id)}, ConsistentRead=True).get("Item")
    return None if item is None else str(item["paused_at"])


def pause(table: Table, batch_id: str, now: str) -> tuple[str, bool]:
    """Write the batch's pause flag once: (when it was paused, whether this call paused it)."""
    from botocore.exceptions import ClientError

    try:
        table.put_item(
            Item={"name": _pause_name(batch_id), "batch_id": batch_id, "paused_at": now},
            ConditionExpression="attribute_not_exists(#n)",
            ExpressionAttributeNames={"#n": "name"},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return str(paused_at(table, batch_id)), False
    return now, True
