"""What the Lambda fork server imports once, so that every execution environment forked from it
starts with it loaded: the Python runtime's SDK, the layer's dependencies and the layer itself
(as a Lambda execution environment has its layer on the path before the handler is imported).

Import-safe by design: the layer reads its configuration lazily, per invocation.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil

import picflow_cli.local.lambda_worker  # noqa: F401 - the workers' entry point

with contextlib.suppress(ImportError):
    import boto3  # noqa: F401
    import botocore.session  # noqa: F401
    import httpx  # noqa: F401
    import picflow
    import pydantic  # noqa: F401
    from aws_lambda_powertools import Logger, Metrics, Tracer  # noqa: F401
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver  # noqa: F401
    from PIL import Image  # noqa: F401

    # Every module of the layer, whatever its layout: each handler imports some of them.
    for module in pkgutil.walk_packages(picflow.__path__, "picflow."):
        with contextlib.suppress(Exception):  # a broken module fails in its handler, as on Lambda
            importlib.import_module(module.name)

# What the handlers import on their first invocation rather than at init (measured).
for name in (
    "boto3.s3.transfer",
    "boto3.dynamodb.conditions",
    "boto3.dynamodb.types",
    "aws_lambda_powertools.utilities.parameters",
    "aws_lambda_powertools.utilities.typing",
):
    with contextlib.suppress(ImportError):
        importlib.import_module(name)


def _warm_sdk() -> None:
    """Parse the SDK's models once, here: every worker's first client then costs ~50 ms, not the
    ~600 ms of reading service, endpoint-rule and resource JSON per process.

    Only the layer's session (boto3's default, picflow.net.sdk) and its loader are made: no client,
    so no credentials or region are resolved (each worker resolves its own, from its own
    environment, at its first client). The developer's ~/.aws stays out, as it does in the workers.
    """
    from picflow.net import sdk

    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    loader = sdk.session()._session.get_component("data_loader")
    for service in ("s3", "dynamodb", "stepfunctions", "secretsmanager", "events", "lambda", "sqs"):
        for kind in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2", "resources-1"):
            with contextlib.suppress(Exception):  # not every service has every kind
                loader.load_service_model(service, kind)
    for data in ("endpoints", "partitions", "sdk-default-configuration", "_retry"):
        with contextlib.suppress(Exception):
            loader.load_data(data)


with contextlib.suppress(Exception):  # an SDK that changed its internals only makes starts slower
    _warm_sdk()
