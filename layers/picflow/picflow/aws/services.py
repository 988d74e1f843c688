"""The services container: every AWS client and table the layer talks to, built lazily once per
container, replaceable in tests (pass fakes to the constructor).

Everything above this layer (the job steps, batches, the API, the ways in) gets its clients here,
so a handler that needs S3 and the jobs table builds exactly those, once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from picflow.aws.jobs import JobStore
from picflow.aws.semaphore import Semaphore
from picflow.core import config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

    from picflow.aws.cache import ResultCache
    from picflow.aws.durations import DurationHistory
    from picflow.providers.registry import Registry

__all__ = ["DynamoTable", "Services", "services"]


class Services:
    """What the layer talks to; each built on first use, once per container."""

    def __init__(
        self,
        *,
        store: JobStore | None = None,
        s3: S3Client | None = None,
        semaphore: Semaphore | None = None,
        providers: Registry | None = None,
        durations: DurationHistory | None = None,
        cache: ResultCache | None = None,
        coordination: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._coordination = coordination
        self._cache = cache
        self._s3 = s3
        self._presigner: S3Client | None = None
        self._semaphore = semaphore
        self._durations = durations
        self._sfn: SFNClient | None = None
        self._events: EventBridgeClient | None = None
        self._dynamodb: Any = None
        self._providers = providers
        self.clock = clock

    @property
    def providers(self) -> Registry:
        """The provider clients (one pooled HTTP client per base URL)."""
        if self._providers is None:
            from picflow.providers.registry import registry

            self._providers = registry()
        return self._providers

    @property
    def store(self) -> JobStore:
        if self._store is None:
            self._store = JobStore(self._table(config.JOBS_TABLE))
        return self._store

    @property
    def cache(self) -> ResultCache:
        if self._cache is None:
            from picflow.aws.cache import ResultCache

            self._cache = ResultCache(self._table(config.RESULT_CACHE_TABLE))
        return self._cache

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            self._s3 = _client("s3")
        return self._s3

    @property
    def presigner(self) -> S3Client:
        """An S3 client for presigned URLs: SigV4 always (boto3 may still pick SigV2 for S3)."""
        if self._presigner is None:
            from botocore.config import Config

            self._presigner = _client("s3", config=Config(signature_version="s3v4"))
        return self._presigner

    @property
    def sfn(self) -> SFNClient:
        if self._sfn is None:
            self._sfn = _client("stepfunctions")
        return self._sfn

    @property
    def events(self) -> EventBridgeClient:
        if self._events is None:
            self._events = _client("events")
        return self._events

    @property
    def durations(self) -> DurationHistory:
        if self._durations is None:
            from picflow.aws.durations import DynamoDurationHistory

            self._durations = DynamoDurationHistory(self._coordination_table())
        return self._durations

    def _table(self, name_variable: str) -> Any:
        # One DynamoDB client for the jobs, cache and coordination tables.
        if self._dynamodb is None:
            self._dynamodb = _client("dynamodb")
            _with_python_values(self._dynamodb)
        return DynamoTable(self._dynamodb, config.env(name_variable))

    def _coordination_table(self) -> Any:
        if self._coordination is None:
            self._coordination = self._table(config.SEMAPHORE_TABLE)
        return self._coordination

    @property
    def coordination_table(self) -> Table:
        """The table of provider slots, durations and batch pause flags."""
        table: Table = self._coordination_table()
        return table

    @property
    def semaphore(self) -> Semaphore:
        if self._semaphore is None:
            self._semaphore = Semaphore(self._coordination_table(), clock=self.clock)
        return self._semaphore


class DynamoTable:
    """The part of boto3's DynamoDB ``Table`` resource the layer uses, over a plain client.

    Same calls, same Python values in and out (the client carries the resource's own value
    transformation, :func:`_with_python_values`), without building boto3's resource layer: its
    resource model and generated classes were ~15 ms of CPU in the first call of every function
    that reads a table (bench/coldstart.py)."""

    def __init__(self, client: Any, name: str) -> None:
        self._client = client
        self.name = self.table_name = name

    def get_item(self, **kwargs: Any) -> Any:
        return self._client.get_item(TableName=self.name, **kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        return self._client.put_item(TableName=self.name, **kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        return self._client.update_item(TableName=self.name, **kwargs)

    def delete_item(self, **kwargs: Any) -> Any:
        return self._client.delete_item(TableName=self.name, **kwargs)

    def query(self, **kwargs: Any) -> Any:
        return self._client.query(TableName=self.name, **kwargs)

    def scan(self, **kwargs: Any) -> Any:
        return self._client.scan(TableName=self.name, **kwargs)


def _client(service: str, **kwargs: Any) -> Any:
    from picflow.net import sdk

    return sdk.client(service, **kwargs)


def _with_python_values(client: Any) -> None:
    """Register on a DynamoDB client the handlers boto3's resource registers on its own
    (``boto3.dynamodb.transform.DynamoDBHighLevelResource``): the caller's params copied, condition
    objects (``Key``, ``Attr``) made expressions, Python values serialised, answers deserialised."""
    from boto3.dynamodb.transform import TransformationInjector, copy_dynamodb_params

    events = client.meta.events
    injector = TransformationInjector()
    events.register(
        "provide-client-params.dynamodb", copy_dynamodb_params, unique_id="dynamodb-create-params-copy"
    )
    events.register(
        "before-parameter-build.dynamodb",
        injector.inject_condition_expressions,
        unique_id="dynamodb-condition-expression",
    )
    events.register(
        "before-parameter-build.dynamodb",
        injector.inject_attribute_value_input,
        unique_id="dynamodb-attr-value-input",
    )
    events.register(
        "after-call.dynamodb", injector.inject_attribute_value_output, unique_id="dynamodb-attr-value-output"
    )


@functools.cache
def services() -> Services:
    return Services()
