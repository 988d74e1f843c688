"""Every failure is typed from the error tree (issue 15, finding 6): no ValueError or ClientError
reaches a job record, and the S3 trigger answers an event for a vanished object without raising
(on AWS a raising trigger is retried into its dead-letter destination)."""

from __future__ import annotations

import json

import pytest
from picflow.core import errors

pytestmark = pytest.mark.e2e

TREE = {name for name in errors.__all__}


def test_a_bogus_mode_by_upload_fails_typed_before_any_upstream_call(system, sample):
    calls = system.mock.count()
    key = system.upload("segmentation/in/i.png", sample["image.png"], {}, mode="bogus")
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert (job["error"]["type"], job["error"].get("field")) == ("ParamValidationError", "mode"), job["error"]
    assert system.mock.count() == calls


def test_an_input_version_deleted_after_acceptance_fails_typed_as_input_not_found(system, sample):
    # GIVEN an upload whose version is gone by the time the job reads it (the trigger pinned it)
    body = sample["image.png"]
    put = system.s3.put_object(Bucket=system.info.input_bucket, Key="tmp-w15/x.png", Body=body)
    system.s3.delete_object(Bucket=system.info.input_bucket, Key="tmp-w15/x.png", VersionId=put["VersionId"])
    execution = system.sfn.start_execution(
        stateMachineArn=system.info.resources["JobStateMachine"],
        name="w15-deleted-version",
        input=json.dumps({"operation": "segmentation", "params": {}, "input": {
            "bucket": system.info.input_bucket, "key": "tmp-w15/x.png", "version_id": put["VersionId"]}}),
    )  # fmt: skip
    done = system.stack.wait_for_execution("w15-deleted-version")
    job = system.job("w15-deleted-version")
    assert execution["executionArn"]
    assert done["status"] == "FAILED"
    assert job["error"]["type"] in TREE, job["error"]
    assert (job["error"]["type"], job["error"].get("code")) == ("InvalidRequestError", "InputNotFound")


def test_an_s3_event_for_a_vanished_object_starts_nothing_and_does_not_raise(system):
    event = {"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": system.info.input_bucket},
               "object": {"key": "segmentation/w15/gone.png", "sequencer": "0A1B"}},
    }]}  # fmt: skip
    answer = system.stack.client("lambda").invoke(
        FunctionName=system.info.resources["S3TriggerFunction"], Payload=json.dumps(event).encode()
    )
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    assert payload["jobs"] == []
