"""The content-addressed result cache: keys, the table (built from template.yaml) and reuse copies."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from picflow.cache import ResultCache, cache_key, canonical_params
from picflow.collect import reuse_results

SHA = "a" * 64


def test_cache_key_ignores_the_order_params_were_given_in() -> None:
    assert cache_key("background", SHA, {"prompt": "sea", "batch_size": 2}) == cache_key(
        "background", SHA, {"batch_size": 2, "prompt": "sea"}
    )


@pytest.mark.parametrize(
    ("operation", "sha", "params"),
    [
        ("segmentation", SHA, {"prompt": "sea", "batch_size": 2}),
        ("background", "b" * 64, {"prompt": "sea", "batch_size": 2}),
        ("background", SHA, {"prompt": "sea", "batch_size": 3}),
        ("background", SHA, {"prompt": "sea ", "batch_size": 2}),
    ],
)
def test_cache_key_changes_with_operation_input_or_any_param(
    operation: str, sha: str, params: dict[str, Any]
) -> None:
    assert cache_key(operation, sha, params) != cache_key(
        "background", SHA, {"prompt": "sea", "batch_size": 2}
    )


def test_canonical_params_is_sorted_compact_json() -> None:
    assert canonical_params({"b": 1, "a": [1, 2], "c": "é"}) == '{"a":[1,2],"b":1,"c":"é"}'


@pytest.fixture
def cache(result_cache_table: Any) -> ResultCache:
    return ResultCache(result_cache_table)


def test_result_cache_miss_then_hit_after_put(cache: ResultCache) -> None:
    key = cache_key("vectorize", SHA, {"color_count": 5})
    assert cache.get(key) is None

    cache.put(key, {"job_id": "j1", "bucket": "out", "outputs": [{"key": "jobs/j1/image.png", "size": 3}]})

    entry = cache.get(key)
    assert entry is not None
    assert entry["job_id"] == "j1"
    assert entry["outputs"] == [{"key": "jobs/j1/image.png", "size": 3}]
    assert entry["ttl"] > 0


def test_a_miss_is_claimed_once_until_released(cache: ResultCache) -> None:
    key = cache_key("vectorize", SHA, {"color_count": 5})
    assert cache.claim(key, "j1", 600) is None  # taken
    assert cache.claim(key, "j1", 600) is None  # a retried Validate keeps its own claim
    held = cache.claim(key, "j2", 600)
    assert held is not None
    assert held["pending_owner"] == "j1"  # an identical job is paying: j2 waits

    assert cache.release(key, "j2") is False  # only the owner frees it
    assert cache.release(key, "j1") is True
    assert cache.get(key) is None
    assert cache.claim(key, "j2", 600) is None  # the twin takes over


def test_an_expired_claim_can_be_taken_and_a_finished_entry_replaces_a_claim(cache: ResultCache) -> None:
    key = cache_key("vectorize", SHA, {"color_count": 6})
    assert cache.claim(key, "gone", -1) is None  # its owner never came back
    assert cache.claim(key, "j2", 600) is None

    cache.put(key, {"job_id": "j2", "bucket": "out", "outputs": [{"key": "jobs/j2/a.png"}]})
    entry = cache.get(key)
    assert entry is not None
    assert "pending_owner" not in entry
    assert cache.release(key, "j2") is False  # results are never dropped by a late release


def test_reuse_results_copies_outputs_under_the_new_prefix_with_a_manifest(s3: Any) -> None:
    s3.create_bucket(Bucket="out")
    s3.put_object(Bucket="out", Key="jobs/old/image.png", Body=b"png-bytes")
    earlier = {
        "job_id": "old",
        "bucket": "out",
        "outputs": [
            {"kind": "image", "key": "jobs/old/image.png", "sha256": hashlib.sha256(b"png-bytes").hexdigest()}
        ],
        "texts": {"prompt": "a cat"},
    }

    manifest = reuse_results(
        earlier, s3=s3, bucket="out", prefix="cutouts/shoe/", provider="hdredraw",
        job={"job_id": "new", "operation": "remove_fabric"},
    )  # fmt: skip

    assert s3.get_object(Bucket="out", Key="cutouts/shoe/image.png")["Body"].read() == b"png-bytes"
    assert manifest["outputs"][0]["key"] == "cutouts/shoe/image.png"
    assert manifest["outputs"][0]["sha256"] == earlier["outputs"][0]["sha256"]  # type: ignore[index]
    stored = json.loads(s3.get_object(Bucket="out", Key="cutouts/shoe/manifest.json")["Body"].read())
    assert stored["reused_from"] == "old"
    assert stored["job_id"] == "new"
    assert stored["texts"] == {"prompt": "a cat"}
