"""Fixtures for the layer's unit tests: moto in-process, with tables built from template.yaml.

No unit test opens a socket: every test under tests/unit gets pytest-socket's ``disable_socket``
here (the tier's rule, STYLE.md 8), so a test that would reach a network fails instead.

The tables are created from the template's own KeySchema/AttributeDefinitions/GSIs/BillingMode,
so a test cannot pass against a schema the deployed stack does not have.

One boto3 session serves the whole run (loading service models is the slow part of a client);
each test gets fresh, empty moto backends from its own ``mock_aws``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from picflow_cli import settings
from picflow_cli.local.stack import load_template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REGION = "us-east-1"
FAKE_CREDENTIALS = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.disable_socket)


@pytest.fixture(scope="session")
def template_resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template(ROOT / "template.yaml")["Resources"]
    return resources


@pytest.fixture(scope="session")
def aws_session() -> boto3.Session:
    return boto3.Session(
        region_name=REGION,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, aws_session: boto3.Session) -> Iterator[boto3.Session]:
    """Fresh moto backends for the test; fake credentials so no client looks any further."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield aws_session


def create_table_from_template(
    session: boto3.Session, resources: dict[str, Any], logical_id: str, name: str
) -> Any:
    props = resources[logical_id]["Properties"]
    schema = {
        key: props[key]
        for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode")
        if key in props
    }
    session.client("dynamodb").create_table(TableName=name, **schema)
    return session.resource("dynamodb").Table(name)


@pytest.fixture
def jobs_table(aws: boto3.Session, template_resources: dict[str, Any]) -> Any:
    return create_table_from_template(aws, template_resources, "JobsTable", "picflow-jobs")


@pytest.fixture
def semaphore_table(aws: boto3.Session, template_resources: dict[str, Any]) -> Any:
    return create_table_from_template(aws, template_resources, "SemaphoreTable", "picflow-semaphore")


@pytest.fixture
def result_cache_table(aws: boto3.Session, template_resources: dict[str, Any]) -> Any:
    return create_table_from_template(aws, template_resources, "ResultCacheTable", "picflow-result-cache")


@pytest.fixture
def s3(aws: boto3.Session) -> Any:
    return aws.client("s3")


@pytest.fixture
def sfn(aws: boto3.Session) -> Any:
    return aws.client("stepfunctions")


@pytest.fixture
def no_ambient_cli_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CLI test sees the developer's environment or a running local stack."""
    for name in (settings.API_URL_ENV, settings.API_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(settings.STATE_FILE_ENV, str(tmp_path / "state.json"))


# The fake result hosts unit tests serve provider results from (names that never resolve).
FAKE_RESULT_HOSTS = ("results.example", "oss.example")


@pytest.fixture(autouse=True)
def result_hosts(monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """Every provider may name results on FAKE_RESULT_HOSTS in the unit tier (as the local stack
    adds the mock's address), and their addresses are exempt from the public-address rule (they
    never resolve). tests/unit/test_url_guard.py clears both to test the guard itself."""
    from picflow.core.catalogue import SPECS

    hosts = "|".join(FAKE_RESULT_HOSTS)
    monkeypatch.setenv("PICFLOW_RESULT_HOSTS", ",".join(f"{p.value}={hosts}" for p in SPECS))
    monkeypatch.setenv("PICFLOW_URL_ALLOWLIST", ",".join(FAKE_RESULT_HOSTS))
    return FAKE_RESULT_HOSTS
