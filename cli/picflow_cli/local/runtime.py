"""Lambda without Docker: moto's invoke path runs the real handlers in worker processes.

Every route into a function in moto (boto3 ``invoke``, the Step Functions interpreter,
S3 notifications) goes through ``LambdaFunction._invoke_lambda(event)``, which returns
``(payload_json, errored, logs)``. :func:`install` replaces it with :class:`LambdaRuntime`,
which runs each invocation as Lambda does, in an execution environment of that function:

- a process per environment (:mod:`picflow_cli.local.lambda_worker`), forked from a fork
  server that has the AWS SDK, powertools and the layer imported (a cold start costs a fork
  and the handler module, not seconds of imports);
- one invocation at a time per process; a function gets another process when all of its
  are busy (as Lambda scales out), and idle ones stay warm for the next invocation, so module
  globals live as long as an environment and are never shared between concurrent invocations;
- the environment variables of the function's *deployed configuration* (read from moto at each
  invocation: ``UpdateFunctionConfiguration`` retires the environments of the old one, as on
  AWS) plus Lambda's reserved ones, and credentials of its own (see ``credentials``);
- the configured ``Timeout``: past it the process is killed and the invocation fails with
  ``Sandbox.Timedout`` (``Task timed out after N.NN seconds``), as Lambda answers; a
  process that dies fails it with ``Runtime.ExitError``; a handler module that cannot be
  imported with ``Runtime.ImportModuleError``;
- the memory it used: each invocation records its process's peak RSS (``max_memory_mb``, as
  the ``Max Memory Used`` of Lambda's REPORT line); ``MemorySize`` is reported, not enforced.

Handler exceptions become the ``{"errorType", "errorMessage", "stackTrace"}`` payload Lambda
gives Step Functions, so Retry/Catch match on the exception's class name as in AWS.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import multiprocessing.spawn
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from picflow_cli.local.lambda_worker import WorkerSpec, error_payload, serve

__all__ = [
    "FunctionSpec",
    "Invocation",
    "LambdaRuntime",
    "defer_s3_notifications",
    "enforce_tolerated_failures",
    "fix_sfn_service_integration",
    "install",
]

log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"
# The fork server imports this (the SDK, powertools and the layer) once; each worker is a fork of it.
PRELOAD = ["picflow_cli.local.lambda_preload"]
INIT_TIMEOUT_S = 30.0  # Lambda gives init 10 s; a loaded test machine needs more
IDLE_PER_FUNCTION = 16  # warm environments kept per function (bursts past it fork anew)


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
    logs: str = ""
    max_memory_mb: int = 0
    cold: bool = False
    init_duration: float = 0.0  # a cold start's init (fork and handler import), as Lambda's REPORT


@dataclass(frozen=True)
class _Config:
    """The part of a function's configuration an execution environment is built from."""

    handler: str
    timeout_s: int
    memory_mb: int
    variables: tuple[tuple[str, str], ...]


@dataclass
class _Worker:
    config: _Config
    process: Any  # multiprocessing.Process (forkserver context)
    conn: Connection
    invocations: int = 0
    started: float = 0.0
    init_duration: float = 0.0

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # already gone
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


@dataclass
class _Pool:
    idle: list[_Worker] = field(default_factory=list)
    busy: int = 0


_starting = threading.local()
_preparation_data = multiprocessing.spawn.get_preparation_data


def _without_main(name: str) -> dict[str, Any]:
    """multiprocessing re-imports the parent's ``__main__`` in every child (pytest's script, the
    CLI, any script that starts a stack): a worker is a Lambda environment and needs none of it,
    and a script without a ``__main__`` guard would run again in each one."""
    data: dict[str, Any] = _preparation_data(name)
    if getattr(_starting, "worker", False):
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
    return data


def _forkserver() -> Any:
    multiprocessing.spawn.get_preparation_data = _without_main
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def start_forkserver() -> None:
    """Start the fork server now (it imports the layer in the background), so the first
    invocation does not wait for it."""
    from multiprocessing import forkserver

    _forkserver()
    forkserver.ensure_running()


class LambdaRuntime:
    """Runs invocations in execution environments (worker processes) per function."""

    def __init__(
        self,
        functions: dict[str, FunctionSpec],
        *,
        base_environment: Mapping[str, str] | None = None,
        credentials: Callable[[str], Mapping[str, str]] | None = None,
    ) -> None:
        self.functions = functions
        self.base_environment = dict(base_environment or {})
        self.credentials = credentials or (lambda name: {})
        self.invocations: list[Invocation] = []
        # Notified after every invocation: waiters re-check their condition then.
        self.changed = threading.Condition()
        self._pools: dict[str, _Pool] = {name: _Pool() for name in functions}
        self._lock = threading.Lock()
        self._context = _forkserver()
        self._closed = False
        # Every invocation's logs are kept in Invocation.logs; those of failed invocations (all,
        # with PICFLOW_LOCAL_VERBOSE) are also written to this process's stdout, where pytest
        # shows them beside a failing test and `picflow local up` on its console.
        self.echo_all_logs = bool(os.environ.get("PICFLOW_LOCAL_VERBOSE"))

    def add(self, spec: FunctionSpec) -> None:
        """Run one more function (created in moto by the caller)."""
        with self._lock:
            self.functions[spec.name] = spec
            self._pools.setdefault(spec.name, _Pool())

    # --- configuration ------------------------------------------------------------

    def _config(self, name: str) -> _Config:
        """The function's configuration as deployed now (moto's Lambda backend)."""
        from moto.awslambda.models import lambda_backends

        fn = lambda_backends[ACCOUNT][REGION].get_function(name)
        variables = {str(k): str(v) for k, v in (fn.environment_vars or {}).items()}
        return _Config(
            handler=str(fn.handler),
            timeout_s=int(fn.timeout),
            memory_mb=int(fn.memory_size),
            variables=tuple(sorted(variables.items())),
        )

    def _environment(self, name: str, config: _Config) -> dict[str, str]:
        """Lambda's reserved variables, the function's own, and its credentials."""
        spec = self.functions[name]
        reserved = {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": config.handler,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": "/tmp",  # noqa: S108 - Lambda's HOME is not writable either; /tmp is
            # The developer's ~/.aws must not leak into a function.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        return {**self.base_environment, **reserved, **dict(config.variables), **self.credentials(name)}

    # --- workers ------------------------------------------------------------------

    def _start_worker(self, name: str, config: _Config) -> tuple[_Worker, str | None]:
        """A new execution environment; with the init error's payload if its init failed."""
        spec = self.functions[name]
        started = time.monotonic()
        parent, child = self._context.Pipe()
        worker_spec = WorkerSpec(
            function_name=name,
            code_dir=str(spec.code_dir),
            handler=config.handler,
            memory_mb=config.memory_mb,
            environment=self._environment(name, config),
        )
        process = self._context.Process(target=serve, args=(child, worker_spec), daemon=True, name=name)
        _starting.worker = True
        try:
            process.start()
        finally:
            _starting.worker = False
        child.close()
        worker = _Worker(config, process, parent)
        worker.started = started
        init_error = None
        if not parent.poll(INIT_TIMEOUT_S):
            init_error = error_payload(
                "Runtime.InitTimeout", f"init did not finish in {INIT_TIMEOUT_S:.0f} s"
            )
        else:
            try:
                _, failure = parent.recv()
            except EOFError:
                failure = (error_payload("Runtime.ExitError", "Runtime exited during init"), "")
            if failure is not None:
                init_error, init_logs = failure
                self._echo(name, init_logs)
        worker.init_duration = time.monotonic() - started
        if init_error is not None:
            self._retire(worker)
        return worker, init_error

    def _take(self, name: str, config: _Config) -> tuple[_Worker | None, bool]:
        """An idle environment of this configuration, or None (the caller starts one)."""
        with self._lock:
            pool = self._pools[name]
            for worker in list(pool.idle):
                if worker.config != config:  # an older configuration: retired, as on AWS
                    pool.idle.remove(worker)
                    threading.Thread(target=worker.stop, daemon=True).start()
            pool.busy += 1
            if pool.idle:
                return pool.idle.pop(), False
            return None, True

    def _give_back(self, name: str, worker: _Worker | None) -> None:
        with self._lock:
            pool = self._pools[name]
            pool.busy -= 1
            if worker is None:
                return
            if self._closed or len(pool.idle) >= IDLE_PER_FUNCTION:
                threading.Thread(target=worker.stop, daemon=True).start()
            else:
                pool.idle.append(worker)

    @staticmethod
    def _retire(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def _echo(self, name: str, logs: str, errored: bool = True) -> None:
        if logs and (errored or self.echo_all_logs):
            sys.stdout.write(logs if logs.endswith("\n") else logs + "\n")
            sys.stdout.flush()

    def prewarm(self) -> threading.Thread:
        """One execution environment per function, started in the background now (as provisioned
        concurrency would), so a function's first invocation does not wait for its init."""

        def warm() -> None:
            for name in list(self.functions):
                if self._closed:
                    return
                config = self._config(name)
                with self._lock:
                    pool = self._pools[name]
                    if pool.idle or pool.busy:
                        continue  # an invocation got there first
                    pool.busy += 1
                worker, init_error = self._start_worker(name, config)
                self._give_back(name, None if init_error else worker)

        thread = threading.Thread(target=warm, name="lambda-prewarm", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop every execution environment (the local stack is going down)."""
        with self._lock:
            self._closed = True
            workers = [w for pool in self._pools.values() for w in pool.idle]
            for pool in self._pools.values():
                pool.idle.clear()
        for worker in workers:  # all told at once, then waited for: each exits on its own
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        for worker in workers:
            worker.stop()

    # --- invoke -------------------------------------------------------------------

    def invoke(self, name: str, event: Any) -> tuple[str, bool, str]:
        config = self._config(name)
        request_id = str(uuid.uuid4())
        started = time.time()
        worker, cold = self._take(name, config)
        logs = ""
        max_rss = 0
        init = 0.0
        try:
            if worker is None:
                worker, init_error = self._start_worker(name, config)
                init = worker.init_duration
                if init_error is not None:
                    payload, errored = init_error, True
                    worker = None
                    return self._record(
                        name, started, event, payload, errored, logs, max_rss, init if cold else None
                    )
            worker.conn.send((request_id, json.dumps(event, default=str), config.timeout_s))
            if not worker.conn.poll(config.timeout_s):
                self._retire(worker)
                worker = None
                payload = error_payload(
                    "Sandbox.Timedout",
                    f"RequestId: {request_id} Error: Task timed out after {config.timeout_s:.2f} seconds",
                )
                return self._record(
                    name, started, event, payload, True, logs, max_rss, init if cold else None
                )
            try:
                payload, errored, logs, max_rss = worker.conn.recv()
            except EOFError:
                worker.process.join(timeout=5)
                code = worker.process.exitcode
                self._retire(worker)
                worker = None
                payload = error_payload(
                    "Runtime.ExitError",
                    f"RequestId: {request_id} Error: Runtime exited with error: exit status {code}",
                )
                return self._record(
                    name, started, event, payload, True, logs, max_rss, init if cold else None
                )
            worker.invocations += 1
            return self._record(name, started, event, payload, errored, logs, max_rss, init if cold else None)
        finally:
            self._give_back(name, worker)

    def _record(
        self,
        name: str,
        started: float,
        event: Any,
        payload: str,
        errored: bool,
        logs: str,
        max_rss: int,
        init: float | None,
    ) -> tuple[str, bool, str]:
        error_type = json.loads(payload).get("errorType") if errored else None
        self._echo(name, logs, errored)
        with self.changed:
            self.invocations.append(
                Invocation(
                    name,
                    started,
                    time.time() - started,
                    errored,
                    error_type,
                    event,
                    logs,
                    max_rss,
                    cold=init is not None,
                    init_duration=init or 0.0,
                )
            )
            self.changed.notify_all()
        return payload, errored, logs


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
