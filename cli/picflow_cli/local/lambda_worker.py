"""One Lambda execution environment: a process that serves one function, one invocation at a time.

The local runtime (:mod:`picflow_cli.local.runtime`) forks these from a fork server that has
already imported :mod:`picflow_cli.local.lambda_preload` (the AWS SDK, powertools, pydantic,
httpx, pillow and the picflow layer), so a new environment starts in milliseconds, not in the
seconds an import of all that takes. Nothing here may import moto or the local stack: a worker
is the Lambda side.

Protocol over the worker's end of a ``multiprocessing`` pipe (all JSON text, as Lambda's):

- the worker sends ``("ready", None)`` once the handler module is imported, or
  ``("ready", error_payload)`` if the import failed (it then exits, as a failed init does);
- the parent sends ``(request_id, event_json, timeout_s)`` and the worker answers
  ``(payload_json, errored, logs, max_rss_mb)``; ``None`` asks it to exit.

What a handler writes to stdout/stderr (its logs) is captured per invocation, as Lambda sends
each invocation's lines to CloudWatch, and returned with the answer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEBUG_LOGS_VARIABLE", "WorkerSpec", "error_payload", "serve"]

# Set by a test that must see every log record of the handlers (tests/e2e/test_security_e2e.py):
# the root logger at DEBUG, each record written whole as JSON (the AWS SDK's own stay at INFO).
DEBUG_LOGS_VARIABLE = "PICFLOW_LOCAL_DEBUG_LOGS"


@dataclass(frozen=True)
class WorkerSpec:
    """What one execution environment runs: picklable, sent to the fork server."""

    function_name: str
    code_dir: str
    handler: str  # "app.lambda_handler"
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    """The Lambda context object handlers receive."""

    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float  # time.monotonic() at which the invocation times out
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    @property
    def invoked_function_arn(self) -> str:
        region = os.environ.get("AWS_REGION", "us-east-1")
        return f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def error_payload(error_type: str, message: str, stack: list[str] | None = None) -> str:
    return json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": stack or []})


class _JsonRecords(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        text = json.dumps(vars(record), default=str)
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        sys.stderr.write(record.getMessage() + " " + text + "\n")


def _debug_logs() -> None:
    """Every record of every logger at DEBUG, beside (never before) the handler's own handlers:
    the root, the loggers that have handlers (powertools' does not propagate) and picflow's/httpx's."""
    handler = _JsonRecords(logging.DEBUG)
    loggers = [logging.getLogger()] + [
        lg
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger) and (lg.handlers or name.startswith(("picflow", "httpx")))
    ]
    for lg in loggers:
        lg.addHandler(handler)  # appended: powertools reads its formatter from handlers[0]
        if lg.name.startswith(("picflow", "httpx")) or lg is logging.getLogger():
            lg.setLevel(logging.DEBUG)
    # botocore at DEBUG prints whole responses (GetSecretValue's too): Lambda never runs it so.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        lg = logging.getLogger(name)
        lg.setLevel(max(lg.level, logging.INFO))


class _InitError(Exception):
    """An init failure with Lambda's error type (``Runtime.ImportModuleError``, ...)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def _load_handler(spec: WorkerSpec) -> Callable[[Any, Any], Any]:
    module_name, _, attr = spec.handler.rpartition(".")
    path = Path(spec.code_dir) / f"{module_name}.py"
    if not path.is_file():
        raise _InitError(
            "Runtime.ImportModuleError",
            f"Unable to import module '{module_name}': No module named '{module_name}'",
        )
    # Every function's file is app.py: a name of its own keeps sys.modules unambiguous.
    unique = f"picflow_fn_{Path(spec.code_dir).name}_{module_name}"
    module_spec = importlib.util.spec_from_file_location(unique, path)
    if module_spec is None or module_spec.loader is None:
        raise _InitError("Runtime.ImportModuleError", f"Unable to import module '{module_name}'")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[unique] = module
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        raise _InitError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    handler: Callable[[Any, Any], Any] | None = getattr(module, attr, None)
    if handler is None:
        raise _InitError("Runtime.HandlerNotFound", f"Handler '{attr}' missing on module '{module_name}'")
    return handler


class _Logs:
    """fd 1 and 2 into one file: what the process writes during an invocation is its log."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        os.dup2(self.file.fileno(), 1)
        os.dup2(self.file.fileno(), 2)

    def take(self) -> str:
        sys.stdout.flush()
        sys.stderr.flush()
        self.file.seek(0)
        text = self.file.read().decode(errors="replace")
        self.file.seek(0)
        self.file.truncate()
        return text


def serve(conn: Any, spec: WorkerSpec) -> None:
    """The process's whole life: init once, then invocations until told to stop."""
    os.environ.clear()
    os.environ.update(spec.environment)
    # With metrics off (the local stack has no CloudWatch), powertools warns of per-invocation
    # dimensions piling up and of nothing to publish: noise only here, where nothing is flushed.
    warnings.filterwarnings("ignore", "Dimension '.*' has already been added")
    warnings.filterwarnings("ignore", "No application metrics to publish")
    os.chdir(spec.code_dir)  # LAMBDA_TASK_ROOT: the function's code is the working directory
    logs = _Logs()
    try:
        handler = _load_handler(spec)
    except Exception as exc:
        kind = exc.error_type if isinstance(exc, _InitError) else type(exc).__name__
        conn.send(
            ("ready", (error_payload(kind, str(exc), traceback.format_exception(exc)[-5:]), logs.take()))
        )
        return
    if os.environ.get(DEBUG_LOGS_VARIABLE):
        _debug_logs()
    from picflow_cli.local import faults  # chaos runs only: S3 errors, crashes (off by default)

    faults.install_s3_faults()
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        request_id, event_json, timeout_s = message
        context = Context(
            function_name=spec.function_name,
            memory_limit_in_mb=spec.memory_mb,
            aws_request_id=request_id,
            deadline=time.monotonic() + timeout_s,
            log_group_name=os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""),
            log_stream_name=os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""),
        )
        errored = False
        crash = faults.crash_timer()
        try:
            result = handler(json.loads(event_json), context)
            payload = json.dumps(result, default=str)
        except Exception as exc:
            errored = True
            payload = error_payload(type(exc).__name__, str(exc), traceback.format_exception(exc)[-5:])
        finally:
            if crash is not None:
                crash.cancel()
        max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        conn.send((payload, errored, logs.take(), max_rss_mb))
