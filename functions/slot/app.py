"""Provider slot: acquire before the paid call, release after (or on any failure path)."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.slot import acquire_slot, release_slot

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="state.job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = {**event["state"], "job_id": event["state"].get("job_id") or event.get("execution_name")}
    logger.append_keys(job_id=state["job_id"], execution_id=state.get("execution_id"))
    if event["action"] == "acquire":
        return dict(acquire_slot(state))
    return dict(release_slot(state))
