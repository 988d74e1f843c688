"""Batch report: the batch state machine's last step writes the results manifest (picflow.batch.report),
settling items whose child execution ended outside their jobs."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.aws.services import services
from picflow.batch.report import report

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()


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
