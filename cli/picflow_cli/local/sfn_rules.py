"""Step Functions as AWS runs it: the error rules moto's interpreter leaves out, in one place.

moto 5.2.5 runs Amazon States Language for real (a port of LocalStack's interpreter) but is more
lenient than AWS at run time, so a definition that AWS would stop passes locally. :func:`install`
patches the interpreter so that, as on AWS:

1. ``States.ALL`` (in a Catch or a Retry) matches neither ``States.Runtime`` nor
   ``States.DataLimitExceeded``: both are terminal and fail the execution. (moto's ``States.ALL``
   matched everything.) Naming them explicitly still matches. A Task, Map or Parallel whose
   ``Parameters``, ``ResultSelector`` or ``ResultPath`` reads a path that does not exist fails
   with ``States.Runtime`` (moto reported ``States.TaskFailed``, which ``States.ALL`` caught, so
   the job went on).
2. A Choice rule whose ``Variable`` path does not exist fails the execution with
   ``States.Runtime`` (moto treated the rule as false and took ``Default``); only ``IsPresent``
   may test a missing path. ``And``/``Or`` stop at the first deciding rule (moto does too), so
   an ``IsPresent`` guard placed first protects the comparisons after it.
3. An execution's history holds at most 25,000 events: the 25,000th is ``ExecutionFailed`` with
   ``States.Runtime``, "The execution reached the maximum number of history events (25000)."
   (moto let a loop run on). A Distributed Map's child workflows are counted apart, as on AWS,
   where each is an execution of its own.
4. 256 KiB (UTF-8 JSON) is the most a state's effective input (after ``InputPath`` and
   ``Parameters``) may hold, as well as its result and output: past it the state fails with
   ``States.DataLimitExceeded`` (moto checked results and outputs, not inputs).

``docs/local-stack.md`` lists these beside what is not enforced.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["HISTORY_LIMIT", "TERMINAL_ERRORS", "install"]

HISTORY_LIMIT = 25_000
# Errors that States.ALL does not match (the Step Functions developer guide, "Error names").
TERMINAL_ERRORS = frozenset({"States.Runtime", "States.DataLimitExceeded"})


def install() -> Callable[[], None]:
    """Patch moto's interpreter; returns the undo function."""
    undos = [_states_all(), _path_errors(), _choice_on_missing_path(), _history_limit(), _input_limit()]

    def undo() -> None:
        for step in reversed(undos):
            step()

    return undo


def _states_all() -> Callable[[], None]:
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
        ErrorEqualsDecl,
    )

    original = ErrorEqualsDecl._eval_body

    def _eval_body(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        name = getattr(error_name, "error_name", None)
        matches_all = ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names
        if matches_all and name in TERMINAL_ERRORS:
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    ErrorEqualsDecl._eval_body = _eval_body  # type: ignore[method-assign]

    def undo() -> None:
        ErrorEqualsDecl._eval_body = original  # type: ignore[method-assign]

    return undo


def _path_errors() -> Callable[[], None]:
    """A JSONPath that does not exist, met while a Task/Map/Parallel runs, is ``States.Runtime``."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError

    original = ExecutionState._evaluate_with_timeout

    def _evaluate_with_timeout(self: Any, env: Any) -> None:
        try:
            original(self, env)
        except NoSuchJsonPathError as missing:
            error = StatesErrorName(typ=StatesErrorNameType.StatesRuntime)
            cause = (
                f"The JSONPath '{missing.json_path}' specified for the field '{env.next_field_name}' "
                f"could not be found in the input '{to_json_str(missing.data)}'"
            )
            raise FailureEventException(
                FailureEvent(
                    env=env,
                    error_name=error,
                    event_type=HistoryEventType.TaskFailed,
                    event_details=EventDetails(  # type: ignore[typeddict-item]
                        taskFailedEventDetails=TaskFailedEventDetails(error=error.error_name, cause=cause)
                    ),
                )
            ) from missing

    ExecutionState._evaluate_with_timeout = _evaluate_with_timeout  # type: ignore[method-assign]

    def undo() -> None:
        ExecutionState._evaluate_with_timeout = original  # type: ignore[method-assign]

    return undo


def _runtime_failure(env: Any, cause: str) -> Exception:
    """A ``States.Runtime`` failure that ends the execution (no Catch can take it)."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    error = StatesErrorName(typ=StatesErrorNameType.StatesRuntime)
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=error,
            event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]
                executionFailedEventDetails=ExecutionFailedEventDetails(error=error.error_name, cause=cause)
            ),
        )
    )


def _choice_on_missing_path() -> Callable[[], None]:
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_operator_type import (
        ComparisonOperatorType,
    )
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.comparison_variable import (
        ComparisonVariable,
    )
    from moto.stepfunctions.parser.asl.component.state.choice.comparison.variable import NoSuchVariable

    original_variable = ComparisonVariable._eval_body

    def variable_eval(self: Any, env: Any) -> None:
        self.variable.eval(env)
        value = env.stack.pop()
        if (
            isinstance(value, NoSuchVariable)
            and self.comparison_function.operator_type != ComparisonOperatorType.IsPresent
        ):
            path = self.variable.string_sampler.literal_value
            raise _runtime_failure(
                env, f"Invalid path '{path}': The choice state's condition path references an invalid value."
            )
        env.stack.append(value)
        self.comparison_function.eval(env)

    ComparisonVariable._eval_body = variable_eval  # type: ignore[method-assign]

    def undo() -> None:
        ComparisonVariable._eval_body = original_variable  # type: ignore[method-assign]

    return undo


def _history_limit() -> Callable[[], None]:
    """The history of each execution, counted by its own event manager (an inline Map or a
    Parallel branch shares its execution's; a Distributed Map's child workflows get one apart)."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    # An execution's root environment by its event manager: the one to fail at the limit.
    roots: weakref.WeakKeyDictionary[Any, weakref.ReferenceType[Any]] = weakref.WeakKeyDictionary()
    lock = threading.Lock()
    ends = {
        HistoryEventType.ExecutionFailed,
        HistoryEventType.ExecutionSucceeded,
        HistoryEventType.ExecutionAborted,
        HistoryEventType.ExecutionTimedOut,
    }
    original_init = Environment.__init__
    original_add = EventManager.add_event

    def env_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        with lock:
            # A frame's own manager is replaced by its parent's right after: harmless here.
            roots[self.event_manager] = weakref.ref(self)

    def add_event(self: Any, context: Any, event_type: Any, *args: Any, **kwargs: Any) -> int:
        next_id: int = self._event_id_gen._next_id
        if next_id < HISTORY_LIMIT or event_type in ends:
            if next_id > HISTORY_LIMIT:
                return next_id  # one end is recorded: the limit's ExecutionFailed
            event_id: int = original_add(self, context, event_type, *args, **kwargs)
            return event_id
        ref = roots.get(self)
        env = ref() if ref is not None else None
        if env is None:  # a Distributed Map's run: its child workflows are executions of their own
            counted: int = original_add(self, context, event_type, *args, **kwargs)
            return counted
        # Event 25,000 is the failure; the state in flight finishes unrecorded, as nothing
        # after the limit is recorded on AWS either.
        env.set_error(
            ExecutionFailedEventDetails(
                error="States.Runtime",
                cause=f"The execution reached the maximum number of history events ({HISTORY_LIMIT}).",
            )
        )
        return next_id

    Environment.__init__ = env_init  # type: ignore[method-assign]
    EventManager.add_event = add_event  # type: ignore[method-assign]

    def undo() -> None:
        Environment.__init__ = original_init  # type: ignore[method-assign]
        EventManager.add_event = original_add  # type: ignore[method-assign]

    return undo


def _input_limit() -> Callable[[], None]:
    """A Task's effective input (after Parameters) past 256 KiB fails with DataLimitExceeded."""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task import StateTask
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
        StateTaskLambda,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
    from moto.stepfunctions.parser.quotas import is_within_size_quota

    originals = {cls: cls.__dict__["_eval_parameters"] for cls in (StateTask, StateTaskLambda)}

    def checked(original: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], dict[str, Any]]:
        def _eval_parameters(self: Any, env: Any) -> dict[str, Any]:
            parameters = original(self, env)
            if not is_within_size_quota(parameters):
                error = StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=error,
                        event_type=HistoryEventType.TaskFailed,
                        event_details=EventDetails(  # type: ignore[typeddict-item]
                            taskFailedEventDetails=TaskFailedEventDetails(
                                error=error.error_name,
                                cause=f"The state '{self.name}' has an input (after Parameters) "
                                "exceeding the maximum number of bytes service limit.",
                            )
                        ),
                    )
                )
            return parameters

        return _eval_parameters

    for cls, original in originals.items():
        cls._eval_parameters = checked(original)  # type: ignore[method-assign,assignment]

    def undo() -> None:
        for cls, original in originals.items():
            cls._eval_parameters = original  # type: ignore[method-assign]

    return undo
