"""Contract tests: the HD redraw client against mock_upstream over loopback.

All ten paid submits with their real outputs (sizes, formats, EPS, generated prompt), the
status check polled to completion with its documented 3-second cache honoured on the mock
clock, the vendor's verbatim error texts mapped to picflow's errors, and every fault on the
submit (paid: sent once) and on the status check (read: retried).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from contract_support import (
    fetch_image,
    sample,
    stored,
)
from picflow.core.catalogue import Provider, ResultKind, TaskState
from picflow.core.errors import (
    AuthError,
    InvalidRequestError,
    ParamValidationError,
    PicflowError,
    QuotaExhaustedError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import Balance, TaskStatus
from picflow.net.http import RetryPolicy
from picflow.providers.base import ImageInput, Secret
from picflow.providers.hdredraw import HdRedrawClient

from mock_upstream.testing import MockUpstream

pytestmark = pytest.mark.integration

STATUS = "/api/check_task_status"
SUBMIT = "/api/submit_task"
SIDE = 512  # mock_upstream/samples/image.png is 512x512


@pytest.fixture
def hd(http: httpx.Client, retry: RetryPolicy) -> HdRedrawClient:
    return HdRedrawClient(http, Secret("test-key"), retry=retry)


def upload(content: bytes | None = None) -> ImageInput:
    file = io.BytesIO(content) if content is not None else sample("image.png")
    return ImageInput(file=file, filename="image.png", content_type="image/png")


def redraw(client: HdRedrawClient, **params: Any) -> str:
    return client.submit("redraw", params, upload()).task_id or ""


def by_kind(status: TaskStatus) -> dict[ResultKind, list[Any]]:
    found: dict[ResultKind, list[Any]] = {}
    for ref in status.results:
        found.setdefault(ref.kind, []).append(ref)
    return found


def eps_box(url: str) -> str:
    content = httpx.get(url, timeout=10.0, trust_env=False).content
    assert content.startswith(b"%!PS-Adobe-3.0 EPSF-3.0")
    return next(line for line in content.decode().splitlines() if line.startswith("%%BoundingBox"))


# --- every operation ---------------------------------------------------------------------

OPERATIONS = [
    # (operation, params, {kind: [(width, height), ...]} of the PNG results)
    ("redraw", {"upscale": 2}, {ResultKind.IMAGE: [(1024, 1024)]}),
    ("vectorize", {"color_count": 4}, {ResultKind.IMAGE: [(SIDE, SIDE)], ResultKind.VECTOR: []}),
    ("face_enhance", {}, {ResultKind.IMAGE: [(SIDE, SIDE)]}),
    ("remove_fabric", {}, {ResultKind.IMAGE: [(SIDE, SIDE)]}),
    ("remove_diamonds", {}, {ResultKind.IMAGE: [(SIDE, SIDE)]}),
    ("remove_watermark", {}, {ResultKind.IMAGE: [(SIDE, SIDE)]}),
    ("edit_image", {"prompt": "make it blue", "model_version": "v2"}, {ResultKind.IMAGE: [(SIDE, SIDE)]}),
    (
        "seamless",
        {"fit": 0.5, "direction": 0, "expand_top": 0.1},
        {
            ResultKind.IMAGE: [(2 * SIDE, 2 * 563)],
            ResultKind.IMAGE_1X: [(SIDE, 563)],
            ResultKind.GRID: [(2 * SIDE, 2 * 563)],
        },
    ),
    (
        "extract_pattern",
        {"aspect_ratio": "4:3"},
        {ResultKind.IMAGES: [(SIDE, 384), (SIDE, 384)], ResultKind.PROMPT: []},
    ),
    ("expand_image", {"expand_left": 0.25, "expand_right": 0.25}, {ResultKind.IMAGE: [(768, SIDE)]}),
]


@pytest.mark.parametrize(("operation", "params", "expected"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_operation_submits_once_and_its_results_download_at_the_expected_size(
    hd, mock_upstream, operation, params, expected
):
    # GIVEN the sample image
    # WHEN the operation is submitted and its task read
    sub = hd.submit(operation, params, upload())
    status = hd.status(sub.task_id or "")

    # THEN the submit was paid once, from the package count, and returned the balance left
    assert sub.provider is Provider.HDREDRAW
    assert sub.balance == Balance(remaining_count=999, remaining_money=30000.0)
    (entry,) = mock_upstream.journal(paid=True)
    assert entry["task_id"] == sub.task_id
    assert entry["fields"]["user_key"] == "<redacted>"
    assert [f["name"] for f in entry["files"]] == ["input_image"]
    # AND the task is done with the results the document lists for the operation
    assert (status.state, status.raw_state, status.task_id) == (TaskState.DONE, "Completed", sub.task_id)
    assert status.balance == sub.balance
    found = by_kind(status)
    assert set(found) == set(expected)
    for kind, sizes in expected.items():
        if kind is ResultKind.VECTOR:
            (ref,) = found[kind]
            assert eps_box(ref.url) == f"%%BoundingBox: 0 0 {SIDE} {SIDE}"
        elif kind is ResultKind.PROMPT:
            (ref,) = found[kind]
            assert ref.text
            assert ref.url is None
        else:
            images = [fetch_image(ref.url) for ref in found[kind]]
            assert [(i.format, i.size) for i in images] == [("PNG", size) for size in sizes]
            assert [ref.index for ref in found[kind]] == list(range(len(sizes)))


@pytest.mark.parametrize(("direction", "grid"), [(0, (2, 2)), (1, (1, 2)), (2, (2, 1))])
def test_seamless_grid_follows_the_direction(hd, direction, grid):
    status = hd.status(hd.submit("seamless", {"direction": direction}, upload()).task_id or "")

    (ref,) = by_kind(status)[ResultKind.GRID]
    assert fetch_image(ref.url).size == (grid[0] * SIDE, grid[1] * SIDE)


def test_redraw_with_vector_and_generated_prompt_returns_all_three(hd):
    status = hd.status(redraw(hd, upscale=1.5, vector_switch=True, auto_generate_prompt=True, steps=30))

    found = by_kind(status)
    assert set(found) == {ResultKind.IMAGE, ResultKind.VECTOR, ResultKind.PROMPT}
    assert fetch_image(found[ResultKind.IMAGE][0].url).size == (768, 768)
    assert eps_box(found[ResultKind.VECTOR][0].url).startswith("%%BoundingBox: 0 0 512 512")
    assert "high quality" in found[ResultKind.PROMPT][0].text


def test_every_param_is_sent_as_the_vendors_form_expects(hd, mock_upstream):
    redraw(hd, steps=30.0, high_fidelity=True)

    (entry,) = mock_upstream.journal(paid=True)
    fields = entry["fields"]
    assert fields["steps"] == "30"
    assert (fields["high_fidelity"], fields["strong_inpaint"]) == ("true", "false")
    assert fields["sdxl_model_dropdown"] == "通用模型"


def test_money_is_spent_once_the_package_count_is_gone(hd, mock_upstream):
    mock_upstream.set_account("default", hd_remaining_count=0, hd_remaining_money=5)

    sub = hd.submit("redraw", {}, upload())

    assert sub.balance == Balance(remaining_count=0, remaining_money=2.0)


# --- polling, with the vendor's 3-second cache ------------------------------------------


def test_task_polled_every_three_seconds_runs_then_completes(hd, mock_upstream):
    # GIVEN a task that ends on its third counted status check
    assert mock_upstream.configure()["hd_status_cache_seconds"] == HdRedrawClient.STATUS_CACHE_SECONDS
    mock_upstream.set_scenario(next=1, polls=2)
    task_id = redraw(hd)

    # WHEN it is polled faster than the cache allows, then every 3 s of mock time
    first = hd.status(task_id)
    again = hd.status(task_id)
    seen = [first.raw_state, again.raw_state]
    for _ in range(5):
        mock_upstream.advance_clock(HdRedrawClient.STATUS_CACHE_SECONDS)
        status = hd.status(task_id)
        seen.append(status.raw_state)
        if status.state is not TaskState.PENDING:
            break

    # THEN the quick second read was the cached answer, and the counted reads progress to the end
    # (the running states are the mock's choice: the document names only Completed, Failed, None)
    assert seen[3] == "Completed"
    assert seen[0] == seen[1]
    assert "Completed" not in seen[:3]
    assert first.state is again.state is TaskState.PENDING
    assert first.results == ()
    assert status.state is TaskState.DONE
    checks = mock_upstream.journal(route=STATUS)
    assert [bool(e.get("cached")) for e in checks] == [False, True, False, False]
    assert mock_upstream.task(task_id)["polls"] == 3


def test_a_cached_answer_hides_the_end_until_the_cache_expires(hd, mock_upstream):
    mock_upstream.set_scenario(next=1, seconds=10)
    task_id = redraw(hd)
    assert hd.status(task_id).state is TaskState.PENDING

    mock_upstream.advance_clock(10)
    mock_upstream.configure(hd_status_cache_seconds=30)
    assert hd.status(task_id).state is TaskState.PENDING  # still the cached answer
    mock_upstream.configure(hd_status_cache_seconds=0)

    assert hd.status(task_id).state is TaskState.DONE


def test_failed_task_is_reported_failed(hd, mock_upstream):
    mock_upstream.set_scenario(next=1, outcome="failure")

    status = hd.status(redraw(hd))

    assert (status.state, status.raw_state, status.error_code, status.results) == (
        TaskState.FAILED,
        "Failed",
        "Failed",
        (),
    )
    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()
    assert caught.value.code == "Failed"


# --- documented errors, verbatim --------------------------------------------------------


@pytest.mark.parametrize("call", ["submit", "status"])
def test_unknown_user_key_is_an_auth_error(http, retry, mock_upstream, call):
    client = HdRedrawClient(http, Secret("not-a-key"), retry=retry)

    with pytest.raises(AuthError) as caught:
        client.submit("redraw", {}, upload()) if call == "submit" else client.status("abc")

    assert (caught.value.code, caught.value.message, caught.value.http_status) == (
        "AccountNotFound",
        "账户不存在",
        200,
    )
    assert mock_upstream.count(paid=True) == 0


def test_exhausted_account_is_quota_exhausted(hd, mock_upstream):
    mock_upstream.set_account("default", hd_remaining_count=0, hd_remaining_money=2)

    with pytest.raises(QuotaExhaustedError) as caught:
        redraw(hd)  # costs 3

    assert (caught.value.code, caught.value.message) == ("InsufficientBalance", "账户剩余次数不足")
    assert mock_upstream.count(paid=True) == 0


def test_file_over_the_limit_is_an_invalid_request(hd, mock_upstream):
    mock_upstream.configure(hd_max_file_bytes=1000)

    with pytest.raises(InvalidRequestError) as caught:
        redraw(hd)

    assert (caught.value.code, caught.value.message) == ("FileTooLarge", "文件大小不能超过16MB")


def test_expand_out_of_range_is_refused_locally_and_mapped_when_the_vendor_says_it(hd, mock_upstream):
    with pytest.raises(ParamValidationError):
        hd.submit("expand_image", {"expand_top": 0.31}, upload())
    assert mock_upstream.count() == 0

    text = "扩展参数错误:expand_top必须在0.0-0.3之间"
    mock_upstream.inject_fault("provider_error", route="/api/submit_expand_image_task", message=text)
    with pytest.raises(InvalidRequestError) as caught:
        hd.submit("expand_image", {"expand_top": 0.3}, upload())

    assert (caught.value.code, caught.value.message) == ("ExpandOutOfRange", text)


def test_unknown_task_fails_with_the_vendors_text(hd):
    with pytest.raises(UpstreamTaskFailedError) as caught:
        hd.status("0123456789abcdef01234567")

    assert (caught.value.code, caught.value.message) == ("TaskNotFound", "任务未找到或状态未知")


def test_image_the_vendor_cannot_read_is_a_failed_submit_and_costs_nothing(hd, mock_upstream):
    with pytest.raises(UpstreamTaskFailedError) as caught:
        hd.submit("redraw", {}, upload(b"definitely not an image"))

    assert caught.value.code == "SubmitFailed"
    assert caught.value.message.startswith("任务提交失败")
    assert mock_upstream.count(paid=True) == 0


def test_url_images_and_empty_files_are_refused_before_any_request(hd, mock_upstream):
    with pytest.raises(ParamValidationError):
        hd.submit("redraw", {}, ImageInput(url="https://example.com/image.png"))
    with pytest.raises(ParamValidationError):
        hd.submit("redraw", {}, upload(b""))

    assert mock_upstream.count() == 0


# --- results through picflow.job.results -----------------------------------------------------


def test_collect_stores_images_and_the_eps_and_keeps_the_prompt(hd, mock_upstream: MockUpstream, collect, s3):
    status = hd.status(redraw(hd, vector_switch=True, auto_generate_prompt=True))

    manifest = collect(status.results, "hdredraw")

    outputs = {o["kind"]: o for o in manifest["outputs"]}
    assert (outputs["image"]["content_type"], outputs["image"]["width"]) == ("image/png", SIDE)
    assert outputs["vector"]["content_type"] == "application/postscript"
    assert outputs["vector"]["key"].endswith(".eps")
    assert stored(s3, outputs["vector"]["key"]).startswith(b"%!PS-Adobe")
    assert manifest["texts"]["prompt"] == by_kind(status)[ResultKind.PROMPT][0].text


def test_collect_of_expired_results_is_unavailable(hd, mock_upstream, collect):
    status = hd.status(redraw(hd))
    mock_upstream.advance_clock(3600)

    with pytest.raises(PicflowError) as caught:
        collect(status.results, "hdredraw")

    assert (type(caught.value).__name__, caught.value.code) == ("ResultUnavailableError", 403)
