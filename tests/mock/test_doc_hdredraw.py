"""The HD redraw vendor (document 004) checked against the document itself.

Each endpoint's parameter table, example code (`data={...}` with its variables), response
example, field table and error table are read at test time.
"""

from __future__ import annotations

import re

import pytest
from documents import (
    HD_DOC,
    default_of,
    hd_example_user_key,
    hd_terminal_statuses,
    hdredraw,
    number_range,
    shape_differences,
    text,
)

pytestmark = pytest.mark.integration

ENDPOINTS = hdredraw()
STATUS = ENDPOINTS["/api/check_task_status"]
SUBMITS = sorted(p for p in ENDPOINTS if p != STATUS.path)
KEY = hd_example_user_key()
SUBMIT_FAILED = next(m for m in ENDPOINTS["/api/submit_task"].errors if "{err_msg}" in m).split("{")[0]
# The document's text for an expand ratio out of range (listed under expand_image; the mock
# uses it for seamless's same four fields too, as its README declares).
EXPAND_ERROR = next(m for e in ENDPOINTS.values() for m in e.errors if "expand_xxx" in m)


def form(value):
    """A form value as the example's `httpx.post(data=...)` sends it (bools as "true"/"false")."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


@pytest.fixture
def hd(client, png):
    image = png((96, 64))

    def submit(path, data=None, content=image):
        files = {"input_image": ("in.png", content, "image/png")} if content is not None else None
        fields = {k: form(v) for k, v in (ENDPOINTS[path].example_data if data is None else data).items()}
        return client.post(path, data=fields, files=files).json()

    def status(task_id, key=KEY):
        return client.post(STATUS.path, data={"user_key": key, "task_id": task_id}).json()

    submit.status = status
    return submit


# ---- example code, example answers ---------------------------------------------------------
@pytest.mark.parametrize("path", SUBMITS)
def test_example_code_gets_the_example_answer_field_by_field(hd, path):
    answer = hd(path)
    assert shape_differences(ENDPOINTS[path].answer, answer) == []
    assert answer["err_code"] == ENDPOINTS[path].answer["err_code"]
    assert set(answer) <= set(ENDPOINTS[path].answer_fields)


@pytest.mark.parametrize("path", SUBMITS)
def test_completed_status_has_the_example_answers_fields(hd, path):
    task_id = hd(path)["task_id"]
    answer = hd.status(task_id)
    multi = "images_urls" in answer
    example = STATUS.extra_answers["multi"] if multi else STATUS.answer
    # Besides the example's fields, only those the field table documents (images_url_1m).
    optional = frozenset(set(STATUS.answer_fields) - set(example) - {"err_msg"})
    assert shape_differences(example, answer, optional=optional) == []
    assert answer["status"] == example["status"]
    if multi:
        # "images_urls 数组的第一个元素总是与 images_url 相同"
        assert "第一个元素总是与 images_url 相同" in text(HD_DOC)
        assert answer["images_urls"][0] == answer["images_url"]


def test_extract_pattern_answers_like_the_multi_image_example(hd):
    answer = hd.status(hd("/api/submit_extract_pattern_task")["task_id"])
    assert shape_differences(STATUS.extra_answers["multi"], answer) == []
    assert len(answer["images_urls"]) >= 1


def test_seamless_has_its_1x_image_and_grid(hd, client):
    # Field table: images_url_1m and grid_url for seamless tasks.
    assert "无缝拼图" in STATUS.answer_fields["images_url_1m"]
    assert "无缝拼图" in STATUS.answer_fields["grid_url"]
    answer = hd.status(hd("/api/submit_seamless_task")["task_id"])
    for name in ("images_url", "images_url_1m", "grid_url"):
        assert client.get(answer[name]).status_code == 200, name


def test_vector_and_generated_prompt_when_switched_on(hd, client):
    data = {**ENDPOINTS["/api/submit_task"].example_data, "vector_switch": True, "auto_generate_prompt": True}
    answer = hd.status(hd("/api/submit_task", data)["task_id"])
    assert client.get(answer["vector_url"]).content.startswith(b"%!PS-Adobe")  # "EPS 格式"
    assert answer["generated_prompt"]


def test_statuses_end_in_the_example_loops_terminal_set(hd, mock_upstream):
    terminal = hd_terminal_statuses()
    assert terminal == {"Completed", "Failed", None}
    mock_upstream.set_scenario(next=1, polls=2)
    task_id = hd("/api/submit_face_enhance_task")["task_id"]
    seen = []
    for _ in range(3):
        seen.append(hd.status(task_id))
        mock_upstream.advance_clock(3)
    assert [s["status"] in terminal for s in seen] == [False, False, True]
    # "剩余次数/金额 ... 仅在有结果时返回": only the finished answer carries the balance.
    assert ["remaining_count" in s for s in seen] == [False, False, True]
    assert ["images_url" in s for s in seen] == [False, False, True]


@pytest.mark.parametrize(("outcome", "status"), [("failure", "Failed"), ("unknown", None)])
def test_a_task_can_end_in_each_documented_terminal_status(hd, mock_upstream, outcome, status):
    assert status in hd_terminal_statuses()
    mock_upstream.set_scenario(next=1, outcome=outcome)
    assert hd.status(hd("/api/submit_face_enhance_task")["task_id"])["status"] == status


def test_status_is_cached_for_the_documented_seconds(hd, mock_upstream):
    seconds = int(re.search(r"实施了(\d+)秒缓存", STATUS.notes)[1])
    mock_upstream.set_scenario(next=1, seconds=1)
    task_id = hd("/api/submit_face_enhance_task")["task_id"]
    first = hd.status(task_id)
    mock_upstream.advance_clock(seconds - 0.5)  # the task has ended, the cache has not
    assert hd.status(task_id) == first
    mock_upstream.advance_clock(0.5)
    assert hd.status(task_id)["status"] == "Completed"


# ---- parameter tables ------------------------------------------------------------------------
REQUIRED = [
    (path, name)
    for path in SUBMITS
    for name, param in ENDPOINTS[path].params.items()
    if param.required and name not in ("user_key", "input_image")
]


@pytest.mark.parametrize(("path", "name"), REQUIRED)
def test_required_parameters_are_required(hd, mock_upstream, path, name):
    data = {k: v for k, v in ENDPOINTS[path].example_data.items() if k != name}
    answer = hd(path, data)
    assert answer["err_code"] == 1
    assert answer["err_msg"].startswith(SUBMIT_FAILED)
    assert mock_upstream.count(paid=True) == 0


@pytest.mark.parametrize("path", SUBMITS)
def test_input_image_is_required(hd, path):
    answer = hd(path, content=None)
    assert answer["err_code"] == 1
    assert answer["err_msg"].startswith(SUBMIT_FAILED)


RANGES = [
    (path, name, number_range(param.description))
    for path in SUBMITS
    for name, param in ENDPOINTS[path].params.items()
    if number_range(param.description)
]


@pytest.mark.parametrize(("path", "name", "bounds"), RANGES)
def test_documented_ranges_accept_their_ends_and_refuse_beyond(hd, path, name, bounds):
    integer = ENDPOINTS[path].params[name].type == "整数"
    low, high = (int(b) for b in bounds) if integer else bounds
    base = ENDPOINTS[path].example_data
    for inside in (low, high):
        assert hd(path, {**base, name: inside})["err_code"] == 0, (name, inside)
    step = 1 if integer else 0.05
    for outside in (low - step, high + step):
        answer = hd(path, {**base, name: round(outside, 2)})
        assert answer["err_code"] == 1, (name, outside)
        if name.startswith("expand_"):
            # "扩展参数错误:expand_xxx必须在0.0-0.3之间", xxx being the field
            assert answer["err_msg"] == EXPAND_ERROR.replace("expand_xxx", name)
        else:
            assert answer["err_msg"].startswith(SUBMIT_FAILED)


def test_model_version_default_and_choices(hd):
    param = ENDPOINTS["/api/submit_edit_image_task"].params["model_version"]
    choices = re.findall(r'"(v\d)"', param.description)
    assert default_of(param.description) in choices
    base = ENDPOINTS["/api/submit_edit_image_task"].example_data
    for choice in choices:
        assert hd("/api/submit_edit_image_task", {**base, "model_version": choice})["err_code"] == 0
    assert hd("/api/submit_edit_image_task", {**base, "model_version": "v9"})["err_code"] == 1


# ---- error tables --------------------------------------------------------------------------
def test_unknown_user_key_is_the_documented_account_error(hd):
    (message,) = [m for m, d in STATUS.errors.items() if "无效或不存在的用户密钥" in d]
    for path in SUBMITS:
        assert hd(path, {**ENDPOINTS[path].example_data, "user_key": "nobody"}) == {
            "err_code": 1,
            "err_msg": message,
        }
    assert hd.status("anything", key="nobody") == {"err_code": 1, "err_msg": message}


def test_unknown_task_is_the_documented_error(hd):
    (message,) = [m for m, d in STATUS.errors.items() if "任务未找到" in d]
    assert hd.status("no-such-task") == {"err_code": 1, "err_msg": message}


def test_empty_account_is_the_documented_balance_error(hd, mock_upstream):
    (message,) = [m for m, d in ENDPOINTS["/api/submit_task"].errors.items() if d == "账户余额不足"]
    mock_upstream.set_account("default", hd_remaining_count=0, hd_remaining_money=0)
    for path in SUBMITS:
        assert hd(path) == {"err_code": 1, "err_msg": message}
    assert mock_upstream.count(paid=True) == 0


@pytest.mark.parametrize("path", [p for p in SUBMITS if any("16MB" in m for m in ENDPOINTS[p].errors)])
def test_files_over_the_documented_size_are_refused(hd, path):
    (message,) = [m for m in ENDPOINTS[path].errors if "16MB" in m]
    limit = int(re.search(r"(\d+)MB", message)[1]) * 1024 * 1024
    assert hd(path, content=b"\0" * (limit + 1)) == {"err_code": 1, "err_msg": message}


def test_the_submit_answer_carries_the_balance_left(hd, mock_upstream):
    answer = hd("/api/submit_face_enhance_task")
    after = mock_upstream.account()
    assert (answer["remaining_count"], answer["remaining_money"]) == (
        after["hd_remaining_count"],
        after["hd_remaining_money"],
    )
