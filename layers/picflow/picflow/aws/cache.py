"""The content-addressed result cache: the same image through the same operation and params is paid once.

A job's results are a function of (input bytes, operation, validated params), so the key is
``sha256(operation, sha256(input), canonical params JSON[, tenant])``: per tenant (the default
tenant's keys are those from before tenants), so one tenant never reuses, or waits as a twin
for, a result another tenant paid for; canonical means the params as the
catalogue validated them (defaults filled in, so ``{}`` and ``{"output_type": 2}`` are one key),
serialised with sorted keys and no spaces. The interaction style (sync/poll/callback) is not
part of the key: it changes how the result is fetched, not what it is.

Validate looks the key up (a hit only when every stored output still exists); a hit copies the
earlier outputs under the new job's prefix and the job ends SUCCEEDED with ``reused: true``
without taking a provider slot or calling the provider. Collect writes the entry after a
job's results are safely stored. Entries live in a table of their own (ResultCacheTable):
the jobs table is listed by scan (``GET /jobs``) and would show them as jobs, and an entry's
lifetime follows the outputs it points at, not the job record's.

Two identical jobs started at the same moment would both miss and both pay, so a miss is
claimed: Validate writes a pending entry naming its job (``claim``), conditionally. A second
job that finds a live claim waits for the first (a Wait/Twin loop in the state machine) and
reuses its results; if the owner fails or is cancelled its claim is released (``release``), and
a claim its owner never resolved expires, so a waiting twin then claims and pays itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.core import config
from picflow.core.names import DEFAULT_TENANT

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["ResultCache", "cache_key", "canonical_params"]


def canonical_params(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(operation: str, input_sha256: str, params: Mapping[str, Any], tenant: str | None = None) -> str:
    material = f"{operation}\n{input_sha256}\n{canonical_params(params)}"
    if tenant and tenant != DEFAULT_TENANT:
        material += f"\n{tenant}"
    return hashlib.sha256(material.encode()).hexdigest()


class ResultCache:
    """One item per key: the job that produced the results and where they are."""

    def __init__(self, table: Table | None = None) -> None:
        if table is None:
            from picflow.net import sdk

            table = sdk.session().resource("dynamodb").Table(config.env(config.RESULT_CACHE_TABLE))
        self._table = table

    def get(self, key: str) -> dict[str, Any] | None:
        from picflow.aws.jobs import from_dynamo

        item = self._table.get_item(Key={"cache_key": key}).get("Item")
        return None if item is None else from_dynamo(item)

    def claim(
        self, key: str, owner: str, seconds: float, *, stale: str | None = None
    ) -> dict[str, Any] | None:
        """Take ``key`` for ``owner`` for ``seconds``: None when taken, else the entry in the way.

        Succeeds over nothing, an expired claim, the owner's own claim (a retried Validate), or
        the finished entry stored at ``stale`` (the caller found its outputs gone). Never over
        any other finished entry: an identical job may have finished between the caller's
        lookup and this write, and overwriting its results would pay for them again.
        """
        from botocore.exceptions import ClientError

        now = time.time()
        condition = "attribute_not_exists(cache_key) OR pending_until < :now OR pending_owner = :me"
        values: dict[str, Any] = {":now": _decimal(now), ":me": owner}
        if stale is not None:
            condition += " OR stored_at = :stale"
            values[":stale"] = stale
        try:
            self._table.put_item(
                Item={
                    "cache_key": key,
                    "pending_owner": owner,
                    "claimed_at": _decimal(now),
                    "pending_until": _decimal(now + seconds),
                    "ttl": int(now + seconds) + 86400,
                },
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Someone else's live claim, or (a rare race) an entry finished or released
            # between the condition and this read: the caller decides.
            return self.get(key) or {}
        return None

    def release(self, key: str, owner: str) -> bool:
        """Drop ``owner``'s claim (its job failed or was cancelled) so a waiting twin goes on."""
        from botocore.exceptions import ClientError

        try:
            self._table.delete_item(
                Key={"cache_key": key},
                ConditionExpression="pending_owner = :me",
                ExpressionAttributeValues={":me": owner},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Last writer wins: any successful job's results are as good as another's."""
        from picflow.aws.jobs import now_iso, to_dynamo

        ttl_days = config.env_int(config.JOB_TTL_DAYS, 30)
        item = {**entry, "cache_key": key, "stored_at": now_iso(), "ttl": int(time.time()) + ttl_days * 86400}
        self._table.put_item(Item=to_dynamo(item))


def _decimal(value: float) -> Any:
    from decimal import Decimal

    return Decimal(str(round(value, 3)))
