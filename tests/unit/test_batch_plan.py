"""Batches: manifests, the items plan and the summary (the Distributed Map itself runs in e2e)."""

from __future__ import annotations

from typing import Any

import pytest
from picflow.batches import list_prefix, plan_items, read_manifest, summarise
from picflow.catalogue import get_operation
from picflow.errors import ParamValidationError


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
        (b'{"params": {}}\n', "line 1 has no key"),
        (b'{"url": "https://example.com/a.png"}\n', "URL items are not supported"),
        (b'{"key": "a.png", "params": [1]}\n', "params must be a JSON object"),
    ],
)
def test_read_manifest_refuses_bad_lines_naming_them(s3: Any, bucket: str, body: bytes, message: str) -> None:
    s3.put_object(Bucket=bucket, Key="m.jsonl", Body=body)

    with pytest.raises(ParamValidationError, match=message):
        read_manifest(s3, bucket, "m.jsonl")


def test_list_prefix_keeps_images_only_in_key_order(s3: Any, bucket: str) -> None:
    for key in ("p/b.JPG", "p/a.png", "p/notes.txt", "p/a.png.params.json", "q/c.png"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    assert list_prefix(s3, bucket, "p/") == [{"key": "p/a.png"}, {"key": "p/b.JPG"}]


def test_plan_items_merges_item_params_over_the_batchs_and_numbers_them() -> None:
    rows = [{"key": "a.png"}, {"key": "b.png", "params": {"color_count": 8}}]

    items = plan_items(get_operation("vectorize"), {"color_count": 5}, rows, "in")

    assert items == [
        {"i": 0, "bucket": "in", "key": "a.png", "params": {"color_count": 5}},
        {"i": 1, "bucket": "in", "key": "b.png", "params": {"color_count": 8}},
    ]


def test_plan_items_refuses_an_invalid_item_before_anything_runs() -> None:
    rows = [{"key": "a.png", "line": 2}, {"key": "b.png", "params": {"color_count": 99}, "line": 3}]

    with pytest.raises(ParamValidationError) as caught:
        plan_items(get_operation("vectorize"), {}, rows, "in")

    assert "manifest line 3" in caught.value.message
    assert caught.value.field == "params.color_count"


def test_plan_items_refuses_an_empty_batch() -> None:
    with pytest.raises(ParamValidationError, match="no images"):
        plan_items(get_operation("vectorize"), {}, [], "in")


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
