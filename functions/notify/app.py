"""Notify: an EventBridge event per finished job, and a signed POST to its notify_url."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow import workflow

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context(correlation_id_path="state.job_id")
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return workflow.notify(event["state"], event.get("execution_name"))
