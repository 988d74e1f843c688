"""moto's JSON answers: a structure given as a plain dict is written without asking the attribute
picker for every member of its shape.

moto 5.2.5 serialises an answer by walking the service model: for every member of every
structure (a Step Functions ``HistoryEvent`` has ~60, nearly all absent) its attribute picker
tries each alias provider in turn (explicit, shape name, the key, shape prefix, class prefix,
model name, and each one's snake_case form). A 1,000-event ``GetExecutionHistory`` page took
~1 s of CPU, most of the e2e test of the 25,000-event limit, and every execution the tests, the
demo and the benches read.

When the value is a ``dict`` whose keys are all member names, and the shape is one where no alias
of any member can be another member's name (checked once per shape), the picker can only ever
answer ``value[key]`` for a key present and nothing for one absent: :func:`install` takes exactly
that, and hands everything else (objects, other keys, aliases that could collide, a service with
response transformers) to moto's own path. ``tests/integration/test_local_json_wire.py`` compares
both ways' bytes on real Step Functions, Lambda and DynamoDB answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["install", "plain_dict_safe"]


def plain_dict_safe(shape: Any) -> bool:
    """Whether no alias the picker tries for a member of ``shape`` is the name of a member."""
    from botocore import xform_name

    members = shape.members
    for key, member in members.items():
        aliases = set()
        if member.type_name in ("list", "structure") and member.name not in members and key != member.name:
            aliases.add(member.name)  # ShapeNameAlias
        if key.lower().startswith(shape.name.lower()):
            aliases.add(key[len(shape.name) :])  # ShapePrefixAlias
        if key.lower().startswith("dict"):
            aliases.add(key[len("dict") :])  # ClassPrefixAlias, for a dict
        aliases.add(member.serialization.get("name", key))  # ModelAlias
        aliases.add(key)
        candidates = aliases | {xform_name(alias) for alias in aliases}  # XFormedAttributePicker
        if (candidates - {key}) & members.keys():
            return False
    return True


def install() -> Callable[[], None]:
    """Patch moto's JSON serialiser's structures; returns the undo function."""
    from moto.core.serialize import DEFAULT_ALIAS_PROVIDERS, AttributePicker, BaseJSONSerializer

    original = BaseJSONSerializer._serialize_type_structure
    safe: dict[int, tuple[Any, bool]] = {}  # id(shape) -> (shape, verdict); the shape kept alive

    def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        picker = self._value_picker
        if (
            type(value) is dict
            and not shape.is_document_type
            and isinstance(picker, AttributePicker)
            and not picker.response_transformers
            and picker.alias_providers is DEFAULT_ALIAS_PROVIDERS
            and value.keys() <= shape.members.keys()
        ):
            known = safe.get(id(shape))
            if known is None or known[0] is not shape:
                known = safe[id(shape)] = (shape, plain_dict_safe(shape))
            if known[1]:
                wrapper: Any = self.MAP_TYPE() if key else serialized
                for member_key, member_shape in shape.members.items():
                    member_shape.parent = shape
                    member_value = value.get(member_key)
                    if member_value is not None:
                        self._serialize(wrapper, member_value, member_shape, member_key)
                if key:
                    self._default_serialize(serialized, wrapper, shape, key)
                return
        original(self, serialized, value, shape, key)

    BaseJSONSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]

    def undo() -> None:
        BaseJSONSerializer._serialize_type_structure = original  # type: ignore[method-assign]

    return undo
