"""One handler per upstream operation: the paid submit and the status check of that operation.

Each is its own Lambda function in template.yaml (own memory, timeout, concurrency and
metrics); the code is shared, and the state machine picks the function from the job.
"""

import gc

# No cyclic GC while the modules load (it would re-scan the growing heap of boto3's and pydantic's
# objects again and again); the heap is frozen and the collector back on at the end of init.
gc.disable()
import time
from collections.abc import Callable
from typing import Any

import picflow.core.catalogue  # noqa: F401 - every invocation needs it: load it during init
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from picflow.job.check import TaskDone, check
from picflow.job.submit import submit
from picflow.net.http import correlated

logger = Logger()
# The AWS SDK and httpx (provider calls); patch_all() would also import every other library X-Ray knows.
tracer = Tracer(patch_modules=("botocore", "httpx"))
metrics = Metrics()
# Everything loaded so far lives as long as the container: freeze it, so the cyclic GC stops
# re-scanning it in every full collection (bench/coldstart.py: ~50 ms less CPU in a first call).
gc.freeze()
# Young collections every 50,000 allocations, not Python's 700: a first call allocates ~75,000
# objects (clients, models) and ~60 young collections of them were ~25 ms of its CPU.
gc.set_threshold(50_000, 20, 100)
gc.enable()

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
