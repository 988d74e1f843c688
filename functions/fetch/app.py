"""Batch Fetch: the batch map's first step for a URL item copies the image into the input bucket
(picflow.batch.fetch.fetch_item, through picflow.net.urls' SSRF-checked client)."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.aws.services import services
from picflow.batch.fetch import fetch_item

logger = Logger()
# The AWS SDK and httpx (the fetch); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()


@logger.inject_lambda_context(correlation_id_path="batch_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    svc = services()
    fetch_item(event, event["item"], s3=svc.s3, table=svc.store.table)
