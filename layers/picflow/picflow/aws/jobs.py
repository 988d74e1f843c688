"""The jobs table: one item per job, written only through :class:`JobStore`.

Status moves QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED. Final states are never
left again (conditional writes), so a late duplicate step cannot resurrect a job.

The submit guard is what keeps a retry from paying twice: before a paid call the step
claims ``submit_marker`` (conditional on there being no task yet); a call that provably
never reached the provider releases it; a task id replaces it. A retry that finds the
marker still set cannot know whether the provider got the first call, so it refuses with
:class:`OutcomeUnknownError` instead of paying again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from picflow.core import config
from picflow.core.errors import OutcomeUnknownError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["FINAL", "JobStatus", "JobStore", "SubmitClaim", "from_dynamo", "now_iso", "to_dynamo"]


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def now_iso(clock: float | None = None) -> str:
    t = time.time() if clock is None else clock
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB has no float); containers recurse."""
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


def from_dynamo(value: Any) -> Any:
    """Decimals back to int/float so records are JSON-able."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


@dataclass(frozen=True)
class SubmitClaim:
    """Result of claiming the right to make the paid submit call."""

    task_id: str | None  # set when an earlier attempt already submitted: reuse it, pay nothing


class JobStore:
    def __init__(self, table: Table | None = None) -> None:
        if table is None:
            from picflow.net import sdk

            table = sdk.session().resource("dynamodb").Table(config.env(config.JOBS_TABLE))
        self._table = table

    @property
    def table(self) -> Table:
        return self._table

    # --- create / read ------------------------------------------------------------

    def create(self, job: Mapping[str, Any]) -> bool:
        """Put a new job; False when a job with that id exists already (a duplicate start)."""
        from botocore.exceptions import ClientError

        ttl_days = config.env_int(config.JOB_TTL_DAYS, 30)
        item = {
            "status": JobStatus.QUEUED.value,
            "created_at": now_iso(),
            "ttl": int(time.time()) + ttl_days * 86400,
            "polls": 0,
            **job,
        }
        item["updated_at"] = item["created_at"]
        try:
            self._table.put_item(Item=to_dynamo(item), ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return None if item is None else from_dynamo(item)

    def list(
        self,
        *,
        status: str | None = None,
        operation: str | None = None,
        since: str | None = None,
        limit: int = 50,
        cursor: Mapping[str, Any] | None = None,
        tenant: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Newest first, by the status or operation index (or a scan when neither is given);
        ``tenant``: only its jobs (records without a tenant are the default tenant's). A filter,
        so a page may hold fewer than ``limit`` jobs while the cursor goes on."""
        from boto3.dynamodb.conditions import Attr, Key

        from picflow.core.names import DEFAULT_TENANT

        kwargs: dict[str, Any] = {"Limit": limit}
        filters: list[Any] = []
        if tenant is not None:
            mine = Attr("tenant").eq(tenant)
            filters.append(mine | Attr("tenant").not_exists() if tenant == DEFAULT_TENANT else mine)
        if cursor:
            kwargs["ExclusiveStartKey"] = cursor
        if status or operation:
            index, attr, value = (
                ("by_status", "status", status) if status else ("by_operation", "operation", operation)
            )
            cond: Any = Key(attr).eq(value)
            if since:
                cond = cond & Key("created_at").gte(since)
            kwargs |= {"IndexName": index, "KeyConditionExpression": cond, "ScanIndexForward": False}
            if status and operation:
                filters.append(Attr("operation").eq(operation))
        elif since:
            filters.append(Attr("created_at").gte(since))
        if filters:
            condition = filters[0]
            for more in filters[1:]:
                condition = condition & more
            kwargs["FilterExpression"] = condition
        page = self._table.query(**kwargs) if status or operation else self._table.scan(**kwargs)
        items = [from_dynamo(i) for i in page.get("Items", [])]
        if not (status or operation):
            items.sort(key=lambda i: i.get("created_at", ""), reverse=True)
        return items, page.get("LastEvaluatedKey")

    # --- transitions --------------------------------------------------------------

    def update(
        self, job_id: str, fields: Mapping[str, Any], *, allow_final: bool = False
    ) -> dict[str, Any] | None:
        """Set ``fields``; refuses (returns None) once the job is final unless ``allow_final``."""
        from botocore.exceptions import ClientError

        values = {**fields, "updated_at": now_iso()}
        names = {f"#f{i}": k for i, k in enumerate(values)}
        exprs = {f":v{i}": to_dynamo(v) for i, v in enumerate(values.values())}
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(values)))
        condition = "attribute_exists(job_id)"
        if not allow_final:
            names["#st"] = "status"
            exprs |= {f":final{i}": s.value for i, s in enumerate(sorted(FINAL))}
            condition += " AND NOT #st IN (" + ", ".join(f":final{i}" for i in range(len(FINAL))) + ")"
        try:
            out = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=f"SET {sets}",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=exprs,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise
        attributes: dict[str, Any] = from_dynamo(out["Attributes"])
        return attributes

    def add_polls(self, job_id: str, progress: int | None) -> int:
        values: dict[str, Any] = {":one": 1, ":now": now_iso()}
        expr = "ADD polls :one SET updated_at = :now"
        if progress is not None:
            expr += ", progress = :p"
            values[":p"] = progress
        out = self._table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=expr,
            ExpressionAttributeValues=values,
            ReturnValues="UPDATED_NEW",
        )
        return int(str(out["Attributes"]["polls"]))

    # --- the submit guard ---------------------------------------------------------

    def claim_submit(self, job_id: str) -> SubmitClaim:
        """Claim the one paid submit of a job, or learn the task an earlier attempt made."""
        from botocore.exceptions import ClientError

        marker = uuid.uuid4().hex
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET submit_marker = :m, updated_at = :now",
                ConditionExpression="attribute_exists(job_id) AND attribute_not_exists(provider_task_id) "
                "AND attribute_not_exists(submit_marker)",
                ExpressionAttributeValues={":m": marker, ":now": now_iso()},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            job = self.get(job_id) or {}
            if job.get("provider_task_id"):
                return SubmitClaim(task_id=str(job["provider_task_id"]))
            raise OutcomeUnknownError(
                "an earlier submit attempt for this job may have reached the provider; not paying again",
                code="SubmitInDoubt",
            ) from None
        return SubmitClaim(task_id=None)

    def release_submit(self, job_id: str) -> None:
        """The claimed call provably never reached the provider: a retry may submit."""
        self._table.update_item(Key={"job_id": job_id}, UpdateExpression="REMOVE submit_marker")

    def record_submitted(self, job_id: str, task_id: str, fields: Mapping[str, Any]) -> None:
        self.update(job_id, {**fields, "provider_task_id": task_id, "status": JobStatus.RUNNING.value})

    def iter_all(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        while True:
            page = self._table.scan(**kwargs)
            yield from (from_dynamo(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
