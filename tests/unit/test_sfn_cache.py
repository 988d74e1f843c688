"""picflow_cli.local.sfn_cache.ProgramCache: one parse per definition text, shared programs with
their heap keys drawn before they are shared."""

from __future__ import annotations

import json

from moto.stepfunctions.parser.asl.component.component import Component
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from picflow_cli.local.sfn_cache import ProgramCache


def definition(result: str) -> str:
    return json.dumps(
        {
            "StartAt": "Say",
            "States": {
                "Say": {
                    "Type": "Pass",
                    "Result": {"said": result},
                    "Next": "Done",
                },
                "Done": {"Type": "Succeed"},
            },
        }
    )


def test_the_same_text_is_parsed_once_and_a_changed_text_again() -> None:
    parsed: list[str] = []

    def parse(text: str) -> object:
        parsed.append(text)
        return AmazonStateLanguageParser.parse(text)[0]

    cache = ProgramCache(parse)
    first = cache.program(definition("a"))
    assert cache.program(definition("a")) is first
    second = cache.program(definition("b"))
    assert second is not first
    assert parsed == [definition("a"), definition("b")]
    assert cache.parses == 2


def test_heap_keys_are_drawn_before_a_program_is_shared() -> None:
    program = ProgramCache(lambda text: AmazonStateLanguageParser.parse(text)[0]).program(definition("a"))
    seen: list[EvalComponent] = []
    stack: list[object] = [program]
    while stack:
        item = stack.pop()
        if isinstance(item, EvalComponent):
            seen.append(item)
        if isinstance(item, Component):
            stack.extend(vars(item).values())
        elif isinstance(item, list | tuple | dict):
            stack.extend(item.values() if isinstance(item, dict) else item)
    assert len(seen) > 3
    drawn = [component for component in seen if component.__dict__.get("_EvalComponent__heap_key")]
    assert drawn == seen
