"""Batch report: the batch state machine's last step writes the results manifest (picflow.batch.report),
settling items whose child execution ended outside their jobs."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.aws.services import services
from picflow.batch.report import report
from picflow.core.warm import init_done

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="batch.batch_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    summary = report(
        event["batch"],
        s3=svc.s3,
        table=svc.store.table,
        sfn=svc.sfn,
        state_machines=event["state_machines"],
        coordination=svc.coordination_table,
    )
    metrics.add_metric(name="BatchItems", unit=MetricUnit.Count, value=summary["total"])
    metrics.add_metric(name="BatchItemsReused", unit=MetricUnit.Count, value=summary["reused"])
    return summary
