"""The params models of the catalogue's operations: every user parameter and its rule, in pydantic.

Split from :mod:`picflow.core.catalogue` because pydantic and the models cost ~40 ms to import and
build: the catalogue's table (what a status check, Collect or a callback reads) stays light,
and only the code that validates params (Validate, a submit, the API) loads this module.

Every rule here comes from the provider documents in ``shared/seeds`` (000-004) or, for
Tencent's ``NegativePrompt``/``BackgroundTemplate``/``Product`` limits, from the official
``tencentcloud-sdk-python-aiart`` models. Where the documents are silent, the rule chosen
is marked ``# guess:`` with the reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

__all__ = [
    "BACKGROUND_TEMPLATE_PROMPT",
    "URL_FIELD",
    "BackgroundParams",
    "EditImageParams",
    "ExpandImageParams",
    "ExtractPatternParams",
    "IdPhotoParams",
    "LogoParam",
    "LogoRect",
    "NoParams",
    "Params",
    "RedrawParams",
    "ReplaceBackgroundParams",
    "SeamlessParams",
    "SegmentationParams",
    "VectorizeParams",
]

# --- shared field types -------------------------------------------------------------------

# C0 controls but tab/LF/CR, DEL, and the C1 controls (U+0080-U+009F).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


class Params(BaseModel):
    """Base of every params model: unknown fields are errors, values are immutable."""

    # defer_build: a model's validator is built the first time it validates, not at import. Each
    # operation's function only ever validates its own operation's params: it builds one model
    # of the 14 (≈ 2 ms each), not all of them on every cold start.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, defer_build=True)

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

    def duration_key(self) -> str | None:
        """A hash of the params that can change how long the provider takes, canonical (defaults
        included, key order ignored): the duration history of a job's operation and params
        (picflow.aws.durations). Counted: numbers, flags and choices (Literal or pattern-bound
        text); left out: free text (prompts, names, URLs, base64 images) and nested objects, which
        would give nearly every job a history of its own. None when no param counts."""
        import hashlib
        import json

        fields = type(self).model_fields
        counted = {name: getattr(self, name) for name, info in fields.items() if _counts_for_duration(info)}
        if not counted:
            return None
        text = json.dumps(counted, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def url_params(self) -> list[tuple[str, str]]:
        """Every URL-valued param that is set, as (field path, URL), nested models included:
        the URLs picflow hands on to a provider (fields marked with :data:`URL_FIELD`)."""
        found: list[tuple[str, str]] = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, Params):
                found.extend((f"{name}.{inner}", url) for inner, url in value.url_params())
            elif isinstance(value, str) and info.json_schema_extra == URL_FIELD:
                found.append((name, value))
        return found


def _counts_for_duration(info: FieldInfo) -> bool:
    """Whether a field can change a task's duration, by its type (see :meth:`Params.duration_key`)."""
    import types
    from typing import Union

    kinds = [info.annotation]
    if get_origin(info.annotation) in (Union, types.UnionType):
        kinds = [a for a in get_args(info.annotation) if a is not type(None)]
    if any(isinstance(kind, type) and issubclass(kind, Params) for kind in kinds):
        return False
    if str not in kinds:
        return True  # numbers, flags, choices (Literal)
    return info.json_schema_extra != URL_FIELD and any(getattr(m, "pattern", None) for m in info.metadata)


# A param that is a URL picflow hands on: checked like every user-given URL (picflow.net.urls).
URL_FIELD: dict[str, Any] = {"format": "uri"}


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
    logo_url: str | None = Field(
        None, description="Logo image URL (http/https).", json_schema_extra=URL_FIELD
    )
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
        None,
        description="PNG mask with transparent background, same size as the product.",
        json_schema_extra=URL_FIELD,
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
