"""picflow.entry.s3events: which uploads start jobs, and what each job is asked to do (moto S3 + SFN)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from picflow.aws.jobs import JobStore
from picflow.aws.services import Services
from picflow.core.names import s3_job_id
from picflow.entry.s3events import S3Upload, job_request, start_from_s3_event, uploads

BUCKET = "picflow-in"


def record(
    key: str, *, event: str = "ObjectCreated:Put", version: str | None = None, seq: str = "0A1B"
) -> dict:
    obj: dict[str, Any] = {"key": key, "size": 10, "eTag": "etag-1", "sequencer": seq}
    if version:
        obj["versionId"] = version
    return {"eventName": event, "s3": {"bucket": {"name": BUCKET}, "object": obj}}


def s3_event(*records: dict) -> dict:
    return {"Records": list(records)}


# --- which uploads count -------------------------------------------------------------------


def test_uploads_image_under_an_operation_prefix_is_an_upload() -> None:
    (upload,) = uploads(s3_event(record("segmentation/cats/a.png", version="v1")))
    assert upload == S3Upload(BUCKET, "segmentation/cats/a.png", "v1", "0A1B")
    assert upload.operation == "segmentation"
    assert upload.job_id == s3_job_id(BUCKET, "segmentation/cats/a.png", "v1")


def test_uploads_under_a_tenant_prefix_belong_to_that_tenant() -> None:
    # GIVEN an upload under tenants/<id>/ and one in today's layout
    (mine,) = uploads(s3_event(record("tenants/k7q2/segmentation/cats/a.png", version="v1")))
    (default,) = uploads(s3_event(record("segmentation/cats/a.png", version="v1")))
    # THEN the first is that tenant's, with the operation after its root; the other the default's
    assert (mine.tenant, mine.operation, mine.path) == ("k7q2", "segmentation", "segmentation/cats/a.png")
    assert (default.tenant, default.operation) == ("default", "segmentation")
    assert mine.job_id != default.job_id


def test_job_request_of_a_tenant_upload_carries_the_tenant_and_keeps_results_under_its_root(
    s3: Any,
) -> None:
    upload = put(s3, "tenants/k7q2/background/dir/cat.png", {"params": json.dumps({"prompt": "sea"})})
    request = job_request(upload, s3)
    assert request is not None
    assert (request["operation"], request["tenant"]) == ("background", "k7q2")
    assert request["out_prefix"] == "tenants/k7q2/background/dir/cat/"


def test_uploads_unversioned_object_keys_on_the_sequencer() -> None:
    (upload,) = uploads(s3_event(record("redraw/a.png", seq="00AA")))
    assert upload.version_id is None
    assert upload.job_id == s3_job_id(BUCKET, "redraw/a.png", "00AA")


@pytest.mark.parametrize(
    "key",
    [
        "segmentation/a.png.params.json",  # a sidecar
        "segmentation/",  # a folder marker
        "segmentation/cats/",
        "a.png",  # no operation prefix
        "uploads/segmentation/a.png",  # the API's own inputs
        "uploads/0f3c.png",
        "tenants/t1/uploads/0f3c/a.png",  # a tenant's uploads and batch images start nothing either
        "tenants/t1/batches/x/a.png",
        "tenants/t1/a.png",  # a tenant's root without an operation
        "tenants/t1/segmentation/a.png.params.json",
    ],
)
def test_uploads_skips_keys_that_are_not_job_inputs(key: str) -> None:
    assert list(uploads(s3_event(record(key)))) == []


@pytest.mark.parametrize("name", ["ObjectRemoved:Delete", "ObjectRestore:Completed", "s3:TestEvent", ""])
def test_uploads_skips_events_other_than_object_created(name: str) -> None:
    assert list(uploads(s3_event(record("segmentation/a.png", event=name)))) == []


@pytest.mark.parametrize(
    "name", ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy"]
)
def test_uploads_takes_every_kind_of_object_created(name: str) -> None:
    assert len(list(uploads(s3_event(record("segmentation/a.png", event=name))))) == 1


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("segmentation/my+cat.png", "segmentation/my cat.png"),
        ("segmentation%2Fcats%2Fa.png", "segmentation/cats/a.png"),  # moto encodes '/'
        ("background/%E7%8C%AB.png", "background/猫.png"),
        ("background/100%25+real.png", "background/100% real.png"),
    ],
)
def test_uploads_unquotes_event_keys(raw: str, key: str) -> None:
    (upload,) = uploads(s3_event(record(raw)))
    assert upload.key == key


def test_uploads_keeps_each_image_of_a_batch_and_drops_the_rest() -> None:
    event = s3_event(
        record("segmentation/a.png"), record("segmentation/a.png.params.json"), record("idphoto/b.jpg")
    )
    assert [u.key for u in uploads(event)] == ["segmentation/a.png", "idphoto/b.jpg"]


def test_uploads_event_without_records_yields_nothing() -> None:
    assert list(uploads({})) == []


# --- the job request -----------------------------------------------------------------------


@pytest.fixture
def s3(s3: Any) -> Any:
    s3.create_bucket(Bucket=BUCKET)
    return s3


def put(s3: Any, key: str, metadata: dict[str, str] | None = None, body: bytes = b"\x89PNG") -> S3Upload:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata or {})
    return S3Upload(BUCKET, key, None, "seq-1")


def test_job_request_params_from_x_amz_meta_params_json(s3: Any) -> None:
    upload = put(s3, "background/dir/cat.png", {"params": json.dumps({"prompt": "sea", "batch_size": 3})})
    request = job_request(upload, s3)
    assert request == {
        "operation": "background",
        "params": {"prompt": "sea", "batch_size": 3},
        "input": {"bucket": BUCKET, "key": "background/dir/cat.png", "version_id": None},
        "source": "s3",
        "tenant": "default",
        "out_prefix": "background/dir/cat/",
    }


def test_job_request_params_from_one_metadata_key_per_param(s3: Any) -> None:
    upload = put(
        s3,
        "segmentation/a.png",
        {
            "output-type": "1",
            "format": "jpg",
            "bg_color": "FFFFFF",
            "notify-url": "https://h.example/n",
            "mode": "poll",
        },
    )
    request = job_request(upload, s3)
    assert request["params"] == {"output_type": "1", "format": "jpg", "bg_color": "FFFFFF"}
    assert request["notify_url"] == "https://h.example/n"
    assert request["mode"] == "poll"
    assert "params_error" not in request


def test_job_request_params_from_a_sidecar(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="idphoto/me.jpg.params.json", Body=json.dumps({"size": "300x400"}))
    request = job_request(put(s3, "idphoto/me.jpg"), s3)
    assert request["params"] == {"size": "300x400"}
    assert "params_error" not in request


def test_job_request_metadata_wins_over_a_sidecar(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="idphoto/me.jpg.params.json", Body=json.dumps({"size": "300x400"}))
    request = job_request(put(s3, "idphoto/me.jpg", {"size": "500x500"}), s3)
    assert request["params"] == {"size": "500x500"}


def test_job_request_without_params_anywhere_is_empty(s3: Any) -> None:
    request = job_request(put(s3, "face_enhance/a.png"), s3)
    assert request["params"] == {}
    assert "params_error" not in request


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"a string"', "null"])
def test_job_request_malformed_params_metadata_is_a_params_error(s3: Any, raw: str) -> None:
    request = job_request(put(s3, "background/a.png", {"params": raw}), s3)
    assert request["params"] == {}
    assert request["params_error"].startswith("x-amz-meta-params")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_job_request_malformed_sidecar_is_a_params_error(s3: Any, raw: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key="background/a.png.params.json", Body=raw)
    request = job_request(put(s3, "background/a.png"), s3)
    assert request["params"] == {}
    assert "background/a.png.params.json" in request["params_error"]


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("redraw/a.png", "redraw/a/"),
        ("redraw/deep/er/a.tar.png", "redraw/deep/er/a.tar/"),
        ("redraw/no-extension", "redraw/no-extension/"),
        ("redraw/v1.2/raw", "redraw/v1.2/raw/"),  # a dot in a folder is not an extension
    ],
)
def test_job_request_output_prefix_is_the_key_without_its_extension(s3: Any, key: str, prefix: str) -> None:
    assert job_request(put(s3, key), s3)["out_prefix"] == prefix


def test_job_request_versioned_upload_reads_that_version(s3: Any) -> None:
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=BUCKET, Key="background/a.png", Body=b"1", Metadata={"prompt": "first"})
    s3.put_object(Bucket=BUCKET, Key="background/a.png", Body=b"2", Metadata={"prompt": "second"})
    request = job_request(S3Upload(BUCKET, "background/a.png", first["VersionId"], "s"), s3)
    assert request["params"] == {"prompt": "first"}
    assert request["input"]["version_id"] == first["VersionId"]


# --- starting from an event ----------------------------------------------------------------


def _state_machine(sfn: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A state machine (non-executing in moto) the trigger starts."""
    machine: str = sfn.create_state_machine(
        name="job",
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/sfn",
    )["stateMachineArn"]
    monkeypatch.setenv("PICFLOW_STATE_MACHINE_ARN", machine)
    return machine


def test_start_from_s3_event_duplicated_event_starts_one_execution(
    s3: Any, sfn: Any, jobs_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a state machine (non-executing in moto) and an upload
    machine = _state_machine(sfn, monkeypatch)
    put(s3, "segmentation/a.png", {"output-type": "3"})
    svc = Services(store=JobStore(jobs_table), s3=s3)
    event = s3_event(record("segmentation/a.png", seq="00F1"))
    # WHEN S3 delivers the same event twice
    first = start_from_s3_event(event, svc)
    again = start_from_s3_event(event, svc)
    # THEN one job, one execution
    assert [r.created for r in first] == [True]
    assert [r.created for r in again] == [False]
    assert first[0].job_id == again[0].job_id
    (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert execution["name"] == first[0].job_id
    job = svc.store.get(first[0].job_id)
    assert job is not None
    assert (job["source"], job["params"]) == ("s3", {"output_type": "3"})


@pytest.mark.parametrize("versioned", [False, True])
def test_job_request_for_an_object_already_gone_is_none(s3: Any, versioned: bool) -> None:
    # GIVEN an event for an upload deleted before the trigger ran (issue 15: it raised a 404)
    if versioned:
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        version = s3.put_object(Bucket=BUCKET, Key="background/gone.png", Body=b"x")["VersionId"]
        s3.delete_object(Bucket=BUCKET, Key="background/gone.png", VersionId=version)
        upload = S3Upload(BUCKET, "background/gone.png", version, "s")
    else:
        upload = S3Upload(BUCKET, "background/gone.png", None, "s")
    assert job_request(upload, s3) is None


def test_start_from_s3_event_for_vanished_objects_starts_only_the_ones_still_there(
    s3: Any, sfn: Any, jobs_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _state_machine(sfn, monkeypatch)
    put(s3, "segmentation/here.png")
    svc = Services(store=JobStore(jobs_table), s3=s3)
    event = s3_event(record("segmentation/gone.png", seq="01"), record("segmentation/here.png", seq="02"))

    started = start_from_s3_event(event, svc)

    assert len(started) == 1
    assert (svc.store.get(started[0].job_id) or {})["input"]["key"] == "segmentation/here.png"
