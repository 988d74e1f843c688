"""The content-addressed result cache: the same image through the same operation and params is paid once.

A job's results are a function of (input bytes, operation, validated params), so the key is
``sha256(operation, sha256(input), canonical params JSON)``; canonical means the params as the
catalogue validated them (defaults filled in, so ``{}`` and ``{"output_type": 2}`` are one key),
serialised with sorted keys and no spaces. The interaction style (sync/poll/callback) is not
part of the key: it changes how the result is fetched, not what it is.

Validate looks the key up (a hit only when every stored output still exists); a hit copies the
earlier outputs under the new job's prefix and the job ends SUCCEEDED with ``reused: true``
without taking a provider slot or calling the provider. Collect writes the entry after a
job's results are safely stored. Entries live in a table of their own (ResultCacheTable):
the jobs table is listed by scan (``GET /jobs``) and would show them as jobs, and an entry's
lifetime follows the outputs it points at, not the job record's.

Two identical items started at the same moment both miss and both pay: the cache saves
re-runs, it is not a lock.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow import config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table

__all__ = ["ResultCache", "cache_key", "canonical_params"]


def canonical_params(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(operation: str, input_sha256: str, params: Mapping[str, Any]) -> str:
    material = f"{operation}\n{input_sha256}\n{canonical_params(params)}"
    return hashlib.sha256(material.encode()).hexdigest()


class ResultCache:
    """One item per key: the job that produced the results and where they are."""

    def __init__(self, table: Table | None = None) -> None:
        if table is None:
            import boto3

            table = boto3.resource("dynamodb").Table(config.env(config.RESULT_CACHE_TABLE))
        self._table = table

    def get(self, key: str) -> dict[str, Any] | None:
        from picflow.jobs import from_dynamo

        item = self._table.get_item(Key={"cache_key": key}).get("Item")
        return None if item is None else from_dynamo(item)

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        """Last writer wins: any successful job's results are as good as another's."""
        from picflow.jobs import now_iso, to_dynamo

        ttl_days = config.env_int(config.JOB_TTL_DAYS, 30)
        item = {**entry, "cache_key": key, "stored_at": now_iso(), "ttl": int(time.time()) + ttl_days * 86400}
        self._table.put_item(Item=to_dynamo(item))
