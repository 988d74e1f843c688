"""The jobs API: API Gateway (REST, API key) → the resolver in picflow.api.app."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.api.app import app

logger = Logger()
# The AWS SDK only: patching httpx imports it (~25 ms of every cold start), and the API uses httpx
# for URL inputs alone (one GET each, inside the request's own segment); patch_all() would also
# import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    # Api2xx / Api4xx / Api5xx: refusals and bugs as rates, without a dimension per route.
    metrics.add_metric(name=f"Api{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
    return response
