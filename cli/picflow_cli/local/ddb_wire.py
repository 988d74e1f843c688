"""DynamoDB answers written without walking the service model once per attribute value.

moto 5.2.5 serialises every answer through its model-driven ``ResponseSerializer``: for each
DynamoDB ``AttributeValue`` (every attribute of every item, and every element of its maps and
lists) it visits all ten members of the union (S, N, B, SS, NS, BS, M, L, NULL, BOOL) through an
attribute picker, to find the one that is set. A job record has dozens of attributes, and a job
reads and writes it ~15 times: the serialiser was ~17 % of the moto process's busy time in
bench/throughput.py's profile (issue 19), more than DynamoDB's own work.

:func:`install` writes an attribute value directly, with the serialiser's own rules per member
(strings and numbers as ``str``, binaries base64-encoded, sets and lists element by element, maps
recursively, NULL and BOOL as they are). A value the rules do not cover (an unknown member, a
member that is not a dict/list where one is expected) goes the serialiser's way, as before.
``tests/unit/test_local_ddb_wire.py`` compares both ways' output on the same results.

It also makes moto's reserved-word check a set lookup: every attribute name of every condition
and update expression is looked up in DynamoDB's ~570 reserved words, kept as a list and scanned
one by one (~10 % of the moto process's busy time in the same profile). :class:`ReservedWords`
is that list, with a set answering ``in``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

__all__ = ["attribute_value", "install"]

MEMBERS = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})


class ReservedWords(list[str]):
    """moto's reserved-word list, answering ``in`` from a set."""

    def __init__(self, words: list[str]) -> None:
        super().__init__(words)
        self._set = frozenset(words)

    def __contains__(self, word: object) -> bool:
        return word in self._set


class _UnhandledError(Exception):
    """A value the direct rules do not cover: the serialiser writes it."""


def _string(value: Any) -> Any:
    # The serialiser's string rule (BaseJSONSerializer._serialize_type_string).
    return str(value) if value not in (None, {}, []) else value


def _blob(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray):
        raise _UnhandledError
    return base64.b64encode(value).strip().decode("utf-8")


def attribute_value(value: Any) -> dict[str, Any]:
    """One DynamoDB AttributeValue as the serialiser writes it; raises _UnhandledError otherwise."""
    if not isinstance(value, dict):
        raise _UnhandledError
    out: dict[str, Any] = {}
    for member, item in value.items():
        if item is None:
            continue  # the serialiser skips a member that is None
        if member in ("S", "N"):
            out[member] = _string(item)
        elif member in ("NULL", "BOOL"):
            out[member] = item
        elif member == "M":
            if not isinstance(item, dict):
                raise _UnhandledError
            out[member] = {key: attribute_value(sub) for key, sub in item.items()}
        elif member == "L":
            if not isinstance(item, list):
                raise _UnhandledError
            out[member] = [attribute_value(sub) for sub in item]
        elif member in ("SS", "NS"):
            if not isinstance(item, list):
                raise _UnhandledError
            out[member] = [_string(sub) for sub in item]
        elif member == "B":
            out[member] = _blob(item)
        elif member == "BS":
            if not isinstance(item, list):
                raise _UnhandledError
            out[member] = [_blob(sub) for sub in item]
        else:
            raise _UnhandledError
    return out


def install() -> Callable[[], None]:
    """Patch moto's JSON serialiser for AttributeValue structures and its reserved-word list;
    returns the undo function."""
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords

    words = ReservedKeywords.KEYWORDS
    ReservedKeywords.KEYWORDS = ReservedWords(ReservedKeywords.get_reserved_keywords())

    original = BaseJSONSerializer._serialize_type_structure

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if key and shape.name == "AttributeValue" and shape.members.keys() == MEMBERS:
            try:
                serialized[self.get_serialized_name(shape, key)] = attribute_value(value)
                return
            except _UnhandledError:
                pass
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]

    def undo() -> None:
        BaseJSONSerializer._serialize_type_structure = original  # type: ignore[method-assign]
        ReservedKeywords.KEYWORDS = words

    return undo
