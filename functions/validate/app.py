"""Validate: the job state machine's first state. Everything checkable is checked before money is spent."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

# Every invocation validates params (pydantic) and opens the input (Pillow): load them during init.
import picflow.core.images
import picflow.core.params  # noqa: F401
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.validate import await_twin, state_from_event, validate

logger = Logger()
# Only the AWS SDK: patch_all() would also import and patch httpx, which this function never calls.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
init_done()


@logger.inject_lambda_context(correlation_id_path="execution_name")
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "twin":
        # Waiting on an identical job that is paying: its results, or take over.
        state = event["state"]
        logger.append_keys(job_id=state["job_id"], execution_id=state.get("execution_id"))
        return await_twin(state)
    state = state_from_event(event)
    logger.append_keys(job_id=state["job_id"], execution_id=state.get("execution_id"))
    return validate(state)
