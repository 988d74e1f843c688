"""Batch Fetch: the batch map's first step for a URL item copies the image into the input bucket
(picflow.batch.fetch.fetch_item, through picflow.net.urls' SSRF-checked client)."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.aws.services import services
from picflow.batch.fetch import fetch_item
from picflow.core.warm import init_done

logger = Logger()
# The AWS SDK and httpx (the fetch); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="batch_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    svc = services()
    fetch_item(event, event["item"], s3=svc.s3, table=svc.store.table)
