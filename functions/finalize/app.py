"""Finalize: record a failed job with the provider's code and message."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.finish import record_failure

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    logger.append_keys(job_id=event["state"].get("job_id") or event.get("execution_name"))
    out = record_failure(event["state"], event.get("execution_name"))
    metrics.add_dimension(name="error", value=str(out["error"].get("type")))
    metrics.add_metric(name="JobsFailed", unit=MetricUnit.Count, value=1)
    return out
