"""JSON from outside, within limits: nesting depth and number length checked before parsing.

Python's parser recurses per nesting level (3,000 levels is a RecursionError) and ``int()`` refuses
more than 4,300 digits with a ValueError: both reached callers as 500s (issue 15, finding 5). The
limits here are far above any body or manifest line picflow accepts (params are flat, a number is
a size or a seed), and are checked on the text without recursion, so hostile input costs one scan.
"""

from __future__ import annotations

import json
import re
from typing import Any

from picflow.core.errors import ParamValidationError

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_NUMBER_DIGITS", "check_json_text", "loads"]

# The jobs API's request bodies (a prompt, at most a few KiB, is the largest field; a longer one is still
# refused by its own rule, naming it): API Gateway would take 10 MB.
MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NUMBER_DIGITS = 64

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_LONG_DIGITS = re.compile(rf"\d{{{MAX_NUMBER_DIGITS + 1},}}")


def check_json_text(text: str, *, field: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH or with a number longer than MAX_NUMBER_DIGITS
    digits (ParamValidationError naming ``field``). Strings may hold anything."""
    bare = _STRING.sub('""', text)
    if _LONG_DIGITS.search(bare):
        raise ParamValidationError(
            f"{field} holds a number longer than {MAX_NUMBER_DIGITS} digits",
            field=field,
            rule=f"numbers of ≤ {MAX_NUMBER_DIGITS} digits",
        )
    depth = 0
    for bracket in _BRACKET.finditer(bare):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise ParamValidationError(
                f"{field} is nested deeper than {MAX_DEPTH} levels",
                field=field,
                rule=f"JSON nested ≤ {MAX_DEPTH} levels",
            )


def loads(text: str, *, field: str) -> Any:
    """``json.loads`` within the limits; ValueError for text that is not JSON (as json.loads)."""
    check_json_text(text, field=field)
    return json.loads(text)
