"""picflow.core.catalogue: the 14 operations and every documented parameter rule (shared/seeds 000-004).

The boundary tests are hypothesis properties: for each range, values drawn from just inside
are accepted and values drawn from just outside are refused with a ParamValidationError that
names the field and a rule. Exact edges are pinned with explicit examples.
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from picflow.core.catalogue import (
    OPERATIONS,
    Provider,
    ResultKind,
    Style,
    describe_catalogue,
    get_operation,
    validate_params,
)
from picflow.core.errors import InvalidRequestError, ParamValidationError

ALL_STYLES = {Style.SYNC, Style.POLL, Style.CALLBACK}
R = ResultKind
# Taken from the provider documents (shared/seeds), not from the module under test.
EXPECTED = {
    "segmentation": (Provider.TASKPIC, "/task/pic/segmentation", ALL_STYLES, {R.IMAGE, R.MASK}),
    "background": (Provider.TASKPIC, "/task/pic/background", ALL_STYLES, {R.IMAGES}),
    "idphoto": (Provider.TASKPIC, "/task/pic/idphoto", ALL_STYLES, {R.IMAGE}),
    "replace_background": (Provider.TENCENT, "ReplaceBackground", {Style.SYNC}, {R.IMAGE, R.MASK}),
    "redraw": (Provider.HDREDRAW, "/api/submit_task", {Style.POLL}, {R.IMAGE, R.VECTOR, R.PROMPT}),
    "vectorize": (Provider.HDREDRAW, "/api/submit_vector_task", {Style.POLL}, {R.VECTOR, R.IMAGE}),
    "face_enhance": (Provider.HDREDRAW, "/api/submit_face_enhance_task", {Style.POLL}, {R.IMAGE}),
    "seamless": (
        Provider.HDREDRAW,
        "/api/submit_seamless_task",
        {Style.POLL},
        {R.IMAGE, R.GRID, R.IMAGE_1X},
    ),
    "remove_fabric": (Provider.HDREDRAW, "/api/submit_remove_fabric_task", {Style.POLL}, {R.IMAGE}),
    "edit_image": (Provider.HDREDRAW, "/api/submit_edit_image_task", {Style.POLL}, {R.IMAGE}),
    "extract_pattern": (
        Provider.HDREDRAW,
        "/api/submit_extract_pattern_task",
        {Style.POLL},
        {R.IMAGES, R.PROMPT},
    ),
    "remove_diamonds": (Provider.HDREDRAW, "/api/submit_remove_diamonds_task", {Style.POLL}, {R.IMAGE}),
    "expand_image": (Provider.HDREDRAW, "/api/submit_expand_image_task", {Style.POLL}, {R.IMAGE}),
    "remove_watermark": (Provider.HDREDRAW, "/api/submit_remove_watermark_task", {Style.POLL}, {R.IMAGE}),
}
# The smallest valid params of each operation, so a test can change one field at a time.
MINIMAL: dict[str, dict[str, Any]] = {
    "background": {"prompt": "a beach"},
    "idphoto": {"size": "300x400"},
    "replace_background": {"prompt": "彩色"},
    "edit_image": {"prompt": "watercolour"},
    "expand_image": {"expand_top": 0.1},
}
# Text that survives whitespace stripping and holds no control characters.
TEXT = st.characters(codec="utf-8", categories=["L", "N", "P", "S"])


def minimal(operation: str, **changes: Any) -> dict[str, Any]:
    return {**MINIMAL.get(operation, {}), **changes}


def refused(operation: str, raw: dict[str, Any]) -> ParamValidationError:
    with pytest.raises(ParamValidationError) as info:
        validate_params(operation, raw)
    return info.value


def assert_refused(operation: str, raw: dict[str, Any], field: str) -> ParamValidationError:
    error = refused(operation, raw)
    assert error.field == field, error
    assert error.rule, error
    assert error.operation == operation
    return error


# --- the entries ---------------------------------------------------------------------------


def test_catalogue_lists_exactly_the_fourteen_documented_operations() -> None:
    assert sorted(OPERATIONS) == sorted(EXPECTED)
    assert len(OPERATIONS) == 14


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_operation_entry_matches_its_provider_document(name: str) -> None:
    provider, endpoint, styles, results = EXPECTED[name]
    op = get_operation(name)
    assert op.name == name
    assert op.provider is provider
    assert op.endpoint == endpoint
    assert op.styles == styles
    assert op.results == results


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_operation_minimal_params_are_accepted(name: str) -> None:
    params = validate_params(name, MINIMAL.get(name, {}))
    assert isinstance(params, OPERATIONS[name].params)


def test_operation_hdredraw_inputs_are_capped_at_16_mb() -> None:
    for op in OPERATIONS.values():
        if op.provider is Provider.HDREDRAW:
            assert op.input.max_bytes == 16 * 1024 * 1024, op.name


def test_get_operation_unknown_name_raises_param_validation_error() -> None:
    with pytest.raises(ParamValidationError) as info:
        get_operation("sharpen")
    assert info.value.field == "operation"
    assert "sharpen" in str(info.value)


def test_validate_params_none_means_all_defaults() -> None:
    assert validate_params("segmentation", None) == validate_params("segmentation", {})


# --- task/pic: background -------------------------------------------------------------------


def test_background_batch_size_defaults_to_two() -> None:
    assert validate_params("background", minimal("background")).batch_size == 2


@settings(deadline=None)
@given(st.integers(1, 4))
def test_background_batch_size_within_1_to_4_is_accepted(n: int) -> None:
    assert validate_params("background", minimal("background", batch_size=n)).batch_size == n


@settings(deadline=None)
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=5)))
@example(0)
@example(5)
def test_background_batch_size_outside_1_to_4_is_refused(n: int) -> None:
    error = assert_refused("background", minimal("background", batch_size=n), "batch_size")
    assert error.rule in ("≥ 1", "≤ 4")


@settings(deadline=None, max_examples=25)  # long strings are slow to generate
@given(st.text(TEXT, min_size=1, max_size=1024))
@example("x" * 1024)
def test_background_prompt_up_to_1024_characters_is_accepted(prompt: str) -> None:
    assert validate_params("background", {"prompt": prompt}).prompt == prompt


@settings(deadline=None, max_examples=25)  # long strings are slow to generate
@given(st.text(TEXT, min_size=1025, max_size=1100))
@example("x" * 1025)
def test_background_prompt_over_1024_characters_is_refused(prompt: str) -> None:
    error = assert_refused("background", {"prompt": prompt}, "prompt")
    assert "1024" in error.rule


def test_background_prompt_missing_is_refused_as_required() -> None:
    assert assert_refused("background", {}, "prompt").rule == "required"


def test_background_prompt_only_whitespace_is_refused() -> None:
    assert_refused("background", {"prompt": "   "}, "prompt")


# --- task/pic: idphoto and segmentation --------------------------------------------------------


SIDE_OK = st.integers(100, 2000)
SIDE_BAD = st.one_of(st.integers(10, 99), st.integers(2001, 9999))


@settings(deadline=None)
@given(SIDE_OK, SIDE_OK)
@example(100, 2000)
@example(2000, 100)
def test_idphoto_size_each_side_100_to_2000_is_accepted(w: int, h: int) -> None:
    assert validate_params("idphoto", {"size": f"{w}x{h}"}).size == f"{w}x{h}"


@settings(deadline=None)
@given(SIDE_BAD, SIDE_OK, st.sampled_from(["width", "height", "both"]))
@example(99, 300, "width")
@example(2001, 300, "height")
def test_idphoto_size_a_side_outside_100_to_2000_is_refused(bad: int, ok: int, which: str) -> None:
    w, h = {"width": (bad, ok), "height": (ok, bad), "both": (bad, bad)}[which]
    assert_refused("idphoto", {"size": f"{w}x{h}"}, "size")


@pytest.mark.parametrize(
    "size", ["99x300", "300x2001", "2001x2001", "300*400", "300x", "x400", "300X400", ""]
)
def test_idphoto_size_malformed_or_out_of_range_is_refused(size: str) -> None:
    assert_refused("idphoto", {"size": size}, "size")


@pytest.mark.parametrize("operation", ["segmentation", "idphoto"])
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(color=st.text("0123456789abcdefABCDEF", min_size=6, max_size=6))
def test_bg_color_rrggbb_with_jpg_is_accepted(operation: str, color: str) -> None:
    params = validate_params(operation, minimal(operation, format="jpg", bg_color=color))
    assert params.bg_color == color


@pytest.mark.parametrize("operation", ["segmentation", "idphoto"])
def test_bg_color_without_format_jpg_is_refused(operation: str) -> None:
    error = assert_refused(operation, minimal(operation, bg_color="FFFFFF"), "bg_color")
    assert "jpg" in error.rule


@pytest.mark.parametrize("operation", ["segmentation", "idphoto"])
@pytest.mark.parametrize("color", ["FFFFF", "FFFFFFF", "#FFFFFF", "GGGGGG", "fff fff"])
def test_bg_color_not_rrggbb_is_refused(operation: str, color: str) -> None:
    assert_refused(operation, minimal(operation, format="jpg", bg_color=color), "bg_color")


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "animal"), ("output_type", 4), ("output_type", 0), ("crop", 2), ("format", "gif")],
)
def test_segmentation_enum_value_outside_the_document_is_refused(field: str, value: Any) -> None:
    error = assert_refused("segmentation", {field: value}, field)
    assert error.rule.startswith("one of")


# --- Tencent ReplaceBackground ---------------------------------------------------------------


CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)


@settings(deadline=None)
@given(st.text(CJK, min_size=1, max_size=256))
@example("彩" * 256)
def test_replace_background_prompt_up_to_256_cjk_characters_is_accepted(prompt: str) -> None:
    # 256 CJK characters are 768 UTF-8 bytes: the limit counts characters.
    assert validate_params("replace_background", {"prompt": prompt}).prompt == prompt


@settings(deadline=None)
@given(st.text(CJK, min_size=257, max_size=300))
def test_replace_background_prompt_over_256_characters_is_refused(prompt: str) -> None:
    error = assert_refused("replace_background", {"prompt": prompt}, "prompt")
    assert "256" in error.rule


def test_replace_background_negative_prompt_256_characters_is_the_limit() -> None:
    params = validate_params("replace_background", minimal("replace_background", negative_prompt="n" * 256))
    assert params.negative_prompt == "n" * 256
    assert_refused(
        "replace_background", minimal("replace_background", negative_prompt="n" * 257), "negative_prompt"
    )


def _ratio_ok(w: int, h: int) -> bool:
    return Fraction(2, 5) <= Fraction(w, h) <= Fraction(5, 2)


SIDE_T = st.integers(501, 3999)


@settings(deadline=None)
@given(SIDE_T, SIDE_T)
@example(501, 501)
@example(3999, 3999)
@example(1000, 2500)  # exactly 2:5
@example(2500, 1000)  # exactly 5:2
def test_replace_background_resolution_inside_the_rules_is_accepted(w: int, h: int) -> None:
    assume(_ratio_ok(w, h))
    params = validate_params("replace_background", minimal("replace_background", resolution=f"{w}:{h}"))
    assert params.resolution == f"{w}:{h}"


# (w, h) with w:h narrower than 2:5, i.e. 5w < 2h, both sides inside (500, 4000).
TOO_NARROW = st.integers(1253, 3999).flatmap(
    lambda h: st.tuples(st.integers(501, (2 * h - 1) // 5), st.just(h))
)


@settings(deadline=None)
@given(TOO_NARROW, st.booleans())
@example((999, 2500), False)
@example((999, 2500), True)
def test_replace_background_resolution_ratio_beyond_2_5_is_refused(
    narrow: tuple[int, int], turn: bool
) -> None:
    w, h = narrow[::-1] if turn else narrow
    error = assert_refused(
        "replace_background", minimal("replace_background", resolution=f"{w}:{h}"), "resolution"
    )
    assert error.rule == "ratio 2:5..5:2"


@settings(deadline=None)
@given(st.one_of(st.integers(1, 500), st.integers(4000, 9999)), SIDE_T, st.booleans())
@example(500, 1000, False)
@example(4000, 3999, True)
def test_replace_background_resolution_side_outside_500_4000_is_refused(
    bad: int, ok: int, first: bool
) -> None:
    w, h = (bad, ok) if first else (ok, bad)
    error = assert_refused(
        "replace_background", minimal("replace_background", resolution=f"{w}:{h}"), "resolution"
    )
    assert error.rule in ("each side in (500, 4000)", "ratio 2:5..5:2")


@pytest.mark.parametrize("resolution", ["1280x1280", "1280", "0:1280", "12800:1280", "1280:1280:1"])
def test_replace_background_resolution_malformed_is_refused(resolution: str) -> None:
    assert_refused("replace_background", minimal("replace_background", resolution=resolution), "resolution")


def test_replace_background_template_prompt_needs_background_template() -> None:
    assert_refused("replace_background", {"prompt": "BackgroundTemplate"}, "background_template")
    ok = validate_params("replace_background", {"prompt": "BackgroundTemplate", "background_template": "t1"})
    assert ok.background_template == "t1"


def test_replace_background_template_without_template_prompt_is_refused() -> None:
    assert_refused(
        "replace_background", {"prompt": "sea", "background_template": "t1"}, "background_template"
    )


def test_replace_background_logo_param_without_a_source_is_refused() -> None:
    assert_refused("replace_background", minimal("replace_background", logo_param={}), "logo_param")


def test_replace_background_logo_rect_zero_width_names_the_nested_field() -> None:
    logo = {"logo_url": "https://example.com/l.png", "logo_rect": {"x": 0, "y": 0, "width": 0, "height": 5}}
    assert_refused(
        "replace_background", minimal("replace_background", logo_param=logo), "logo_param.logo_rect.width"
    )


# --- HD redraw ------------------------------------------------------------------------------


def _inside(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False)


def _outside(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(max_value=lo, exclude_max=True, allow_nan=False, allow_infinity=False),
        st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False),
    )


FLOAT_RANGES = [
    ("redraw", "upscale", 1.0, 8.0),
    ("redraw", "s_noise", 1.0, 1.1),
    ("redraw", "steps", 20.0, 40.0),
    ("redraw", "strong_inpaint_intensity", 0.0, 1.0),
    ("seamless", "fit", 0.1, 0.9),
    *[("seamless", f"expand_{side}", 0.0, 0.3) for side in ("top", "bottom", "left", "right")],
    *[("expand_image", f"expand_{side}", 0.0, 0.3) for side in ("top", "bottom", "left", "right")],
]


@pytest.mark.parametrize(("operation", "field", "lo", "hi"), FLOAT_RANGES)
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(data=st.data())
def test_float_param_within_its_range_is_accepted(
    operation: str, field: str, lo: float, hi: float, data: st.DataObject
) -> None:
    value = data.draw(st.one_of(st.just(lo), st.just(hi), _inside(lo, hi)))
    base = {} if operation != "expand_image" or value > 0 else {"expand_left": 0.1}
    params = validate_params(operation, {**minimal(operation), **base, field: value})
    assert getattr(params, field) == value


@pytest.mark.parametrize(("operation", "field", "lo", "hi"), FLOAT_RANGES)
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(data=st.data())
def test_float_param_outside_its_range_is_refused(
    operation: str, field: str, lo: float, hi: float, data: st.DataObject
) -> None:
    value = data.draw(st.one_of(st.just(lo - 0.001), st.just(hi + 0.001), _outside(lo, hi)))
    error = assert_refused(operation, {**minimal(operation), field: value}, field)
    assert error.rule in (f"≥ {lo}", f"≤ {hi}")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan"])
def test_redraw_upscale_not_a_finite_number_is_refused(value: Any) -> None:
    assert_refused("redraw", {"upscale": value}, "upscale")


@pytest.mark.parametrize("operation", ["redraw", "vectorize"])
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(n=st.integers(2, 16))
def test_color_count_2_to_16_is_accepted(operation: str, n: int) -> None:
    assert validate_params(operation, {"color_count": n}).color_count == n


@pytest.mark.parametrize("operation", ["redraw", "vectorize"])
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(n=st.one_of(st.integers(max_value=1), st.integers(min_value=17)))
@example(n=1)
@example(n=17)
def test_color_count_outside_2_to_16_is_refused(operation: str, n: int) -> None:
    assert_refused(operation, {"color_count": n}, "color_count")


@pytest.mark.parametrize("direction", [0, 1, 2])
def test_seamless_direction_0_to_2_is_accepted(direction: int) -> None:
    assert validate_params("seamless", {"direction": direction}).direction == direction


@pytest.mark.parametrize("direction", [-1, 3])
def test_seamless_direction_outside_0_to_2_is_refused(direction: int) -> None:
    assert_refused("seamless", {"direction": direction}, "direction")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_edit_image_model_version_v1_or_v2_is_accepted(version: str) -> None:
    params = validate_params("edit_image", minimal("edit_image", model_version=version))
    assert params.model_version == version


@pytest.mark.parametrize("version", ["v3", "V1", "1", ""])
def test_edit_image_model_version_other_is_refused(version: str) -> None:
    assert_refused("edit_image", minimal("edit_image", model_version=version), "model_version")


def test_edit_image_prompt_missing_is_refused() -> None:
    assert_refused("edit_image", {}, "prompt")


@settings(deadline=None)
@given(st.integers(1, 9999), st.integers(1, 9999))
def test_extract_pattern_aspect_ratio_w_h_is_accepted(w: int, h: int) -> None:
    params = validate_params("extract_pattern", {"aspect_ratio": f"{w}:{h}"})
    assert params.aspect_ratio == f"{w}:{h}"


@pytest.mark.parametrize("ratio", ["16x9", "0:1", "1:0", "16:", ":9", "1.5:1", "10000:1", "square"])
def test_extract_pattern_aspect_ratio_malformed_is_refused(ratio: str) -> None:
    assert_refused("extract_pattern", {"aspect_ratio": ratio}, "aspect_ratio")


def test_expand_image_all_zero_expands_is_refused() -> None:
    error = refused("expand_image", {})
    assert error.field.startswith("expand_")
    assert error.rule


# --- rules every operation shares -----------------------------------------------------------


TEXT_FIELDS = [
    ("background", "prompt"),
    ("replace_background", "prompt"),
    ("replace_background", "negative_prompt"),
    ("redraw", "prompt"),
    ("redraw", "neg_prompt"),
    ("edit_image", "prompt"),
    ("expand_image", "prompt"),
]
CONTROL = st.characters(categories=["Cc"]).filter(lambda c: c not in "\t\n\r")


@pytest.mark.parametrize(("operation", "field"), TEXT_FIELDS)
@settings(deadline=None, max_examples=40)  # parametrised: many runs already
@given(
    before=st.text(TEXT, min_size=1, max_size=5), control=CONTROL, after=st.text(TEXT, min_size=1, max_size=5)
)
def test_text_param_with_a_control_character_is_refused(
    operation: str, field: str, before: str, control: str, after: str
) -> None:
    error = assert_refused(operation, minimal(operation, **{field: before + control + after}), field)
    assert error.rule == "no control characters"


@pytest.mark.parametrize("operation", sorted(EXPECTED))
def test_unknown_param_is_refused_naming_it(operation: str) -> None:
    error = assert_refused(operation, minimal(operation, colour="red"), "colour")
    assert error.rule == "not a parameter of this operation"


@pytest.mark.parametrize("operation", sorted(EXPECTED))
def test_provider_inputs_are_not_user_params(operation: str) -> None:
    # sync/callback_url/images are picflow's choice, never the caller's.
    for field in ("sync", "callback_url", "image_url", "input_image", "user_key"):
        assert_refused(operation, minimal(operation, **{field: "1"}), field)


BAD_VALUES = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@settings(deadline=None)
@given(
    operation=st.sampled_from(sorted(EXPECTED)),
    raw=st.dictionaries(
        st.sampled_from(
            [
                "batch_size",
                "size",
                "resolution",
                "upscale",
                "steps",
                "fit",
                "direction",
                "color_count",
                "aspect_ratio",
                "model_version",
                "format",
                "bg_color",
                "prompt",
                "expand_top",
                "output_type",
                "logo_add",
            ]
        ),
        BAD_VALUES,
        max_size=4,
    ),
)
def test_every_refusal_names_a_param_of_the_operation_and_a_rule(operation: str, raw: dict[str, Any]) -> None:
    op = OPERATIONS[operation]
    try:
        validate_params(op, raw)
    except ParamValidationError as exc:
        error = exc
    else:
        return
    assert isinstance(error, InvalidRequestError)
    # A documented field of the operation, or the unknown key the caller sent.
    assert error.field.split(".")[0] in {*op.params.model_fields, *raw}, error
    assert error.rule.strip(), error
    assert error.operation == operation
    assert error.to_dict()["field"] == error.field


# --- strings from S3 metadata and form fields -------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "raw", "expected"),
    [
        ("background", {"prompt": "sea", "batch_size": "3"}, {"batch_size": 3}),
        ("redraw", {"high_fidelity": "true", "vector_switch": "false", "steps": "25"},
         {"high_fidelity": True, "vector_switch": False, "steps": 25.0}),
        ("redraw", {"upscale": "2.5", "s_noise": "1.05", "color_count": "8"},
         {"upscale": 2.5, "s_noise": 1.05, "color_count": 8}),
        ("seamless", {"fit": "0.3", "expand_top": "0.2", "direction": "2"},
         {"fit": 0.3, "expand_top": 0.2, "direction": 2}),
        ("segmentation", {"output_type": "1", "crop": "1"}, {"output_type": 1, "crop": 1}),
        ("replace_background", {"prompt": "sea", "logo_add": "0"}, {"logo_add": 0}),
    ],
)  # fmt: skip
def test_validate_params_string_values_from_metadata_parse(
    operation: str, raw: dict[str, str], expected: dict[str, Any]
) -> None:
    params = validate_params(operation, raw)
    for field, value in expected.items():
        got = getattr(params, field)
        assert got == value
        assert type(got) is type(value), field


def test_validate_params_string_out_of_range_is_still_refused() -> None:
    assert_refused("background", {"prompt": "sea", "batch_size": "5"}, "batch_size")
    assert_refused("segmentation", {"output_type": "4"}, "output_type")


def test_validate_params_non_numeric_string_is_refused() -> None:
    assert_refused("background", {"prompt": "sea", "batch_size": "two"}, "batch_size")


# --- describing the catalogue ---------------------------------------------------------------


def test_describe_catalogue_is_json_serialisable_and_covers_every_operation() -> None:
    described = json.loads(json.dumps(describe_catalogue()))
    assert [d["operation"] for d in described] == list(OPERATIONS)
    for entry in described:
        op = OPERATIONS[entry["operation"]]
        assert entry["provider"] == op.provider.value
        assert entry["endpoint"] == op.endpoint
        assert [p["name"] for p in entry["params"]] == list(op.params.model_fields)
        for param in entry["params"]:
            assert {"name", "type", "required", "default", "rule", "description"} <= set(param)


def _param(operation: str, name: str) -> dict[str, Any]:
    entry = next(d for d in describe_catalogue() if d["operation"] == operation)
    return next(p for p in entry["params"] if p["name"] == name)


@pytest.mark.parametrize(
    ("operation", "name", "parts"),
    [
        ("background", "batch_size", ["≥ 1", "≤ 4"]),
        ("background", "prompt", ["≤ 1024"]),
        ("idphoto", "size", ["matches"]),
        ("segmentation", "output_type", ["one of", "1", "2", "3"]),
        ("segmentation", "bg_color", ["matches"]),
        ("replace_background", "prompt", ["≤ 256"]),
        ("replace_background", "resolution", ["matches"]),
        ("redraw", "upscale", ["≥ 1", "≤ 8"]),
        ("redraw", "s_noise", ["≥ 1", "≤ 1.1"]),
        ("redraw", "steps", ["≥ 20", "≤ 40"]),
        ("redraw", "strong_inpaint_intensity", ["≥ 0", "≤ 1"]),
        ("redraw", "color_count", ["≥ 2", "≤ 16"]),
        ("seamless", "fit", ["≥ 0.1", "≤ 0.9"]),
        ("seamless", "direction", ["one of", "0", "1", "2"]),
        ("seamless", "expand_top", ["≥ 0", "≤ 0.3"]),
        ("edit_image", "model_version", ["one of", "v1", "v2"]),
    ],
)
def test_describe_catalogue_param_rule_states_the_documented_limits(
    operation: str, name: str, parts: list[str]
) -> None:
    rule = _param(operation, name)["rule"]
    for part in parts:
        assert part in rule, (rule, part)


def test_describe_catalogue_marks_required_and_defaults() -> None:
    assert _param("background", "prompt")["required"] is True
    assert _param("background", "batch_size")["required"] is False
    assert _param("background", "batch_size")["default"] == 2
    assert _param("replace_background", "resolution")["default"] == "1280:1280"


# --- cost -----------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.integers(1, 4))
def test_cost_units_background_scales_with_batch_size(n: int) -> None:
    op = get_operation("background")
    assert op.cost.units(validate_params(op, {"prompt": "sea", "batch_size": n})) == n


def test_cost_units_background_default_batch_is_two_units() -> None:
    op = get_operation("background")
    assert op.cost.units(validate_params(op, {"prompt": "sea"})) == 2


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - {"background"}))
def test_cost_units_other_operations_are_one_per_call(name: str) -> None:
    op = get_operation(name)
    assert op.cost.units(validate_params(op, MINIMAL.get(name, {}))) == 1
    assert op.cost.unit.startswith(op.provider.value + ".")
