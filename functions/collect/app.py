"""Collect: copy the results into the output bucket at once (provider URLs expire), or reuse cached ones."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

import picflow.job.results  # noqa: F401 - every invocation needs it (httpx, Pillow): load it during init
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.job.collect import collect, reuse

logger = Logger()
# The AWS SDK and httpx (result downloads); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()


@logger.inject_lambda_context(correlation_id_path="state.job_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = event["state"]
    logger.append_keys(
        job_id=state["job_id"], execution_id=state.get("execution_id"), operation=state["operation"]
    )
    metrics.add_dimension(name="operation", value=state["operation"])
    if event.get("action") == "reuse":
        # A result-cache hit: the earlier outputs are copied, nothing is paid.
        out = dict(reuse(state))
        metrics.add_metric(name="JobsReused", unit=MetricUnit.Count, value=1)
        return out
    out = dict(collect(state))
    metrics.add_metric(name="JobsSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="PollsPerJob", unit=MetricUnit.Count, value=(state.get("poll") or {}).get("polls", 0)
    )
    return out
