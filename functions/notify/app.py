"""Notify: an EventBridge event per finished job, and a signed POST to its notify_url."""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
from typing import Any

import picflow.net.webhooks  # noqa: F401 - every invocation needs it (httpx): load it during init
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.finish import notify

logger = Logger()
# The AWS SDK and httpx (the notice POST); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
init_done()


@logger.inject_lambda_context(correlation_id_path="state.job_id")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    out = notify(event["state"], event.get("execution_name"))
    if "error" in out["notified"]:
        # The job's results are stored either way; the notice alone is lost.
        logger.warning("notice not delivered", extra={"error": out["notified"]["error"]})
    return out
