"""The jobs API: API Gateway (REST, API key) → the resolver in picflow.api.app."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.api.app import app
from picflow.core.warm import init_done

logger = Logger()
# The AWS SDK only: patching httpx imports it (~25 ms of every cold start), and the API uses httpx
# for URL inputs alone (one GET each, inside the request's own segment); patch_all() would also
# import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = app.resolve(event, context)
    # Api2xx / Api4xx / Api5xx: refusals and bugs as rates, without a dimension per route.
    metrics.add_metric(name=f"Api{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1)
    return response
