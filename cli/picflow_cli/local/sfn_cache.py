"""Each state machine definition parsed once, not at every execution start.

moto 5.2.5's interpreter (``ExecutionWorker._get_evaluation_entrypoint``) runs the ANTLR parser
and the preprocessor over the definition text at every ``StartExecution``: ~60 ms of CPU for
``job.asl.json``, ~20 % of a job's CPU on the local stack and done under the moto server's one
GIL (issue 19's profile). :func:`install` keeps the evaluation program per definition text, so a
second execution of the same definition reuses it and a changed definition (``UpdateStateMachine``,
another state machine) is parsed again.

Sharing a program between executions is what moto already does between the iterations of a Map
state, which evaluate one program concurrently: the components keep per-execution state in the
execution's ``Environment``, not on themselves. The one exception is ``EvalComponent.heap_key``,
a lazily drawn id; it is drawn here for every component before the program is shared, so two
executions never race to draw it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ProgramCache", "install"]


class ProgramCache:
    """Definition text -> the evaluation program moto builds from it; counts its parses."""

    def __init__(self, parse: Callable[[str], Any]) -> None:
        self._parse = parse
        self._programs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.parses = 0

    def program(self, definition: str) -> Any:
        with self._lock:  # a parse is CPU under the GIL: a second thread waiting loses nothing
            program = self._programs.get(definition)
            if program is None:
                program = self._parse(definition)
                _draw_heap_keys(program)
                self._programs[definition] = program
                self.parses += 1
            return program


def _draw_heap_keys(root: Any) -> None:
    """Touch ``heap_key`` on every component reachable from ``root`` (see the module docstring)."""
    from moto.stepfunctions.parser.asl.component.component import Component
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    seen: set[int] = set()
    stack: list[Any] = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, EvalComponent):
            _ = item.heap_key
        if isinstance(item, Component):
            stack.extend(vars(item).values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


def install() -> tuple[ProgramCache, Callable[[], None]]:
    """Patch moto's execution worker to take its program from a cache; returns it and the undo."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    cache = ProgramCache(lambda definition: AmazonStateLanguageParser.parse(definition)[0])
    original = ExecutionWorker._get_evaluation_entrypoint

    def _get_evaluation_entrypoint(self: Any) -> Any:
        return cache.program(self._evaluation_details.state_machine_details.definition)

    ExecutionWorker._get_evaluation_entrypoint = _get_evaluation_entrypoint  # type: ignore[method-assign]

    def undo() -> None:
        ExecutionWorker._get_evaluation_entrypoint = original  # type: ignore[method-assign]

    return cache, undo
