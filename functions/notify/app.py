"""Notify: an EventBridge event per finished job, and a signed POST to its notify_url."""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
from typing import Any

import picflow.net.webhooks  # noqa: F401 - every invocation needs it (httpx): load it during init
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.job.finish import notify

logger = Logger()
# The AWS SDK and httpx (the notice POST); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()


@logger.inject_lambda_context(correlation_id_path="state.job_id")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    out = notify(event["state"], event.get("execution_name"))
    if "error" in out["notified"]:
        # The job's results are stored either way; the notice alone is lost.
        logger.warning("notice not delivered", extra={"error": out["notified"]["error"]})
    return out
