"""The layer's AWS SDK session (picflow.net.sdk): botocore's model loader, without the listing of
every service at each service model it loads, giving the same answers as botocore's own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore.exceptions import DataNotFoundError, UnknownServiceError
from botocore.loaders import Loader
from picflow.net import sdk

# boto3's own models (resources-1) sit on a search path boto3 adds to the loader.
BOTO3_DATA = os.path.join(os.path.dirname(boto3.__file__), "data")
KINDS = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2", "resources-1")
NOT_SERVICES = ("", ".", "..", "S3", "s3/2006-03-01", "../botocore", "/", "no-such-service", "s3 ")


def _pair() -> tuple[Loader, sdk.ModelLoader]:
    plain, quick = Loader(), sdk.ModelLoader()
    for loader in (plain, quick):
        loader.search_paths.append(BOTO3_DATA)
    return plain, quick


@pytest.mark.parametrize("kind", KINDS)
def test_the_name_check_knows_the_services_botocore_lists(kind: str) -> None:
    # GIVEN botocore's loader and ours over the same search paths
    plain, quick = _pair()
    listed = plain.list_available_services(kind)
    names = sdk.ServiceNames(quick, kind)
    assert len(listed) > (0 if kind == "resources-1" else 100)
    # THEN the name check a model load makes answers "is X a service with this kind of model?" as
    # botocore's listing does: for every service there is (most have no waiters or resources), and
    # for names that are none
    everything = plain.list_available_services("service-2")
    for name in [*everything, *NOT_SERVICES, *(f"{name}x" for name in listed[:20])]:
        assert (name in names) == (name in listed), name
    # AND read whole, it is botocore's sorted list
    assert list(names) == listed
    assert (len(names), names[0], list(names[-2:])) == (len(listed), listed[0], listed[-2:])


@pytest.mark.parametrize("kind", KINDS)
def test_outside_a_model_load_the_listing_is_botocores_list(kind: str) -> None:
    plain, quick = _pair()
    listed = quick.list_available_services(kind)
    assert type(listed) is list
    assert listed == plain.list_available_services(kind)
    assert json.dumps(quick.list_available_services(kind)) == json.dumps(listed)


def test_an_unknown_service_is_refused_as_botocore_refuses_it() -> None:
    _, quick = _pair()
    with pytest.raises(UnknownServiceError) as raised:
        quick.load_service_model("no-such-service", "service-2")
    # The message still names the services there are (botocore's listing, made for the error)
    assert "s3" in str(raised.value)
    assert "stepfunctions" in str(raised.value)


def test_a_service_model_loads_without_listing_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN botocore's listing made to fail if anything asks for it
    def no_listing(self: Loader, type_name: str) -> list[str]:
        raise AssertionError(f"listed every {type_name} model")

    monkeypatch.setattr(Loader, "list_available_services", no_listing)
    _, quick = _pair()
    # WHEN the models a client needs are loaded THEN they are botocore's
    model = quick.load_service_model("s3", "service-2")
    assert model["metadata"]["serviceId"] == "S3"
    assert quick.load_service_model("stepfunctions", "endpoint-rule-set-1")["version"]


# What the layer's clients load (and one model botocore merges with its "sdk-extras" file).
MODELS = [
    *(
        (service, kind)
        for service in ("s3", "dynamodb", "stepfunctions", "secretsmanager", "events", "lambda")
        for kind in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
    ),
    ("s3", "resources-1"),
    ("dynamodb", "resources-1"),
    ("accessanalyzer", "paginators-1"),
]


def test_the_model_files_parse_to_botocores_data_in_its_order() -> None:
    plain, quick = _pair()
    for service, kind in MODELS:
        try:
            theirs = plain.load_service_model(service, kind)
        except DataNotFoundError as missing:  # not every service has every kind: ours says so too
            with pytest.raises(type(missing)):
                quick.load_service_model(service, kind)
            continue
        ours = quick.load_service_model(service, kind)
        # Same data, same key order everywhere (the JSON text compares both), as plain dicts
        assert json.dumps(ours) == json.dumps(theirs), (service, kind)
        assert type(ours) is dict
    for name in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        assert json.dumps(quick.load_data(name)) == json.dumps(plain.load_data(name)), name
    assert type(quick.load_data("endpoints")["partitions"][0]) is dict


@pytest.mark.usefixtures("aws")  # fake credentials: no client looks further
def test_the_layers_clients_come_from_a_session_with_our_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no default session yet (a new container) and botocore's listing made to fail if used
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.setattr(
        sdk.ModelLoader, "every_service", lambda self, type_name: pytest.fail(f"listed {type_name}")
    )
    # WHEN the layer builds clients
    s3 = sdk.client("s3", region_name="us-east-1")
    sfn = sdk.client("stepfunctions", region_name="us-east-1")
    # THEN they share boto3's default session, whose loader is ours, and work as boto3's do
    assert boto3.DEFAULT_SESSION is sdk.session()
    loader = sdk.session()._session.get_component("data_loader")
    assert isinstance(loader, sdk.ModelLoader)
    assert isinstance(loader.file_loader, sdk.JSONFiles)
    assert BOTO3_DATA in loader.search_paths  # boto3's own models are still found
    assert s3.meta.service_model.service_name == "s3"
    assert callable(s3.upload_fileobj)  # boto3's S3 transfer methods are there
    assert sfn.meta.region_name == "us-east-1"


@pytest.mark.usefixtures("aws")  # fake credentials: no client looks further
def test_a_session_made_elsewhere_first_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = boto3.Session(region_name="eu-west-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", theirs)
    assert sdk.session() is theirs
    assert sdk.client("s3").meta.region_name == "eu-west-1"


def test_extra_model_directories_are_searched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN AWS_DATA_PATH naming a directory with a service model of its own (botocore's data_path)
    model = tmp_path / "picflow-test" / "2026-01-01" / "service-2.json"
    model.parent.mkdir(parents=True)
    metadata = {"apiVersion": "2026-01-01", "serviceId": "PicflowTest", "protocol": "json"}
    model.write_text(json.dumps({"version": "2.0", "metadata": metadata, "operations": {}, "shapes": {}}))
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    # WHEN the layer's session loads it THEN it is found there, and botocore's own models still are
    loader = sdk.session()._session.get_component("data_loader")
    assert loader.search_paths[0] == str(tmp_path)
    assert "picflow-test" in loader.list_available_services("service-2")
    assert loader.load_service_model("picflow-test", "service-2")["metadata"]["serviceId"] == "PicflowTest"
    assert "s3" in loader.list_available_services("service-2")
    assert type(botocore.session.get_session().get_component("data_loader")) is Loader
