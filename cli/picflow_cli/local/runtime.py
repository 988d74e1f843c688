"""Lambda without Docker: moto's invoke path runs the real handlers in this process.

Every route into a function in moto (boto3 ``invoke``, the Step Functions interpreter,
S3 notifications) goes through ``LambdaFunction._invoke_lambda(event)``, which returns
``(payload_json, errored, logs)``. :func:`install` replaces it with an executor that
imports the function's handler from its ``CodeUri`` (each under its own module name:
every handler file is called ``app.py``), passes a Lambda-like context, and turns an
exception into the ``{"errorType", "errorMessage", "stackTrace"}`` payload Lambda gives
Step Functions, so Retry/Catch match on the exception's class name as in AWS.

Environment: all functions of the template share one set of variables (Globals plus a
few per-function extras that never disagree), applied once to ``os.environ``. Changing
``os.environ`` per invocation would need a lock, and a lock deadlocks when a handler's
S3 write fires a notification that invokes another function synchronously.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "FunctionSpec",
    "LambdaRuntime",
    "defer_s3_notifications",
    "enforce_tolerated_failures",
    "fix_sfn_service_integration",
    "install",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # the deployed FunctionName
    code_dir: Path
    handler: str  # "app.lambda_handler"
    memory_mb: int = 128
    timeout_s: int = 3


@dataclass
class Invocation:
    function: str
    started: float
    duration: float
    errored: bool
    error_type: str | None = None
    event: Any = None


@dataclass
class _Context:
    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline + self.timeout_s - time.monotonic()) * 1000))


class LambdaRuntime:
    """Imports handlers once per code directory and runs them like Lambda would."""

    def __init__(self, functions: dict[str, FunctionSpec]) -> None:
        self.functions = functions
        self._modules: dict[Path, ModuleType] = {}
        self._import_lock = threading.Lock()
        self.invocations: list[Invocation] = []
        # Notified after every invocation: waiters re-check their condition then.
        self.changed = threading.Condition()

    def _module(self, code_dir: Path, module_name: str) -> ModuleType:
        key = code_dir / f"{module_name}.py"
        with self._import_lock:
            module = self._modules.get(key)
            if module is None:
                unique = f"picflow_fn_{code_dir.name}_{module_name}"
                spec = importlib.util.spec_from_file_location(unique, key)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {key}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                spec.loader.exec_module(module)
                self._modules[key] = module
        return module

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        spec = self.functions[name]
        module_name, _, attr = spec.handler.rpartition(".")
        fn: Callable[[Any, Any], Any] = getattr(self._module(spec.code_dir, module_name), attr)
        return fn

    def invoke(self, name: str, event: Any) -> tuple[str, bool, str]:
        spec = self.functions[name]
        context = _Context(spec.name, spec.memory_mb, spec.timeout_s)
        started = time.time()
        errored = False
        error_type = None
        try:
            # Logs go to this process's stdout: capturing them per invocation would mean
            # swapping sys.stdout, which is process-wide while invocations run on threads.
            result = self.handler(name)(event, context)
            payload = json.dumps(result, default=str)
        except Exception as exc:
            errored = True
            error_type = type(exc).__name__
            payload = json.dumps(
                {
                    "errorType": error_type,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-5:],
                }
            )
        with self.changed:
            self.invocations.append(
                Invocation(name, started, time.time() - started, errored, error_type, event)
            )
            self.changed.notify_all()
        return payload, errored, ""


def install(runtime: LambdaRuntime) -> Callable[[], None]:
    """Route moto's Lambda invocations to ``runtime``; returns the undo function."""
    from moto.awslambda.models import LambdaFunction

    original = LambdaFunction._invoke_lambda

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        if self.function_name not in runtime.functions:
            return original(self, event)
        parsed = json.loads(event) if isinstance(event, str | bytes) else (event or {})
        return runtime.invoke(self.function_name, parsed)

    LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign]

    def undo() -> None:
        LambdaFunction._invoke_lambda = original  # type: ignore[method-assign]

    return undo


def defer_s3_notifications() -> Callable[[], None]:
    """S3 events as AWS sends them; returns the undo function.

    Events carry the object's ``versionId`` and a ``sequencer`` (moto's have neither).

    moto sends a PUT's notification before it stores the object's metadata, so a trigger
    reading ``x-amz-meta-*`` would see none. Events raised while a key request is being
    handled are held and sent when the handler returns.
    """
    from moto.s3 import notifications
    from moto.s3.responses import S3Response

    held = threading.local()
    original_send = notifications.send_event
    original_key_response = S3Response._key_response
    original_event = notifications._get_s3_event
    sequence = itertools.count(1)

    def _get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        # AWS records carry the object's versionId and a sequencer (ordering, deduplication).
        event: dict[str, Any] = original_event(event_name, bucket, key, notification_id)
        obj = event["Records"][0]["s3"]["object"]
        if getattr(key, "version_id", None) and key.version_id != "null":
            obj["versionId"] = key.version_id
        obj["sequencer"] = f"{next(sequence):016X}"
        return event

    def send_event(*args: Any, **kwargs: Any) -> None:
        pending = getattr(held, "pending", None)
        if pending is None:
            original_send(*args, **kwargs)
        else:
            pending.append((args, kwargs))

    def _key_response(self: Any, request: Any, full_url: str) -> Any:
        if getattr(held, "pending", None) is not None:
            return original_key_response(self, request, full_url)
        held.pending = []
        try:
            response = original_key_response(self, request, full_url)
        finally:
            pending, held.pending = held.pending, None
        for args, kwargs in pending:
            original_send(*args, **kwargs)
        return response

    notifications.send_event = send_event
    notifications._get_s3_event = _get_s3_event
    S3Response._key_response = _key_response  # type: ignore[method-assign]

    def undo() -> None:
        notifications.send_event = original_send
        notifications._get_s3_event = original_event
        S3Response._key_response = original_key_response  # type: ignore[method-assign]

    return undo


def fix_sfn_service_integration() -> Callable[[], None]:
    """``states:startExecution(.sync:2)`` as AWS runs it; returns the undo function.

    moto's interpreter hands the state's PascalCase parameters (``StateMachineArn``) to
    boto3, which wants camelCase, and passes boto3's camelCase answers (``executionArn``,
    ``output``) to the state, which AWS gives in PascalCase (``$.Output``). Both
    directions are translated here, for the Step Functions integration only.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    original_params = StateTaskServiceSfn._normalise_parameters
    original_eval = StateTaskServiceSfn._eval_service_task
    original_response = StateTaskServiceSfn._normalise_response

    def _rename(mapping: Any, first: Callable[[str], str]) -> None:
        if isinstance(mapping, dict):
            for key in list(mapping):
                mapping[first(key[0]) + key[1:]] = mapping.pop(key)

    def normalise_parameters(self: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        original_params(self, parameters, *args, **kwargs)
        _rename(parameters, str.lower)

    def normalise_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        _rename(response, str.upper)

    def eval_service_task(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
        result = original_eval(self, env, *args, **kwargs)
        _rename(env.stack[-1], str.upper)
        return result

    StateTaskServiceSfn._normalise_parameters = normalise_parameters  # type: ignore[method-assign]
    StateTaskServiceSfn._normalise_response = normalise_response  # type: ignore[method-assign]
    StateTaskServiceSfn._eval_service_task = eval_service_task  # type: ignore[method-assign]

    def undo() -> None:
        StateTaskServiceSfn._normalise_parameters = original_params  # type: ignore[method-assign]
        StateTaskServiceSfn._normalise_response = original_response  # type: ignore[method-assign]
        StateTaskServiceSfn._eval_service_task = original_eval  # type: ignore[method-assign]

    return undo


def enforce_tolerated_failures() -> Callable[[], None]:
    """A Distributed Map fails past its ToleratedFailurePercentage/Count, as in AWS; returns the undo.

    moto evaluates both fields (``MapRunRecord`` holds them) but never acts on them: a map run
    with every item failed still succeeds. Here the run's item counts are checked when it ends
    and, past the threshold, the state fails with ``States.ExceedToleratedFailureThreshold``
    (AWS checks as items fail and stops the remaining ones early; the outcome is the same).
    """
    from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = DistributedIterationComponent._map_run

    def _map_run(self: Any, env: Any, eval_input: Any) -> None:
        original(self, env, eval_input)
        record = eval_input.map_run_record
        counts = record.item_counter
        total = counts.total.get()
        failed = counts.failed.get() + counts.timed_out.get()
        percentage = float(record.tolerated_failure_percentage or 0)
        count = int(record.tolerated_failure_count or 0)
        # A threshold left at 0 is not set; with neither set, any failed item fails the run.
        limits = [failed > count] if count else []
        if percentage:
            limits.append(100.0 * failed / max(total, 1) > percentage)
        if not (any(limits) if limits else failed > 0):
            return
        error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
        cause = f"{failed} of {total} items failed; tolerated: {percentage:g}% or {count} items"
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=error,
                event_type=HistoryEventType.MapRunFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    mapRunFailedEventDetails=MapRunFailedEventDetails(error=error.error_name, cause=cause)
                ),
            )
        )

    DistributedIterationComponent._map_run = _map_run  # type: ignore[method-assign]

    def undo() -> None:
        DistributedIterationComponent._map_run = original  # type: ignore[method-assign]

    return undo
