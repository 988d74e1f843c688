"""The operation catalogue: one declarative entry per upstream operation (14 in all).

Every rule here comes from the provider documents in ``shared/seeds`` (000-004) or, for
Tencent's ``NegativePrompt``/``BackgroundTemplate``/``Product`` limits, from the official
``tencentcloud-sdk-python-aiart`` models. Where the documents are silent, the rule chosen
is marked ``# guess:`` with the reason; the README's operation table is generated from
this module, so the catalogue is the one place to change a rule.

Validation happens here, before any network call: :func:`validate_params` returns the
typed params model or raises :class:`ParamValidationError` naming the field and the rule.
``sync``/``callback_url`` (task/pic) and the image inputs (``image_file``/``image_url``,
``ProductUrl``, ``input_image``) are not user params: picflow chooses the interaction style
and supplies the image, so they are arguments of the provider clients instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from picflow.errors import ParamValidationError

__all__ = [
    "OPERATIONS",
    "Cost",
    "InputLimits",
    "Operation",
    "Params",
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
    params: type[Params]
    input: InputLimits
    results: frozenset[ResultKind]
    cost: Cost
    summary: str


# --- shared field types -------------------------------------------------------------------

# C0 controls but tab/LF/CR, DEL, and the C1 controls (U+0080-U+009F).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


class Params(BaseModel):
    """Base of every params model: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    @model_validator(mode="after")
    def _text_fields_clean(self) -> Self:
        for name, value in self:
            if isinstance(value, str):
                try:
                    _no_control_chars(value)
                except ValueError as exc:
                    raise ParamValidationError(
                        f"{name}: {exc}", field=name, rule="no control characters"
                    ) from None
        return self


def _int_from_text(value: Any) -> Any:
    # S3 metadata and form fields are text, and pydantic's Literal[1, 2] refuses "1".
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9]{1,3}\s*", value):
        return int(value)
    return value


IntFromText = BeforeValidator(_int_from_text)
HexColor = Annotated[str, StringConstraints(pattern=r"^[0-9A-Fa-f]{6}$")]
Ratio = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,3}:[1-9][0-9]{0,3}$")]
Expand = Annotated[float, Field(ge=0.0, le=0.3)]
# guess: the HD redraw document gives no length limit for prompts; 1024 matches task/pic.
HdPrompt = Annotated[str, Field(max_length=1024)]


def _size_pair(value: str, sep: str) -> tuple[int, int]:
    w, _, h = value.partition(sep)
    return int(w), int(h)


# --- task/pic API (documents 000-002) ----------------------------------------------------


class SegmentationParams(Params):
    type: Literal["person", "object", "stamp"] | None = Field(
        None, description="Foreground type; empty means detect automatically."
    )
    output_type: Annotated[Literal[1, 2, 3], IntFromText] = Field(
        2, description="1 = image + mask, 2 = image only, 3 = mask only."
    )
    crop: Annotated[Literal[0, 1], IntFromText] = Field(0, description="1 = crop to the subject's edges.")
    format: Literal["png", "jpg"] = Field("png", description="png = transparent, jpg = solid background.")
    bg_color: HexColor | None = Field(
        None, description="JPG background colour, RRGGBB; only with format=jpg."
    )

    @model_validator(mode="after")
    def _bg_color_needs_jpg(self) -> Self:
        # The document says bg_color only takes effect for jpg: refuse a paid call that ignores it.
        if self.bg_color is not None and self.format != "jpg":
            raise ParamValidationError(
                "bg_color applies only when format=jpg", field="bg_color", rule="requires format=jpg"
            )
        return self


class BackgroundParams(Params):
    batch_size: int = Field(2, ge=1, le=4, description="Images per call (1-4); the price scales with it.")
    prompt: str = Field(
        ..., min_length=1, max_length=1024, description="Background prompt, ≤ 1024 characters."
    )


class IdPhotoParams(Params):
    # guess: the idphoto table's "required" column did not survive; size is treated as
    # required because an ID photo without a target size has no meaning.
    size: Annotated[str, StringConstraints(pattern=r"^[0-9]{3,4}x[0-9]{3,4}$")] = Field(
        ..., description="{width}x{height}, each 100-2000 px, e.g. 300x400."
    )
    format: Literal["png", "jpg"] = Field("png", description="png = transparent, jpg = solid background.")
    bg_color: HexColor | None = Field(None, description="RRGGBB background colour; only with format=jpg.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        w, h = _size_pair(self.size, "x")
        for side_name, side in (("width", w), ("height", h)):
            if not 100 <= side <= 2000:
                raise ParamValidationError(
                    f"size {side_name} {side} is outside 100-2000 px", field="size", rule="each side 100-2000"
                )
        if self.bg_color is not None and self.format != "jpg":
            raise ParamValidationError(
                "bg_color applies only when format=jpg", field="bg_color", rule="requires format=jpg"
            )
        return self


# --- Tencent Cloud AI Art ReplaceBackground (document 003 + official SDK models) ----------


class LogoRect(Params):
    x: int = Field(..., ge=0)
    y: int = Field(..., ge=0)
    width: int = Field(..., gt=0)
    height: int = Field(..., gt=0)


class LogoParam(Params):
    logo_url: str | None = Field(None, description="Logo image URL (http/https).")
    logo_image: str | None = Field(None, description="Logo image as base64; logo_url wins when both are set.")
    logo_rect: LogoRect | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.logo_url is None and self.logo_image is None:
            raise ParamValidationError(
                "logo_param needs logo_url or logo_image", field="logo_param", rule="logo_url or logo_image"
            )
        return self


BACKGROUND_TEMPLATE_PROMPT = "BackgroundTemplate"


class ReplaceBackgroundParams(Params):
    # "最多支持256个 utf-8 字符": characters (code points), not bytes.
    prompt: str = Field(..., min_length=1, max_length=256, description="New background (Chinese or English).")
    negative_prompt: str | None = Field(None, max_length=256, description="What to avoid.")
    product: str | None = Field(None, max_length=50, description="The product's name.")
    background_template: str | None = Field(
        None, description='Template name; only used when prompt = "BackgroundTemplate".'
    )
    mask_url: str | None = Field(
        None, description="PNG mask with transparent background, same size as the product."
    )
    resolution: Ratio = Field(
        "1280:1280", description="W:H, each side > 500 and < 4000 px, ratio between 2:5 and 5:2."
    )
    logo_add: Annotated[Literal[0, 1], IntFromText] = Field(1, description="1 = add the 'AI generated' mark.")
    logo_param: LogoParam | None = None
    rsp_img_type: Literal["base64", "url"] = Field("base64", description="How the result comes back.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        w, h = _size_pair(self.resolution, ":")
        if not (500 < w < 4000 and 500 < h < 4000):
            raise ParamValidationError(
                f"resolution {self.resolution}: each side must be > 500 and < 4000",
                field="resolution",
                rule="each side in (500, 4000)",
            )
        if not 2 / 5 <= w / h <= 5 / 2:
            raise ParamValidationError(
                f"resolution {self.resolution}: ratio must be between 2:5 and 5:2",
                field="resolution",
                rule="ratio 2:5..5:2",
            )
        uses_template = self.prompt == BACKGROUND_TEMPLATE_PROMPT
        if uses_template and not self.background_template:
            raise ParamValidationError(
                'prompt "BackgroundTemplate" needs background_template',
                field="background_template",
                rule='required when prompt = "BackgroundTemplate"',
            )
        if self.background_template and not uses_template:
            raise ParamValidationError(
                'background_template is used only when prompt = "BackgroundTemplate"',
                field="background_template",
                rule='only with prompt = "BackgroundTemplate"',
            )
        return self


# --- HD redraw vendor (document 004) -----------------------------------------------------


class RedrawParams(Params):
    # guess: the document marks these required but shows values in its example code; those
    # values are the defaults so a user can ask for "redraw" with nothing else.
    sdxl_model_dropdown: str = Field("通用模型", min_length=1, max_length=64, description="Model name.")
    style_dropdown: str = Field("通用风格", min_length=1, max_length=64, description="Style name.")
    upscale: float = Field(1.0, ge=1, le=8, description="Upscale factor 1-8.")
    s_noise: float = Field(1.003, ge=1, le=1.1, description="Noise strength 1-1.1.")
    steps: float = Field(30, ge=20, le=40, description="Sampling steps 20-40 (slower when higher).")
    high_fidelity: bool = Field(False, description="High-fidelity processing.")
    strong_inpaint: bool = Field(False, description="Strong inpainting.")
    strong_inpaint_intensity: float = Field(0.5, ge=0, le=1, description="Strong inpainting intensity 0-1.")
    prompt: HdPrompt = Field("", description="Positive prompt.")
    neg_prompt: HdPrompt = Field("", description="Negative prompt.")
    vector_switch: bool = Field(False, description="Also produce an EPS vector.")
    color_count: int = Field(5, ge=2, le=16, description="Vector colours 2-16.")
    auto_generate_prompt: bool = Field(False, description="Let the provider write the prompt.")


class VectorizeParams(Params):
    color_count: int = Field(5, ge=2, le=16, description="Vector colours 2-16.")


class NoParams(Params):
    """Operations whose only input is the image."""


class SeamlessParams(Params):
    fit: float = Field(0.5, ge=0.1, le=0.9, description="Seam blending 0.1-0.9.")
    direction: Annotated[Literal[0, 1, 2], IntFromText] = Field(
        0, description="0 = all sides, 1 = top/bottom only, 2 = left/right only."
    )
    expand_top: Expand = 0.0
    expand_bottom: Expand = 0.0
    expand_left: Expand = 0.0
    expand_right: Expand = 0.0


class EditImageParams(Params):
    prompt: HdPrompt = Field(..., min_length=1, description="Edit instruction.")
    model_version: Literal["v1", "v2"] = Field("v1", description="v2 gives higher quality.")


class ExtractPatternParams(Params):
    aspect_ratio: Ratio = Field("1:1", description='Output ratio "W:H", e.g. 1:1, 4:3, 16:9.')


class ExpandImageParams(Params):
    expand_top: Expand = 0.0
    expand_bottom: Expand = 0.0
    expand_left: Expand = 0.0
    expand_right: Expand = 0.0
    prompt: HdPrompt = Field("", description="Guides the generated border.")

    @model_validator(mode="after")
    def _expands_something(self) -> Self:
        # guess: the document allows all zeros, but that pays for an unchanged image.
        if not any((self.expand_top, self.expand_bottom, self.expand_left, self.expand_right)):
            raise ParamValidationError(
                "expand_image needs at least one expand_* above 0",
                field="expand_top",
                rule="at least one expand_* > 0",
            )
        return self


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


def _hd(name: str, endpoint: str, params: type[Params], results: set[ResultKind], summary: str) -> Operation:
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
        SegmentationParams,
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
        BackgroundParams,
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
        IdPhotoParams,
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
        ReplaceBackgroundParams,
        _TENCENT_INPUT,
        frozenset({ResultKind.IMAGE, ResultKind.MASK}),
        Cost("tencent.call"),
        "Replace a product photo's background (Tencent AI Art).",
    ),
    _hd(
        "redraw",
        "/api/submit_task",
        RedrawParams,
        {ResultKind.IMAGE, ResultKind.VECTOR, ResultKind.PROMPT},
        "HD redraw / upscale, optionally with a vector and a generated prompt.",
    ),
    _hd("vectorize", "/api/submit_vector_task", VectorizeParams, {ResultKind.VECTOR, ResultKind.IMAGE},
        "Turn a flat-colour bitmap into an EPS vector."),
    _hd("face_enhance", "/api/submit_face_enhance_task", NoParams, {ResultKind.IMAGE}, "Repair faces."),
    _hd(
        "seamless",
        "/api/submit_seamless_task",
        SeamlessParams,
        {ResultKind.IMAGE, ResultKind.GRID, ResultKind.IMAGE_1X},
        "Make a seamless tile, with a grid preview and the 1x image.",
    ),
    _hd("remove_fabric", "/api/submit_remove_fabric_task", NoParams, {ResultKind.IMAGE},
        "Remove fabric texture, keep the print."),
    _hd("edit_image", "/api/submit_edit_image_task", EditImageParams, {ResultKind.IMAGE},
        "Edit an image from a text instruction."),
    _hd("extract_pattern", "/api/submit_extract_pattern_task", ExtractPatternParams,
        {ResultKind.IMAGES, ResultKind.PROMPT}, "Extract a print from a garment photo (one or more images)."),
    _hd("remove_diamonds", "/api/submit_remove_diamonds_task", NoParams, {ResultKind.IMAGE},
        "Remove rhinestones and glitter, keep the pattern."),
    _hd("expand_image", "/api/submit_expand_image_task", ExpandImageParams, {ResultKind.IMAGE},
        "Outpaint: extend the image on any side by up to 30%."),
    _hd("remove_watermark", "/api/submit_remove_watermark_task", NoParams, {ResultKind.IMAGE},
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
