"""The content-addressed result cache: keys, the table (built from template.yaml) and reuse copies."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
from picflow.aws.cache import ResultCache, cache_key, canonical_params
from picflow.aws.semaphore import Semaphore
from picflow.aws.services import Services
from picflow.job.results import reuse_results
from picflow.job.validate import await_twin

SHA = "a" * 64


def test_cache_key_ignores_the_order_params_were_given_in() -> None:
    assert cache_key("background", SHA, {"prompt": "sea", "batch_size": 2}) == cache_key(
        "background", SHA, {"batch_size": 2, "prompt": "sea"}
    )


def test_cache_key_is_per_tenant_and_the_default_tenants_keys_are_unchanged() -> None:
    params = {"color_count": 5}
    before = hashlib.sha256(f"vectorize\n{SHA}\n{canonical_params(params)}".encode()).hexdigest()
    # The default tenant keeps the entries written before tenants; any other tenant has its own.
    assert cache_key("vectorize", SHA, params, "default") == cache_key("vectorize", SHA, params) == before
    keys = {cache_key("vectorize", SHA, params, tenant) for tenant in ("default", "k1", "k2")}
    assert len(keys) == 3


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


def test_a_claim_never_overwrites_results_that_finished_after_the_lookup(cache: ResultCache) -> None:
    # GIVEN j2 looked the key up while j1 was still paying, and j1 finished just after
    key = cache_key("vectorize", SHA, {"color_count": 7})
    assert cache.claim(key, "j1", 600) is None
    cache.put(key, {"job_id": "j1", "bucket": "out", "outputs": [{"key": "jobs/j1/a.png"}]})

    # WHEN j2 claims the miss it saw
    found = cache.claim(key, "j2", 600)

    # THEN the claim fails and hands back j1's results (j2 reuses them instead of paying again)
    assert found is not None
    assert found["job_id"] == "j1"
    assert found["outputs"] == [{"key": "jobs/j1/a.png"}]
    entry = cache.get(key)
    assert entry is not None
    assert "pending_owner" not in entry


def test_a_finished_entry_found_stale_is_claimed_only_as_it_was_seen(cache: ResultCache) -> None:
    key = cache_key("vectorize", SHA, {"color_count": 8})
    cache.put(key, {"job_id": "j1", "bucket": "out", "outputs": [{"key": "jobs/j1/a.png"}]})
    seen = cache.get(key)
    assert seen is not None

    # A newer result stored since the stale one was seen is not overwritten ...
    assert cache.claim(key, "j2", 600, stale="2000-01-01T00:00:00Z") is not None
    # ... the stale one itself is.
    assert cache.claim(key, "j2", 600, stale=str(seen["stored_at"])) is None
    claimed = cache.get(key)
    assert claimed is not None
    assert claimed["pending_owner"] == "j2"


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


# --- the decision Validate and the Twin loop make with the cache --------------------------


@pytest.fixture
def twin_svc(cache: ResultCache, semaphore_table: Any, s3: Any) -> Services:
    s3.create_bucket(Bucket="out")
    return Services(cache=cache, s3=s3, semaphore=Semaphore(semaphore_table))


def _twin_state(job_id: str, key: str) -> dict[str, Any]:
    job = {"cache_key": key, "provider": "hdredraw", "slot_ttl": 600, "deadline_at": time.time() + 600}
    return {"job_id": job_id, "reuse": True, "job": job, "cache": {"hit": False, "twin": "j1"}}


def test_a_twin_reuses_results_that_finished_between_its_lookup_and_its_claim(
    twin_svc: Services, cache: ResultCache, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN j1 is paying, and finishes right after j2's lookup (a race the Twin loop meets
    # every time the owner finishes between two of its reads)
    key = cache_key("face_enhance", SHA, {})
    assert cache.claim(key, "j1", 600) is None
    s3.put_object(Bucket="out", Key="jobs/j1/a.png", Body=b"png")
    real_get = cache.get

    def get_then_finish(k: str) -> dict[str, Any] | None:
        seen = real_get(k)
        if seen is not None and seen.get("pending_owner"):
            cache.put(k, {"job_id": "j1", "bucket": "out", "outputs": [{"key": "jobs/j1/a.png"}]})
        return seen

    monkeypatch.setattr(cache, "get", get_then_finish)

    # WHEN j2 looks again
    out = await_twin(_twin_state("j2", key), twin_svc)

    # THEN it reuses j1's results: no slot, no claim, nothing paid
    assert out["cache"]["hit"] is True
    assert out["cache"]["entry"]["job_id"] == "j1"
    assert out["slot"] is None
    assert "pending_owner" not in (real_get(key) or {})


def test_results_whose_outputs_are_gone_are_claimed_and_paid_again(
    twin_svc: Services, cache: ResultCache
) -> None:
    key = cache_key("face_enhance", SHA, {"x": 1})
    cache.put(key, {"job_id": "j1", "bucket": "out", "outputs": [{"key": "jobs/j1/deleted.png"}]})

    out = await_twin(_twin_state("j2", key), twin_svc)

    assert out["cache"]["hit"] is False
    assert out["slot"]["acquired"] is True
    assert (cache.get(key) or {}).get("pending_owner") == "j2"  # a third identical job would wait on j2
