"""Provider callbacks: the only open API route; the per-job secret in its URL authenticates it."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.aws.services import services
from picflow.core.warm import init_done
from picflow.entry import callbacks

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="pathParameters.job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    path = event.get("pathParameters") or {}
    outcome = callbacks.handle_callback(
        str(path.get("job_id", "")),
        str(path.get("secret", "")),
        callbacks.body_of(event),
        services(),
    )
    metrics.add_dimension(name="verdict", value=outcome.verdict)
    metrics.add_metric(name="ProviderCallbacks", unit=MetricUnit.Count, value=1)
    logger.info("provider callback", extra={"verdict": outcome.verdict})
    return {
        "statusCode": outcome.status_code,
        "headers": {"Content-Type": "application/json"},
        "body": f'{{"verdict": "{outcome.verdict}"}}',
    }
