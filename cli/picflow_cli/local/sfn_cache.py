"""Each state machine definition parsed once, not at every execution start.

moto 5.2.5's interpreter (``ExecutionWorker._get_evaluation_entrypoint``) runs the ANTLR parser
and the preprocessor over the definition text at every ``StartExecution``: ~60 ms of CPU for
``job.asl.json``, ~20 % of a job's CPU on the local stack and done under the moto server's one
GIL (issue 19's profile). :func:`install` keeps the evaluation program per definition text, so a
second execution of the same definition reuses it and a changed definition (``UpdateStateMachine``,
another state machine) is parsed again. ``CreateStateMachine`` and ``UpdateStateMachine`` parse the
definition too, to validate it (the first parse also loads the grammar: ~0.7 s of a stack start for
its three state machines): they take the program from the same cache, so the validation's parse is
the one the executions run. A definition that does not parse is refused by moto's own validation,
with moto's own error.

Sharing a program between executions is what moto already does between the iterations of a Map
state, which evaluate one program concurrently: the components keep per-execution state in the
execution's ``Environment``, not on themselves. The one exception is ``EvalComponent.heap_key``,
a lazily drawn id; it is drawn here for every component before the program is shared, so two
executions never race to draw it.

The interpreter also parses every JSONPath it evaluates (``InputPath``, ``Parameters``' ``.$``
fields, a Choice's ``Variable``, ``ResultPath``...) with jsonpath_ng at each evaluation, ~0.25-0.5
ms of CPU a parse (ply builds its parser each time), dozens a job. A parsed path is immutable
(``find`` and ``update_or_create`` read it and change only the data), so :func:`install` keeps
each path's parse too (:func:`cached_jsonpath`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ProgramCache", "cached_jsonpath", "install"]

JSONPATHS = 4096  # distinct paths kept (a definition has dozens)


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


def cached_jsonpath(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` remembering its answer per path text (an error is not remembered: raised again)."""
    return functools.lru_cache(maxsize=JSONPATHS)(parse)


def install() -> tuple[ProgramCache, Callable[[], None]]:
    """Patch moto's execution worker to take its program from a cache, and its JSONPath
    evaluation to parse each path once; returns the program cache and the undo."""
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.utils import json_path
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    cache = ProgramCache(lambda definition: AmazonStateLanguageParser.parse(definition)[0])
    original = ExecutionWorker._get_evaluation_entrypoint

    def _get_evaluation_entrypoint(self: Any) -> Any:
        return cache.program(self._evaluation_details.state_machine_details.definition)

    ExecutionWorker._get_evaluation_entrypoint = _get_evaluation_entrypoint  # type: ignore[method-assign]
    validate = vars(StepFunctionsParserBackend)["_validate_definition"]  # the staticmethod itself

    def _validate_definition(definition: str) -> None:
        try:
            cache.program(definition)
        except Exception:
            validate.__func__(definition=definition)  # moto's InvalidDefinition for this text
            raise

    StepFunctionsParserBackend._validate_definition = staticmethod(_validate_definition)  # type: ignore[method-assign]
    # Both modules imported ``parse`` by name: jsonpath_ng.ext's (extract_json) and jsonpath_ng's
    # (ResultPath).
    parsers = {module: module.parse for module in (json_path, result_path)}
    for module, parse in parsers.items():
        module.parse = cached_jsonpath(parse)  # type: ignore[attr-defined]

    def undo() -> None:
        ExecutionWorker._get_evaluation_entrypoint = original  # type: ignore[method-assign]
        StepFunctionsParserBackend._validate_definition = validate  # type: ignore[method-assign]
        for module, parse in parsers.items():
            module.parse = parse  # type: ignore[attr-defined]

    return cache, undo
