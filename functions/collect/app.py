"""Collect: copy the results into the output bucket at once (provider URLs expire), or reuse cached ones."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

import picflow.job.results  # noqa: F401 - every invocation needs it (httpx, Pillow): load it during init
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.collect import collect, reuse

logger = Logger()
# The AWS SDK and httpx (result downloads); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
init_done()


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
