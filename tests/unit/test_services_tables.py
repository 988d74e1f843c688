"""Services' DynamoDB tables: a plain client with the resource's value transformation
(picflow.aws.services.DynamoTable), read and written the way boto3's Table resource does."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.aws.services import DynamoTable, Services


@pytest.fixture
def tables(monkeypatch: pytest.MonkeyPatch, jobs_table: Any, semaphore_table: Any) -> Services:
    monkeypatch.setenv("PICFLOW_JOBS_TABLE", jobs_table.name)
    monkeypatch.setenv("PICFLOW_SEMAPHORE_TABLE", semaphore_table.name)
    return Services()


def test_services_tables_are_plain_client_tables_sharing_one_client(tables: Services) -> None:
    # GIVEN the services container  WHEN it builds the jobs and coordination tables
    jobs = tables.store.table
    coordination = tables.coordination_table
    # THEN both are DynamoTables over one client, named from the environment
    assert isinstance(jobs, DynamoTable)
    assert isinstance(coordination, DynamoTable)
    assert jobs._client is coordination._client  # type: ignore[attr-defined]
    assert (jobs.name, coordination.name) == ("picflow-jobs", "picflow-semaphore")


def test_dynamo_table_reads_what_the_resource_reads(tables: Services, jobs_table: Any) -> None:
    # GIVEN a job written through the services' table, with nested values, numbers and a set
    store = tables.store
    job = {"job_id": "j-1", "operation": "segmentation", "params": {"n": 2, "f": 0.5, "tags": ["a"]}}
    assert store.create(job) is True
    # WHEN it is read back through the client table and through boto3's resource
    mine = store.get("j-1")
    theirs = JobStore(jobs_table).get("j-1")
    # THEN both give the same Python values
    assert mine == theirs
    assert mine is not None
    assert mine["params"] == {"n": 2, "f": 0.5, "tags": ["a"]}
    raw = tables.store.table.get_item(Key={"job_id": "j-1"})["Item"]
    assert raw["polls"] == Decimal(0)  # numbers come back as the resource gives them


def test_dynamo_table_conditions_queries_and_updates_behave_like_the_resource(tables: Services) -> None:
    store = tables.store
    assert store.create({"job_id": "j-2", "operation": "segmentation"}) is True
    # A second create of the same id fails its condition (ConditionalCheckFailed, as with the resource)
    assert store.create({"job_id": "j-2", "operation": "segmentation"}) is False
    # Key/Attr condition objects (a query of the status index) are turned into expressions
    store.update("j-2", {"status": "RUNNING"})
    listed, _ = store.list(status="RUNNING")
    assert [job["job_id"] for job in listed] == ["j-2"]
    assert store.add_polls("j-2", 40) == 1
    # The caller's params are not changed by serialisation (the resource copies them too)
    key = {"job_id": "j-2"}
    tables.store.table.get_item(Key=key)
    assert key == {"job_id": "j-2"}
