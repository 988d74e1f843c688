"""The catalogue: one spec per provider and one declarative entry per upstream operation (14 in all).

A :class:`ProviderSpec` holds a provider's facts, read by generic code that never branches on a
provider's name: how it takes the source image and what it accepts (:class:`InputLimits`), its
interaction styles, how fast its status may be polled (its status cache), its default concurrency
cap, how its raw task states read (:class:`StateTable`: done, running, failed and what each failed
state means), where its client is, its base URL setting and its credentials in the secret.

An :class:`Operation` names its provider, endpoint, results, cost and params model; the models
themselves (every user parameter and its rule, from the provider documents in ``shared/seeds``)
are in :mod:`picflow.core.params`. The README's operation table is generated from these two
modules, so they are the one place to change a provider, an operation or a rule.

This module does not import pydantic: a status check, Collect or a provider callback reads the
table on every invocation but never validates params, and pydantic with the models is ~40 ms of
a cold start (bench/coldstart.py). An entry's ``params`` model is imported on first use.

Validation happens here, before any network call: :func:`validate_params` returns the typed
params model or raises :class:`ParamValidationError` naming the field and the rule (what Validate
hands on is the model's dump, which a submit takes as :class:`CheckedParams`, without pydantic);
:func:`choose_style` is the mode rule and :meth:`InputLimits.check_size` the size rule, for
every way in. ``sync``/``callback_url`` (task/pic) and the image inputs (``image_file``/
``image_url``, ``ProductUrl``, ``input_image``) are not user params: picflow chooses the
interaction style and supplies the image, so they are arguments of the provider clients instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from picflow.core import config
from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    from picflow.core.params import Params

__all__ = [
    "MB",
    "OPERATIONS",
    "SPECS",
    "CheckedParams",
    "Cost",
    "InputLimits",
    "Operation",
    "Provider",
    "ProviderSpec",
    "ResultKind",
    "StateTable",
    "Style",
    "TaskState",
    "check_image_size",
    "choose_style",
    "describe_catalogue",
    "describe_operation",
    "get_operation",
    "rule_of",
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


class TaskState(StrEnum):
    """Where an upstream task is, whatever the provider calls it (:class:`StateTable`)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def _ratio(value: float) -> str:
    from fractions import Fraction

    fraction = Fraction(value).limit_denominator(100)
    return f"{fraction.numerator}:{fraction.denominator}"


@dataclass(frozen=True)
class InputLimits:
    """What the provider accepts as the source image, and how it takes it.

    ``source``: ``file`` (the client uploads the bytes), ``url`` (it is handed a URL to fetch) or
    ``file_or_url`` (either; picflow hands it a presigned URL, which costs the Lambda no upload).
    """

    max_bytes: int
    formats: frozenset[str]  # Pillow format names
    max_side: int | None = None  # exclusive upper bound on either side, in px
    min_ratio: float | None = None  # width / height
    max_ratio: float | None = None
    source: Literal["file", "url", "file_or_url"] = "file"

    @property
    def takes_file(self) -> bool:
        """True when the client must upload the bytes (it cannot be given a URL)."""
        return self.source == "file"

    @property
    def ratio_text(self) -> str | None:
        """The accepted aspect ratios as ``2:5..5:2`` (width:height), or None when any goes."""
        if self.min_ratio is None or self.max_ratio is None:
            return None
        return f"{_ratio(self.min_ratio)}..{_ratio(self.max_ratio)}"

    def check_size(self, size: int, *, what: str, field: str = "image") -> None:
        """The size rule for this provider's inputs (:func:`check_image_size`)."""
        check_image_size(size, self.max_bytes, what=what, field=field)


def check_image_size(size: int, max_bytes: int | None, *, what: str, field: str = "image") -> None:
    """The size rule, for every way an image arrives: not empty, at most ``max_bytes``.

    ``what`` (the operation) names who refuses; ``field`` is where the image came from.
    """
    if max_bytes is not None and size > max_bytes:
        raise ParamValidationError(
            f"the image is {size} bytes; {what} accepts at most {max_bytes}",
            field=field,
            rule=f"at most {max_bytes} bytes",
        )
    if size == 0:
        raise ParamValidationError("the image is empty", field=field, rule="not empty")


def _never(raw: str | int | None) -> bool:
    return False


@dataclass(frozen=True)
class StateTable:
    """How a provider's raw task states read (its status mapping and failure rule).

    ``done`` finished with results; ``running`` and ``failed`` map the documented states to what
    they mean. A raw state in none of them is failed when ``unknown_fails`` says so, else still
    running (a provider may add states; polling on is the safe reading).
    """

    done: frozenset[str | int]
    running: Mapping[str | int, str] = field(default_factory=dict)
    failed: Mapping[str | int, str] = field(default_factory=dict)
    unknown_fails: Callable[[str | int | None], bool] = _never

    def read(self, raw: str | int | None) -> TaskState:
        if raw in self.done:
            return TaskState.DONE
        if raw in self.failed:
            return TaskState.FAILED
        if raw in self.running or not self.unknown_fails(raw):
            return TaskState.PENDING
        return TaskState.FAILED

    def meaning(self, raw: str | int | None) -> str | None:
        """What a documented state means (None for done and undocumented states)."""
        if raw is None:
            return None
        return self.failed.get(raw) or self.running.get(raw)


@dataclass(frozen=True)
class ProviderSpec:
    """One provider's facts (see the module docstring); adding a provider starts here."""

    name: Provider
    title: str  # as messages name it
    input: InputLimits
    styles: frozenset[Style]
    # Seconds between two status reads at the least: the provider's status cache (HD redraw caches
    # answers for 3 s: polling faster buys nothing).
    poll_floor: float
    # In-flight upstream jobs at once unless PICFLOW_CONCURRENCY says otherwise.
    default_cap: int
    cost_unit: str
    # "module:Class" of its client (picflow.providers.base.ProviderClient), imported on first use.
    client: str
    # The config variable holding its base URL, and its keys in the provider secret (JSON).
    base_url: str
    secret_keys: tuple[str, ...]
    # Empty for a synchronous provider: it has no task to read.
    states: StateTable = field(default_factory=lambda: StateTable(frozenset()))
    # Hosts its result URLs may name (status answers, callbacks, sync answers): ``host``,
    # ``host:port`` or ``*.suffix``; PICFLOW_RESULT_HOSTS adds more (picflow.net.urls).
    result_hosts: tuple[str, ...] = ()

    @property
    def concurrency_cap(self) -> int:
        return config.concurrency_overrides().get(self.name.value, self.default_cap)


def _neg_int(raw: str | int | None) -> bool:
    return isinstance(raw, int) and raw < 0


def _is_none(raw: str | int | None) -> bool:
    return raw is None


# --- the providers -----------------------------------------------------------------------

SPECS: Mapping[Provider, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            Provider.TASKPIC,
            title="task/pic",
            # guess: task/pic formats are not documented; these are what it plausibly decodes.
            input=InputLimits(
                max_bytes=15 * MB, formats=frozenset({"JPEG", "PNG", "WEBP", "BMP"}), source="file_or_url"
            ),
            styles=frozenset({Style.SYNC, Style.POLL, Style.CALLBACK}),
            poll_floor=1.0,
            default_cap=8,
            cost_unit="taskpic.call",
            client="picflow.providers.taskpic:TaskPicClient",
            base_url=config.TASKPIC_BASE_URL,
            secret_keys=("taskpic_token",),
            # Documents 000-002; guess: an undocumented negative state is a failure, any other
            # undocumented state is still running.
            states=StateTable(
                done=frozenset({1}),
                running={0: "queued", 2: "preparing", 3: "waiting", 4: "processing"},
                failed={
                    -1: "task failed",
                    -2: "result upload failed",
                    -3: "source image download failed",
                    -5: "source image over 15 MB",
                    -7: "invalid source image",
                    -8: "processing timed out",
                },
                unknown_fails=_neg_int,
            ),
            # Documents 000-002: results are on the vendor's OSS bucket.
            result_hosts=("wxtechsz.oss-cn-shenzhen.aliyuncs.com",),
        ),
        ProviderSpec(
            Provider.TENCENT,
            title="Tencent AI Art",
            # base64 < 6 MB means at most 4.5 MB of raw bytes; it fetches the image from a URL.
            input=InputLimits(
                max_bytes=6 * MB * 3 // 4,
                formats=frozenset({"JPEG", "PNG", "BMP", "TIFF", "WEBP"}),
                max_side=4000,
                min_ratio=2 / 5,
                max_ratio=5 / 2,
                source="url",
            ),
            styles=frozenset({Style.SYNC}),
            poll_floor=1.0,
            # Tencent's documented default: one concurrent job per account.
            default_cap=1,
            cost_unit="tencent.call",
            client="picflow.providers.tencent:TencentClient",
            base_url=config.TENCENT_ENDPOINT,
            secret_keys=("tencent_secret_id", "tencent_secret_key"),
            # Document 003: ResultImage/MaskImage are signed COS URLs in one bucket per service.
            result_hosts=("*.cos.ap-guangzhou.myqcloud.com",),
        ),
        ProviderSpec(
            Provider.HDREDRAW,
            title="HD redraw",
            # guess: HD redraw formats are not documented beyond the examples (png, jpg, jpeg).
            input=InputLimits(max_bytes=16 * MB, formats=frozenset({"JPEG", "PNG", "WEBP", "BMP"})),
            styles=frozenset({Style.POLL}),
            # The vendor caches check_task_status answers for 3 s.
            poll_floor=3.0,
            default_cap=4,
            cost_unit="hdredraw.call",
            client="picflow.providers.hdredraw:HdRedrawClient",
            base_url=config.HDREDRAW_BASE_URL,
            secret_keys=("hdredraw_user_key",),
            # Document 004 names no running state; "status": null stops its example's polling
            # as "Failed" does (the status is unknown for good). Words are read lower-cased.
            states=StateTable(
                done=frozenset({"completed", "success", "done"}),
                failed={"failed": "failed", "error": "error", "expired": "expired"},
                unknown_fails=_is_none,
            ),
            # Document 004: results are served by the API's own host.
            result_hosts=("api.domain.com",),
        ),
    )
}


# --- the operations ----------------------------------------------------------------------


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
    params_model: str  # a class of picflow.core.params: see ``params``
    results: frozenset[ResultKind]
    summary: str
    # A param that multiplies the units of a call (background's batch_size).
    multiplier_param: str | None = None

    @property
    def spec(self) -> ProviderSpec:
        return SPECS[self.provider]

    @property
    def styles(self) -> frozenset[Style]:
        return self.spec.styles

    @property
    def input(self) -> InputLimits:
        return self.spec.input

    @property
    def cost(self) -> Cost:
        return Cost(self.spec.cost_unit, multiplier_param=self.multiplier_param)

    @property
    def params(self) -> type[Params]:
        """The pydantic model of this operation's params (imports picflow.core.params on first use)."""
        from picflow.core import params

        model: type[Params] = getattr(params, self.params_model)
        return model


def _op(
    name: str, provider: Provider, endpoint: str, params: str, results: set[ResultKind], summary: str
) -> Operation:
    return Operation(name, provider, endpoint, params, frozenset(results), summary)


_TP, _TC, _HD = Provider.TASKPIC, Provider.TENCENT, Provider.HDREDRAW
_ALL: tuple[Operation, ...] = (
    _op("segmentation", _TP, "/task/pic/segmentation", "SegmentationParams",
        {ResultKind.IMAGE, ResultKind.MASK}, "Cut out the foreground (image, mask or both)."),
    Operation("background", _TP, "/task/pic/background", "BackgroundParams", frozenset({ResultKind.IMAGES}),
              "Generate new backgrounds for a foreground image.", multiplier_param="batch_size"),
    _op("idphoto", _TP, "/task/pic/idphoto", "IdPhotoParams", {ResultKind.IMAGE},
        "Make an ID photo of an exact size."),
    _op("replace_background", _TC, "ReplaceBackground", "ReplaceBackgroundParams",
        {ResultKind.IMAGE, ResultKind.MASK}, "Replace a product photo's background (Tencent AI Art)."),
    _op("redraw", _HD, "/api/submit_task", "RedrawParams",
        {ResultKind.IMAGE, ResultKind.VECTOR, ResultKind.PROMPT},
        "HD redraw / upscale, optionally with a vector and a generated prompt."),
    _op("vectorize", _HD, "/api/submit_vector_task", "VectorizeParams",
        {ResultKind.VECTOR, ResultKind.IMAGE}, "Turn a flat-colour bitmap into an EPS vector."),
    _op("face_enhance", _HD, "/api/submit_face_enhance_task", "NoParams", {ResultKind.IMAGE},
        "Repair faces."),
    _op("seamless", _HD, "/api/submit_seamless_task", "SeamlessParams",
        {ResultKind.IMAGE, ResultKind.GRID, ResultKind.IMAGE_1X},
        "Make a seamless tile, with a grid preview and the 1x image."),
    _op("remove_fabric", _HD, "/api/submit_remove_fabric_task", "NoParams", {ResultKind.IMAGE},
        "Remove fabric texture, keep the print."),
    _op("edit_image", _HD, "/api/submit_edit_image_task", "EditImageParams", {ResultKind.IMAGE},
        "Edit an image from a text instruction."),
    _op("extract_pattern", _HD, "/api/submit_extract_pattern_task", "ExtractPatternParams",
        {ResultKind.IMAGES, ResultKind.PROMPT}, "Extract a print from a garment photo (one or more images)."),
    _op("remove_diamonds", _HD, "/api/submit_remove_diamonds_task", "NoParams", {ResultKind.IMAGE},
        "Remove rhinestones and glitter, keep the pattern."),
    _op("expand_image", _HD, "/api/submit_expand_image_task", "ExpandImageParams", {ResultKind.IMAGE},
        "Outpaint: extend the image on any side by up to 30%."),
    _op("remove_watermark", _HD, "/api/submit_remove_watermark_task", "NoParams", {ResultKind.IMAGE},
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


def rule_of(error: Mapping[str, Any]) -> str:
    """The rule a pydantic error names, in the words the catalogue uses (``≤ 4``, ``required``)."""
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
        rule = rule_of(first)
        raise ParamValidationError(
            f"{op.name}: {field}: {first['msg']}", field=field, rule=rule, operation=op.name
        ) from None


@dataclass(frozen=True)
class CheckedParams:
    """``operation``'s params as Validate checked them against its model and handed them on in the
    job's state: ``model_dump(mode="json", exclude_none=True)``, defaults filled in.

    A submit passes these to the provider client as they are, which sends ``values`` without
    building the model again: the rules live in :mod:`picflow.core.params` alone, applied once per
    job by Validate, and the submit's cold start does not load pydantic and the models (~65 ms,
    bench/coldstart.py). A client refuses another operation's.
    """

    operation: str
    values: Mapping[str, Any]

    def for_operation(self, operation: str) -> Mapping[str, Any]:
        """The values, if these are ``operation``'s params (else a :class:`ParamValidationError`)."""
        if self.operation != operation:
            raise ParamValidationError(
                f"{operation} takes its own params, not {self.operation}'s",
                field="params",
                rule=f"the params of {operation}",
                operation=operation,
            )
        return self.values


def choose_style(op: Operation, mode: str, *, callbacks: bool) -> Style:
    """The mode rule: the style a job of ``op`` runs in, for ``mode`` auto, sync, poll or callback.

    ``auto`` picks sync for a sync-only operation, else callback when ``callbacks`` (a public
    callback URL is configured), else poll. Any other mode must be one ``op`` supports.
    """
    if mode == "auto":
        if op.styles == {Style.SYNC}:
            return Style.SYNC
        if Style.CALLBACK in op.styles and callbacks:
            return Style.CALLBACK
        return Style.POLL
    if mode not in {s.value for s in op.styles}:
        raise ParamValidationError(
            f"{op.name} cannot run in {mode} mode",
            field="mode",
            rule="one of " + ", ".join(["auto", *sorted(s.value for s in op.styles)]),
            operation=op.name,
        )
    return Style(mode)


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
            "ratio": limits.ratio_text,
        },
        "results": sorted(r.value for r in op.results),
        "cost": {"unit": op.cost.unit, "per_call": op.cost.per_call, "multiplier": op.cost.multiplier_param},
    }


def describe_catalogue() -> list[dict[str, Any]]:
    return [describe_operation(op) for op in OPERATIONS.values()]
