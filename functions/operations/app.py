"""One handler per upstream operation: the paid submit and the status check of that operation.

Each is its own Lambda function in template.yaml (own memory, timeout, concurrency and
metrics); the code is shared, and the state machine picks the function from the job.
"""

import gc

gc.disable()  # until init_done(): picflow.core.warm says why
import time
from collections.abc import Callable
from typing import Any

import picflow.core.catalogue  # noqa: F401 - every invocation needs it: load it during init
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.core.warm import init_done
from picflow.job.check import TaskDone, check
from picflow.job.submit import submit
from picflow.net.http import correlated

logger = Logger()
# The AWS SDK and httpx (provider calls); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
init_done()

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def _operation(name: str) -> Handler:
    @logger.inject_lambda_context(correlation_id_path="state.job_id")
    @tracer.capture_lambda_handler
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        state = event["state"]
        logger.append_keys(
            job_id=state["job_id"], execution_id=state.get("execution_id"), operation=name, step=event["step"]
        )
        metrics.add_dimension(name="operation", value=name)
        started = time.perf_counter()
        out: dict[str, Any]
        with correlated(str(state["job_id"])):  # every upstream call carries the job id
            if event["step"] == "submit":
                out = dict(submit(name, state, task_token=event.get("task_token")))
                metrics.add_metric(name="UpstreamSubmits", unit=MetricUnit.Count, value=1)
            else:
                out = dict(check(name, state))
                metrics.add_metric(name="StatusChecks", unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name="UpstreamLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000
        )
        for field, value in (out.get("balance") or {}).items():
            if value is not None:
                metrics.add_metric(name=f"Provider_{field}", unit=MetricUnit.Count, value=float(value))
        if event["step"] == "check" and out.get("state") == "done":
            # Done: Check's Catch routes TaskDone to Collect (no Choice state a read).
            raise TaskDone(out)
        return out

    handler.__name__ = name
    return handler


segmentation = _operation("segmentation")
background = _operation("background")
idphoto = _operation("idphoto")
replace_background = _operation("replace_background")
redraw = _operation("redraw")
vectorize = _operation("vectorize")
face_enhance = _operation("face_enhance")
seamless = _operation("seamless")
remove_fabric = _operation("remove_fabric")
edit_image = _operation("edit_image")
extract_pattern = _operation("extract_pattern")
remove_diamonds = _operation("remove_diamonds")
expand_image = _operation("expand_image")
remove_watermark = _operation("remove_watermark")
