"""S3 trigger: an upload under ``<operation>/`` in the input bucket starts (at most) one job."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.entry import s3events

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = s3events.start_from_s3_event(event)
    metrics.add_metric(name="JobsStarted", unit=MetricUnit.Count, value=sum(1 for s in started if s.created))
    metrics.add_metric(
        name="DuplicateEvents", unit=MetricUnit.Count, value=sum(1 for s in started if not s.created)
    )
    return {"jobs": [{"job_id": s.job_id, "created": s.created} for s in started]}
