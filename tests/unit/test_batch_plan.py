"""Batches: manifests, the items plan and the summary (the Distributed Map itself runs in e2e)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from picflow.batch.fetch import fetch_item
from picflow.batch.pipeline import PIPELINE
from picflow.batch.plan import list_prefix, plan_items, read_manifest
from picflow.batch.report import group_pipeline, item_records, summarise
from picflow.core.catalogue import get_operation
from picflow.core.errors import ParamValidationError
from picflow.net.urls import InputUnavailableError, UnsafeUrlError


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket="inputs")
    return "inputs"


def test_read_manifest_csv_with_a_params_column(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="m.csv", Body=b'key,params\na.png,\nb.png,"{""color_count"": 8}"\n')

    rows = read_manifest(s3, bucket, "m.csv")

    assert rows == [
        {"key": "a.png", "params": {}, "line": 2},
        {"key": "b.png", "params": {"color_count": 8}, "line": 3},
    ]


def test_read_manifest_jsonl_skips_blank_lines(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="m.jsonl", Body=b'{"key": "a.png"}\n\n{"key": "b.png", "params": {"x": 1}}\n'
    )

    assert [r["key"] for r in read_manifest(s3, bucket, "m.jsonl")] == ["a.png", "b.png"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"key": "a.png"}\nnot json\n', "line 2 is not a JSON object"),
        (b'{"params": {}}\n', "line 1 needs exactly one of key, url"),
        (b'{"key": "a.png", "url": "https://example.com/a.png"}\n', "line 1 needs exactly one of key, url"),
        (b'{"url": 7}\n', "line 1 needs exactly one of key, url"),
        (b'{"key": "a.png", "params": [1]}\n', "params must be a JSON object"),
    ],
)
def test_read_manifest_refuses_bad_lines_naming_them(s3: Any, bucket: str, body: bytes, message: str) -> None:
    s3.put_object(Bucket=bucket, Key="m.jsonl", Body=body)

    with pytest.raises(ParamValidationError, match=message):
        read_manifest(s3, bucket, "m.jsonl")


def test_read_manifest_csv_with_a_url_column(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="m.csv", Body=b"url,key\nhttps://images.example.com/a.png,\n,b.png\n")

    assert read_manifest(s3, bucket, "m.csv") == [
        {"url": "https://images.example.com/a.png", "params": {}, "line": 2},
        {"key": "b.png", "params": {}, "line": 3},
    ]


def test_list_prefix_keeps_images_only_in_key_order(s3: Any, bucket: str) -> None:
    for key in ("p/b.JPG", "p/a.png", "p/notes.txt", "p/a.png.params.json", "q/c.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    assert list_prefix(s3, bucket, "p/") == [{"key": "p/a.png"}, {"key": "p/b.JPG"}]


def test_plan_items_merges_item_params_over_the_batchs_and_numbers_them() -> None:
    rows = [{"key": "a.png"}, {"key": "b.png", "params": {"color_count": 8}}]

    items = plan_items(get_operation("vectorize"), {"color_count": 5}, rows, "in", "batch-1")

    assert items == [
        {"i": 0, "bucket": "in", "key": "a.png", "params": {"color_count": 5}},
        {"i": 1, "bucket": "in", "key": "b.png", "params": {"color_count": 8}},
    ]


def test_plan_items_refuses_an_invalid_item_before_anything_runs() -> None:
    rows = [{"key": "a.png", "line": 2}, {"key": "b.png", "params": {"color_count": 99}, "line": 3}]

    with pytest.raises(ParamValidationError) as caught:
        plan_items(get_operation("vectorize"), {}, rows, "in", "batch-1")

    assert "manifest line 3" in caught.value.message
    assert caught.value.field == "params.color_count"


def test_plan_items_refuses_an_empty_batch() -> None:
    with pytest.raises(ParamValidationError, match="no images"):
        plan_items(get_operation("vectorize"), {}, [], "in", "batch-1")


def test_summarise_counts_reuse_and_only_what_was_paid() -> None:
    records = [
        {"status": "SUCCEEDED", "submitted_at": "t", "cost_units": 1, "cost_unit": "hdredraw.call"},
        {"status": "SUCCEEDED", "reused": True, "cost_units": 0},
        {"status": "FAILED", "cost_units": 1},  # failed in Validate: never submitted, never paid
        {"status": "RUNNING", "submitted_at": "t", "cost_units": 1, "cost_unit": "hdredraw.call"},
    ]

    summary = summarise(records, total=6)

    assert summary["counts"] == {
        "QUEUED": 0,
        "RUNNING": 1,
        "SUCCEEDED": 2,
        "FAILED": 1,
        "CANCELLED": 0,
        "NOT_STARTED": 2,
    }
    assert summary["done"] == 3
    assert summary["progress"] == 0.5
    assert summary["reused"] == 1
    assert summary["cost"] == {"units": 2, "unit": "hdredraw.call"}


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fake resolver: images.example.com is public, metadata.example.com is the metadata service."""
    asked: list[str] = []
    answers = {"images.example.com": "93.184.216.34", "metadata.example.com": "169.254.169.254"}

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.delenv("PICFLOW_URL_ALLOWLIST", raising=False)
    return asked


def test_plan_items_url_items_go_to_their_fetch_key_and_a_host_is_resolved_once(dns: list[str]) -> None:
    rows = [
        {"url": "https://images.example.com/a.png", "line": 1},
        {"key": "b.png", "line": 2},
        {"url": "https://images.example.com/c.png", "params": {"color_count": 8}, "line": 3},
    ]

    items = plan_items(get_operation("vectorize"), {}, rows, "in", "batch-1")

    assert items == [
        {
            "i": 0,
            "url": "https://images.example.com/a.png",
            "bucket": "in",
            "key": "uploads/batch-1-0/source",
            "params": {},
        },
        {"i": 1, "bucket": "in", "key": "b.png", "params": {}},
        {
            "i": 2,
            "url": "https://images.example.com/c.png",
            "bucket": "in",
            "key": "uploads/batch-1-2/source",
            "params": {"color_count": 8},
        },
    ]
    assert dns == ["images.example.com"]


def test_plan_items_of_a_tenant_fetch_urls_under_its_root_and_refuse_others_keys(dns: list[str]) -> None:
    op = get_operation("vectorize")
    rows = [{"url": "https://images.example.com/a.png", "line": 1}, {"key": "tenants/t1/b.png", "line": 2}]
    # A tenant's URL items land under its root; its own keys pass
    items = plan_items(op, {}, rows, "in", "batch-1", "t1")
    assert [item["key"] for item in items] == ["tenants/t1/uploads/batch-1-0/source", "tenants/t1/b.png"]
    # Another tenant's key (or the default tenant's) is refused naming its line; and the default
    # tenant may not name a tenant's key
    for tenant, key in (("t2", "tenants/t1/b.png"), ("t1", "b.png"), ("default", "tenants/t1/b.png")):
        with pytest.raises(ParamValidationError, match="manifest line 1: key") as caught:
            plan_items(op, {}, [{"key": key, "line": 1}], "in", "batch-1", tenant)
        assert caught.value.field == "manifest"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://169.254.169.254/latest/meta-data/", "a public host"),
        ("https://metadata.example.com/x.png", "a public host"),
        ("file:///etc/passwd", "http or https"),
        ("https://user:pw@images.example.com/a.png", "no user-info"),
    ],
)
def test_plan_items_refuses_a_hostile_url_naming_its_line(dns: list[str], url: str, rule: str) -> None:
    rows = [{"url": "https://images.example.com/a.png", "line": 2}, {"url": url, "line": 3}]

    with pytest.raises(UnsafeUrlError) as caught:
        plan_items(get_operation("vectorize"), {}, rows, "in", "batch-1")

    assert caught.value.message.startswith("manifest line 3: ")
    assert caught.value.rule == rule


def test_finished_summary_is_the_reports_for_a_succeeded_batch_only() -> None:
    from picflow.batch.report import finished_summary

    report = summarise([{"status": "SUCCEEDED", "reused": True}], total=1)
    output = json.dumps({"batch_id": "b", "status": "SUCCEEDED", "report": {"results_key": "k", **report}})

    assert finished_summary({"status": "SUCCEEDED", "output": output}) == report
    assert finished_summary({"status": "RUNNING"}) is None
    assert finished_summary({"status": "FAILED", "output": output}) is None  # a Fail state has no report
    assert finished_summary({"status": "SUCCEEDED", "output": "{}"}) is None


def test_plan_pipeline_items_take_url_items_to_their_fetch_key_after_the_same_url_check(
    dns: list[str],
) -> None:
    rows = [{"url": "https://images.example.com/a.png", "line": 2}, {"key": "b.png", "line": 3}]

    items = plan_items(PIPELINE, {"prompt": "studio"}, rows, "in", "batch-1")

    assert items[0] == {
        "i": 0,
        "url": "https://images.example.com/a.png",
        "bucket": "in",
        "key": "uploads/batch-1-0/source",
        "params": {"prompt": "studio", "upscale": 1.0},
    }
    assert items[1]["key"] == "b.png"
    assert dns == ["images.example.com"]


def test_plan_pipeline_items_refuses_a_hostile_url_naming_its_line(dns: list[str]) -> None:
    rows = [{"key": "a.png", "line": 2}, {"url": "https://metadata.example.com/x.png", "line": 3}]

    with pytest.raises(UnsafeUrlError) as caught:
        plan_items(PIPELINE, {"prompt": "studio"}, rows, "in", "batch-1")

    assert caught.value.message.startswith("manifest line 3: ")
    assert caught.value.rule == "a public host"


def test_fetch_item_of_a_pipeline_batch_that_fails_records_the_items_cutout_as_failed(
    dns: list[str], s3: Any, jobs_table: Any
) -> None:
    # GIVEN a pipeline batch of tenant t1, its URL item's host now resolving to the metadata service
    batch = {"batch_id": "batch-1", "operation": PIPELINE, "tenant": "t1"}
    item = {
        "i": 4,
        "url": "https://metadata.example.com/x.png",
        "bucket": "in",
        "key": "uploads/batch-1-4/source",
        "params": {"prompt": "studio", "upscale": 2},
    }

    # WHEN the map's Fetch step runs for it
    with pytest.raises(InputUnavailableError, match="item 4: "):
        fetch_item(batch, item, s3=s3, table=jobs_table)

    # THEN the item's first step holds the failure, as the cutout job that never ran, and the
    # item's line reads FAILED with the reason
    record = jobs_table.get_item(Key={"job_id": "batch-1-4-cutout"})["Item"]
    assert (record["status"], record["operation"], record["batch_id"]) == (
        "FAILED",
        "segmentation",
        "batch-1",
    )
    assert record["params"] == {"format": "png"}
    assert record["error"]["type"] == "UnsafeUrlError"
    assert record["tenant"] == "t1"  # the batch's tenant sees the failed item, no one else
    grouped = group_pipeline(list(item_records(jobs_table, "batch-1")))
    assert grouped["batch-1-4"]["status"] == "FAILED"
    assert grouped["batch-1-4"]["steps"] == ["batch-1-4-cutout"]
    assert grouped["batch-1-4"]["error"]["type"] == "UnsafeUrlError"
