"""Validate: the job state machine's first state. Everything checkable is checked before money is spent."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

# Every invocation validates params (pydantic) and opens the input (Pillow): load them during init.
import picflow.core.images
import picflow.core.params  # noqa: F401
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.job.validate import await_twin, state_from_event, validate

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
