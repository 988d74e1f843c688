"""The operation catalogue: one declarative entry per upstream operation (14 in all).

Each entry names its provider, endpoint, interaction styles, input limits, results, cost and
params model; the models themselves (every user parameter and its rule, from the provider
documents in ``shared/seeds``) are in :mod:`picflow.core.params`. The README's operation table is
generated from these two modules, so they are the one place to change an operation or a rule.

This module does not import pydantic: a status check, Collect or a provider callback reads the
table on every invocation but never validates params, and pydantic with the models is ~40 ms of
a cold start (bench/coldstart.py). An entry's ``params`` model is imported on first use.

Validation happens here, before any network call: :func:`validate_params` returns the
typed params model or raises :class:`ParamValidationError` naming the field and the rule.
``sync``/``callback_url`` (task/pic) and the image inputs (``image_file``/``image_url``,
``ProductUrl``, ``input_image``) are not user params: picflow chooses the interaction style
and supplies the image, so they are arguments of the provider clients instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    from picflow.core.params import Params

__all__ = [
    "OPERATIONS",
    "Cost",
    "InputLimits",
    "Operation",
    "Provider",
    "ResultKind",
    "Style",
    "describe_catalogue",
    "describe_operation",
    "get_operation",
    "validate_params",
]

MB = 1024 * 1024


class Provider(StrEnum):
    TASKPIC = "taskpic"
    TENCENT = "tencent"
    HDREDRAW = "hdredraw"


class Style(StrEnum):
    """How a result arrives."""

    SYNC = "sync"  # in the submit response
    POLL = "poll"  # submit, then check until done
    CALLBACK = "callback"  # submit with a callback URL; the provider POSTs the result


class ResultKind(StrEnum):
    IMAGE = "image"
    MASK = "mask"
    VECTOR = "vector"  # EPS
    GRID = "grid"  # seamless tiling preview
    IMAGE_1X = "image_1x"  # seamless result at 1x
    IMAGES = "images"  # several images (background batch, extract_pattern)
    PROMPT = "prompt"  # generated prompt text


@dataclass(frozen=True)
class InputLimits:
    """What the provider accepts as the source image."""

    max_bytes: int
    formats: frozenset[str]  # Pillow format names
    max_side: int | None = None  # exclusive upper bound on either side, in px
    min_ratio: float | None = None  # width / height
    max_ratio: float | None = None
    source: Literal["file", "url", "file_or_url"] = "file"


@dataclass(frozen=True)
class Cost:
    """What one call costs, for metering: ``per_call`` units, times ``multiplier_param``."""

    unit: str
    per_call: int = 1
    multiplier_param: str | None = None

    def units(self, params: Params) -> int:
        if self.multiplier_param is None:
            return self.per_call
        return self.per_call * int(getattr(params, self.multiplier_param))


@dataclass(frozen=True)
class Operation:
    name: str
    provider: Provider
    endpoint: str
    styles: frozenset[Style]
    params_model: str  # a class of picflow.core.params: see ``params``
    input: InputLimits
    results: frozenset[ResultKind]
    cost: Cost
    summary: str

    @property
    def params(self) -> type[Params]:
        """The pydantic model of this operation's params (imports picflow.core.params on first use)."""
        from picflow.core import params

        model: type[Params] = getattr(params, self.params_model)
        return model


# --- the catalogue -----------------------------------------------------------------------

# guess: task/pic formats are not documented; these are what it plausibly decodes.
_TASKPIC_INPUT = InputLimits(
    max_bytes=15 * MB, formats=frozenset({"JPEG", "PNG", "WEBP", "BMP"}), source="file_or_url"
)
# base64 < 6 MB means at most 4.5 MB of raw bytes.
_TENCENT_INPUT = InputLimits(
    max_bytes=6 * MB * 3 // 4,
    formats=frozenset({"JPEG", "PNG", "BMP", "TIFF", "WEBP"}),
    max_side=4000,
    min_ratio=2 / 5,
    max_ratio=5 / 2,
    source="url",
)
# guess: HD redraw formats are not documented beyond the examples (png, jpg, jpeg).
_HD_INPUT = InputLimits(max_bytes=16 * MB, formats=frozenset({"JPEG", "PNG", "WEBP", "BMP"}))

_TASKPIC_STYLES = frozenset({Style.SYNC, Style.POLL, Style.CALLBACK})
_HD_STYLES = frozenset({Style.POLL})
_TASKPIC_COST = Cost("taskpic.call")
_HD_COST = Cost("hdredraw.call")


def _hd(name: str, endpoint: str, params: str, results: set[ResultKind], summary: str) -> Operation:
    return Operation(
        name,
        Provider.HDREDRAW,
        endpoint,
        _HD_STYLES,
        params,
        _HD_INPUT,
        frozenset(results),
        _HD_COST,
        summary,
    )


_ALL: tuple[Operation, ...] = (
    Operation(
        "segmentation",
        Provider.TASKPIC,
        "/task/pic/segmentation",
        _TASKPIC_STYLES,
        "SegmentationParams",
        _TASKPIC_INPUT,
        frozenset({ResultKind.IMAGE, ResultKind.MASK}),
        _TASKPIC_COST,
        "Cut out the foreground (image, mask or both).",
    ),
    Operation(
        "background",
        Provider.TASKPIC,
        "/task/pic/background",
        _TASKPIC_STYLES,
        "BackgroundParams",
        _TASKPIC_INPUT,
        frozenset({ResultKind.IMAGES}),
        Cost("taskpic.call", multiplier_param="batch_size"),
        "Generate new backgrounds for a foreground image.",
    ),
    Operation(
        "idphoto",
        Provider.TASKPIC,
        "/task/pic/idphoto",
        _TASKPIC_STYLES,
        "IdPhotoParams",
        _TASKPIC_INPUT,
        frozenset({ResultKind.IMAGE}),
        _TASKPIC_COST,
        "Make an ID photo of an exact size.",
    ),
    Operation(
        "replace_background",
        Provider.TENCENT,
        "ReplaceBackground",
        frozenset({Style.SYNC}),
        "ReplaceBackgroundParams",
        _TENCENT_INPUT,
        frozenset({ResultKind.IMAGE, ResultKind.MASK}),
        Cost("tencent.call"),
        "Replace a product photo's background (Tencent AI Art).",
    ),
    _hd(
        "redraw",
        "/api/submit_task",
        "RedrawParams",
        {ResultKind.IMAGE, ResultKind.VECTOR, ResultKind.PROMPT},
        "HD redraw / upscale, optionally with a vector and a generated prompt.",
    ),
    _hd("vectorize", "/api/submit_vector_task", "VectorizeParams", {ResultKind.VECTOR, ResultKind.IMAGE},
        "Turn a flat-colour bitmap into an EPS vector."),
    _hd("face_enhance", "/api/submit_face_enhance_task", "NoParams", {ResultKind.IMAGE}, "Repair faces."),
    _hd(
        "seamless",
        "/api/submit_seamless_task",
        "SeamlessParams",
        {ResultKind.IMAGE, ResultKind.GRID, ResultKind.IMAGE_1X},
        "Make a seamless tile, with a grid preview and the 1x image.",
    ),
    _hd("remove_fabric", "/api/submit_remove_fabric_task", "NoParams", {ResultKind.IMAGE},
        "Remove fabric texture, keep the print."),
    _hd("edit_image", "/api/submit_edit_image_task", "EditImageParams", {ResultKind.IMAGE},
        "Edit an image from a text instruction."),
    _hd("extract_pattern", "/api/submit_extract_pattern_task", "ExtractPatternParams",
        {ResultKind.IMAGES, ResultKind.PROMPT}, "Extract a print from a garment photo (one or more images)."),
    _hd("remove_diamonds", "/api/submit_remove_diamonds_task", "NoParams", {ResultKind.IMAGE},
        "Remove rhinestones and glitter, keep the pattern."),
    _hd("expand_image", "/api/submit_expand_image_task", "ExpandImageParams", {ResultKind.IMAGE},
        "Outpaint: extend the image on any side by up to 30%."),
    _hd("remove_watermark", "/api/submit_remove_watermark_task", "NoParams", {ResultKind.IMAGE},
        "Remove watermarks."),
)  # fmt: skip

OPERATIONS: Mapping[str, Operation] = {op.name: op for op in _ALL}


def get_operation(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise ParamValidationError(
            f"unknown operation {name!r}; known: {', '.join(OPERATIONS)}",
            field="operation",
            rule="one of the catalogue",
        ) from None


def _rule_of(error: Mapping[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    rules = {
        "greater_than_equal": "≥ {ge}",
        "less_than_equal": "≤ {le}",
        "greater_than": "> {gt}",
        "less_than": "< {lt}",
        "string_too_long": "at most {max_length} characters",
        "string_too_short": "at least {min_length} characters",
        "string_pattern_mismatch": "matches {pattern}",
        "literal_error": "one of {expected}",
        "missing": "required",
        "extra_forbidden": "not a parameter of this operation",
    }
    template = rules.get(kind)
    return template.format(**ctx) if template else kind


def validate_params(operation: str | Operation, raw: Mapping[str, Any] | None) -> Params:
    """Typed params for ``operation`` or a :class:`ParamValidationError` naming field and rule.

    ``raw`` may hold strings (form fields, S3 metadata): numbers and booleans are parsed
    the way pydantic's lax mode does ("2" -> 2, "true" -> True).
    """
    from pydantic import ValidationError

    op = operation if isinstance(operation, Operation) else get_operation(operation)
    try:
        return op.params.model_validate(dict(raw or {}))
    except ParamValidationError as exc:
        exc.operation = op.name
        raise
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "params"
        rule = _rule_of(first)
        raise ParamValidationError(
            f"{op.name}: {field}: {first['msg']}", field=field, rule=rule, operation=op.name
        ) from None


# --- describing the catalogue (CLI, API, README) ------------------------------------------

_RULE_KEYS = (
    ("minimum", "≥ {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMinimum", "> {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "≥ {} chars"),
    ("maxLength", "≤ {} chars"),
    ("pattern", "matches {}"),
)


def _param_rule(schema: Mapping[str, Any]) -> tuple[str, str]:
    """(type, rule) of one JSON-schema property, flattening Optional/Literal/$ref."""
    options = schema.get("anyOf", [schema])
    options = [o for o in options if o.get("type") != "null"]
    first = options[0] if options else schema
    if "enum" in first or "const" in first:
        values = first.get("enum", [first.get("const")])
        return first.get("type", "string"), "one of " + ", ".join(str(v) for v in values)
    if "$ref" in first:
        return "object", first["$ref"].rsplit("/", 1)[-1]
    rules = [fmt.format(first[key]) for key, fmt in _RULE_KEYS if key in first]
    return first.get("type", "string"), ", ".join(rules)


def describe_operation(op: Operation) -> dict[str, Any]:
    """A JSON-able description of ``op``: what `picflow operations --json` and the API print."""
    schema = op.params.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        kind, rule = _param_rule(prop)
        params.append(
            {
                "name": name,
                "type": kind,
                "required": name in required,
                "default": prop.get("default"),
                "rule": rule,
                "description": prop.get("description", ""),
            }
        )
    limits = op.input
    return {
        "operation": op.name,
        "provider": op.provider.value,
        "endpoint": op.endpoint,
        "styles": sorted(s.value for s in op.styles),
        "summary": op.summary,
        "params": params,
        "input": {
            "source": limits.source,
            "max_bytes": limits.max_bytes,
            "formats": sorted(limits.formats),
            "max_side": limits.max_side,
            "ratio": None if limits.min_ratio is None else "2:5..5:2",
        },
        "results": sorted(r.value for r in op.results),
        "cost": {"unit": op.cost.unit, "per_call": op.cost.per_call, "multiplier": op.cost.multiplier_param},
    }


def describe_catalogue() -> list[dict[str, Any]]:
    return [describe_operation(op) for op in OPERATIONS.values()]
