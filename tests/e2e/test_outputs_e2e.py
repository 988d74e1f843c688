"""Outputs are never shared between jobs (issue 15, finding 2): the same key uploaded twice runs
two jobs whose results live under prefixes of their own, each matching the sha256 its job records.
Before, job 2 overwrote job 1's results (and manifest.json named job 2)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

pytestmark = pytest.mark.e2e


def test_the_same_key_uploaded_twice_keeps_both_jobs_results(system, sample):
    key = f"segmentation/{uuid.uuid4().hex[:8]}/same.png"
    bodies = [sample["image.png"], sample["image.png"] + b"\0"]  # two versions, two images
    for body in bodies:
        system.s3.put_object(Bucket=system.info.input_bucket, Key=key, Body=body)
    table = system.ddb.Table(system.info.resources["JobsTable"])
    jobs = [i for i in table.scan()["Items"] if i.get("input", {}).get("key") == key]
    assert len(jobs) == 2

    prefixes = set()
    for job in jobs:
        execution = system.stack.wait_for_execution(str(job["job_id"]))
        assert execution["status"] == "SUCCEEDED", execution.get("cause")
        record = system.job(str(job["job_id"]))
        manifest = json.loads(system.output(f"{record['out_prefix']}manifest.json"))
        assert manifest["job_id"] == job["job_id"]
        for output in manifest["outputs"]:
            assert hashlib.sha256(system.output(output["key"])).hexdigest() == output["sha256"]
        prefixes.add(record["out_prefix"])
    assert len(prefixes) == 2
