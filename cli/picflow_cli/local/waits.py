"""How the local interpreter waits: a floor under a loop's Wait states, and a child execution's
end noticed when it happens.

1. **The poll floor.** The local stack deploys ``WaitScale`` 0, so every wait the handlers hand a
   Wait state is 0 s (moto's Wait really sleeps: production's seconds would make each test take
   minutes). A loop of a Wait and a Task (WaitToCheck and Check while an upstream task runs,
   WaitForSlot and AcquireSlot, WaitForTwin and Twin, WaitThrottled and Submit) then goes round
   as fast as the stack answers, each round a Lambda invocation, two transitions and its AWS
   requests, for as long as the upstream works: in issue 19's 2,000-item batch a polled item read
   its status ~37 times (80.6 transitions an item) against the mock's render worker, which the
   spin itself starved. :func:`install` makes every Wait state after an execution's first sleep at
   least ``floor`` real seconds (:data:`WAIT_FLOOR`): the first (FirstWait, a first WaitForSlot)
   stays as scaled, so a job whose task is done at its first read pays nothing, and a loop goes
   round at most 1 / floor times a second. A wait of whole seconds (``WaitScale`` 1) is unchanged.
   Only the sleep changes: the history, the transitions and every handler's answer are the same.

2. **A child execution's end.** A ``states:startExecution.sync`` Task (a batch's map child for
   each item, a pipeline's jobs) calls DescribeExecution every 0.5 s until the child ends
   (moto's ``_DELAY_SECONDS_SYNC_CONDITION_CHECK``), so each item ended up to 0.5 s late and the
   16 children of a batch paid ~32 DescribeExecution requests a second. :func:`install` wakes the
   parent when the child's execution ends (moto's one place where an execution's status becomes
   final, ``BaseExecutionWorkerCommunication.terminated``), and reads it then; it still looks every
   :data:`SYNC_FALLBACK` seconds in case a wake-up is missed. AWS does not poll the parent's
   child either: it resumes the parent on the child's completion event.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["SYNC_FALLBACK", "WAIT_FLOOR", "ChildEnds", "install"]

# Real seconds: a polled item reads at most ~4 times a second, and a test's job whose task runs
# a few reads pays ~0.25 s a read (tests/e2e/test_waits_e2e.py's 0.75 s no-progress limit holds).
WAIT_FLOOR = 0.25
SYNC_FALLBACK = 5.0  # a missed wake-up costs this much at most; terminated() is the only end


class ChildEnds:
    """Execution ARN -> the events of the parents waiting for it to end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[threading.Event]] = {}

    def watch(self, arn: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(arn, []).append(event)
        return event

    def unwatch(self, arn: str, event: threading.Event) -> None:
        with self._lock:
            events = self._waiting.get(arn, [])
            if event in events:
                events.remove(event)
            if not events:
                self._waiting.pop(arn, None)

    def ended(self, arn: str) -> None:
        with self._lock:
            events = list(self._waiting.get(arn, ()))
        for event in events:
            event.set()


def install(floor: float = WAIT_FLOOR, ends: ChildEnds | None = None) -> Callable[[], None]:
    """Patch moto's interpreter (the floor under every Wait after an execution's first, and the
    woken ``.sync`` wait); returns the undo function. ``ends`` hears of every execution's end,
    for a caller that waits on one too (a test: no polling)."""
    undos = [_floor(floor), _sync_wake(ends or ChildEnds())]

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


def _floor(floor: float) -> Callable[[], None]:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
        WaitFunction,
    )

    original = WaitFunction._wait_interval
    # The environments (one an execution; a Map or Parallel iteration has its own) that have
    # waited once already; weak, so an ended execution's environment is not kept.
    waited: weakref.WeakSet[Any] = weakref.WeakSet()
    lock = threading.Lock()

    def _wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        with lock:
            again = env in waited
            waited.add(env)
        if again and wait_seconds < floor:
            # Interrupted, as moto's own wait, when the execution stops.
            env.program_state_event.wait(floor)
            return
        original(self, env, wait_seconds)

    WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]

    def undo() -> None:
        WaitFunction._wait_interval = original  # type: ignore[method-assign]

    return undo


def _sync_wake(ends: ChildEnds) -> Callable[[], None]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback,
        state_task_service_sfn,
    )
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
    from moto.stepfunctions.parser.utils import TMP_THREADS

    callback_task = state_task_service_callback.StateTaskServiceCallback
    sfn_task = state_task_service_sfn.StateTaskServiceSfn

    original_terminated = BaseExecutionWorkerCommunication.terminated
    original_eval_sync = callback_task._eval_sync
    builders = {name: getattr(sfn_task, name) for name in ("_build_sync_resolver", "_build_sync2_resolver")}

    def terminated(self: Any) -> None:
        original_terminated(self)  # the final status first: a woken parent reads it
        ends.ended(self.execution.exec_arn)

    def named(build: Any) -> Any:
        def _build(self: Any, env: Any, *args: Any, **kwargs: Any) -> Any:
            top = env.stack[-1] if env.stack else None  # StartExecution's answer, which build pops
            resolver = build(self, env, *args, **kwargs)
            arn = top.get("ExecutionArn") or top.get("executionArn") if isinstance(top, dict) else None
            return resolver if resolver is None or not arn else _ChildResolver(resolver, str(arn))

        return _build

    def _eval_sync(
        self: Any,
        env: Any,
        sync_resolver: Any,
        timeout_seconds: Any,
        callback_endpoint: Any,
        heartbeat_endpoint: Any,
    ) -> Any:
        if not isinstance(sync_resolver, _ChildResolver):
            return original_eval_sync(
                self, env, sync_resolver, timeout_seconds, callback_endpoint, heartbeat_endpoint
            )
        # moto's loop (read the child; again until it has ended, a task token's answer came or
        # this execution stops), its 0.5 s sleep replaced by a wait for either to happen.
        event = ends.watch(sync_resolver.execution_arn)
        callback_output: Any = None
        if callback_endpoint is not None:  # moto listens for a task token beside the child, too

            def _token() -> None:
                nonlocal callback_output
                callback_output = self._eval_wait_for_task_token(
                    env=env,
                    timeout_seconds=timeout_seconds,
                    callback_endpoint=callback_endpoint,
                    heartbeat_endpoint=heartbeat_endpoint,
                )
                event.set()

            thread = threading.Thread(target=_token, name="WaitForTaskToken_SyncTask", daemon=True)
            TMP_THREADS.append(thread)
            thread.start()
        try:
            result = None
            while env.is_running():
                result = sync_resolver()
                if callback_output or result:
                    break
                event.wait(SYNC_FALLBACK)
                # Safe: the child's status is final before its end is signalled, so the read after
                # a wake-up sees it; a token thread that ended with nothing cannot make this spin.
                event.clear()
            return callback_output or result
        finally:
            ends.unwatch(sync_resolver.execution_arn, event)

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]
    callback_task._eval_sync = _eval_sync  # type: ignore[method-assign]
    for name, build in builders.items():
        setattr(sfn_task, name, named(build))

    def undo() -> None:
        BaseExecutionWorkerCommunication.terminated = original_terminated  # type: ignore[method-assign]
        callback_task._eval_sync = original_eval_sync  # type: ignore[method-assign]
        for name, build in builders.items():
            setattr(sfn_task, name, build)

    return undo


class _ChildResolver:
    """moto's resolver of a child execution's outcome, with the child's ARN to wait on."""

    def __init__(self, resolve: Callable[[], Any], execution_arn: str) -> None:
        self._resolve = resolve
        self.execution_arn = execution_arn

    def __call__(self) -> Any:
        return self._resolve()
