"""What the Lambda fork server imports once, so that every execution environment forked from it
starts with it loaded: the Python runtime's SDK, the layer's dependencies and the layer itself
(as a Lambda execution environment has its layer on the path before the handler is imported).

Import-safe by design: the layer reads its configuration lazily, per invocation.
"""

from __future__ import annotations

import contextlib
import importlib
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
