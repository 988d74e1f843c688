"""Contract tests: the task/pic client against mock_upstream over loopback.

Every operation, sync and async, polled to completion and reported by callback; every error
the mock produces, mapped with the provider's code and text kept; every fault on the submit
(which costs money) and on the status read (which is retried). The invariant running through
the fault tests: the journal never shows two paid submits for one client call, and an error
the workflow retries (``retryable``) never follows a charged submit.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from contract_support import (
    fetch_image,
    sample,
    sample_size,
    stored,
)
from picflow.core.catalogue import Provider, ResultKind, TaskState
from picflow.core.errors import (
    AuthError,
    InvalidRequestError,
    ParamValidationError,
    PicflowError,
    QuotaExhaustedError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.tasks import Submission, TaskStatus
from picflow.net.http import RetryPolicy
from picflow.providers.base import ImageInput, Secret
from picflow.providers.taskpic import TaskPicClient

from mock_upstream import errors
from mock_upstream.testing import MockUpstream

pytestmark = pytest.mark.integration

SUBMIT = "/task/pic/segmentation"
POLL = "/task/{task_id}"
FOREGROUND = "https://example.com/foreground.png"


@pytest.fixture
def taskpic(http: httpx.Client, retry: RetryPolicy) -> TaskPicClient:
    return TaskPicClient(http, Secret("sk-xxxx"), retry=retry)


def upload(name: str = "foreground.png") -> ImageInput:
    return ImageInput(file=sample(name), filename=name, content_type="image/png")


def cutout(client: TaskPicClient, *, sync: bool = True, **params: Any) -> Submission:
    return client.submit("segmentation", {"output_type": 2, **params}, upload(), sync=sync)


def urls(status: TaskStatus) -> dict[ResultKind, list[str]]:
    found: dict[ResultKind, list[str]] = {}
    for ref in status.results:
        assert ref.url is not None
        found.setdefault(ref.kind, []).append(ref.url)
    return found


# --- every operation ---------------------------------------------------------------------


def test_segmentation_sync_image_and_mask_download_as_pngs_of_the_source_size(taskpic, mock_upstream):
    # GIVEN the documented sync call for both outputs
    # WHEN it is submitted with sync=1
    sub = taskpic.submit("segmentation", {"output_type": 1}, upload(), sync=True)

    # THEN the answer is the finished task, with the documented fields kept
    status = sub.status
    assert sub.provider is Provider.TASKPIC
    assert status is not None
    assert sub.task_id == status.task_id == mock_upstream.journal(paid=True)[0]["task_id"]
    assert (status.state, status.raw_state, status.progress, status.detail) == (
        TaskState.DONE,
        1,
        100,
        "Complete",
    )
    assert set(status.meta) >= {
        "foreground_rect",
        "image_width",
        "image_height",
        "created_at",
        "completed_at",
    }
    # AND the cutout is a transparent PNG and the mask a PNG, both at the source size
    found = urls(status)
    assert set(found) == {ResultKind.IMAGE, ResultKind.MASK}
    image, mask = fetch_image(found[ResultKind.IMAGE][0]), fetch_image(found[ResultKind.MASK][0])
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", sample_size("foreground.png"))
    assert (mask.format, mask.size) == ("PNG", sample_size("foreground.png"))
    assert (status.meta["image_width"], status.meta["image_height"]) == image.size


def test_segmentation_crop_jpg_on_a_colour_is_cropped_to_the_subject(taskpic):
    sub = taskpic.submit(
        "segmentation",
        {"output_type": 2, "crop": 1, "format": "jpg", "bg_color": "00ff00"},
        upload(),
        sync=True,
    )

    status = sub.status
    assert status is not None
    image = fetch_image(urls(status)[ResultKind.IMAGE][0])
    rect = status.meta["foreground_rect"]
    assert image.format == "JPEG"
    assert (
        image.size
        == (rect["width"], rect["height"])
        == (status.meta["image_width"], status.meta["image_height"])
    )
    assert image.size != sample_size("foreground.png")


def test_segmentation_mask_only_returns_just_the_mask(taskpic):
    status = taskpic.submit("segmentation", {"output_type": 3}, upload(), sync=True).status

    assert status is not None
    assert [ref.kind for ref in status.results] == [ResultKind.MASK]


def test_background_from_a_url_returns_the_documented_single_image(taskpic, mock_upstream):
    # GIVEN a batch of 3: document 000's answer still carries one `image`
    sub = taskpic.submit(
        "background",
        {"prompt": "a wooden table by a window", "batch_size": 3},
        ImageInput(url=FOREGROUND),
        sync=True,
    )

    status = sub.status
    assert status is not None
    assert [(ref.kind, ref.index) for ref in status.results] == [(ResultKind.IMAGES, 0)]
    fetched = fetch_image(urls(status)[ResultKind.IMAGES][0])
    assert (fetched.format, fetched.size) == ("PNG", sample_size("foreground.png"))
    # The batch costs one credit per image ("价格按数量翻倍"), and the URL went as a multipart field.
    assert mock_upstream.account()["taskpic_balance"] == 1000 - 3
    (entry,) = mock_upstream.journal(paid=True)
    assert entry["fields"]["image_url"] == FOREGROUND
    assert entry["files"] == []


def test_idphoto_is_exactly_the_requested_size(taskpic, mock_upstream):
    status = taskpic.submit(
        "idphoto",
        {"size": "295x413", "format": "jpg", "bg_color": "ff0000"},
        upload("portrait.png"),
        sync=True,
    ).status

    assert status is not None
    (ref,) = status.results
    photo = fetch_image(ref.url or "")
    assert (ref.kind, photo.format, photo.size) == (ResultKind.IMAGE, "JPEG", (295, 413))
    (entry,) = mock_upstream.journal(paid=True)
    assert entry["files"][0]["name"] == "image_file"
    assert entry["files"][0]["size"] == len(sample("portrait.png").getvalue())


def test_invalid_params_are_refused_before_any_request(taskpic, mock_upstream):
    with pytest.raises(ParamValidationError) as caught:
        taskpic.submit("idphoto", {"size": "2001x413"}, upload(), sync=True)

    assert caught.value.field == "size"
    assert mock_upstream.count() == 0


# --- polling and callbacks ----------------------------------------------------------------


def test_async_task_polled_to_completion_goes_through_the_documented_states(taskpic, mock_upstream):
    # GIVEN a task that needs three polls before it ends
    mock_upstream.set_scenario(next=1, polls=3)
    sub = cutout(taskpic, sync=False)
    assert sub.status is not None
    assert sub.status.state is TaskState.PENDING
    assert (sub.status.raw_state, sub.status.detail) == (0, "Queued")

    # WHEN it is polled until it ends
    seen = []
    for _ in range(10):
        status = taskpic.status(sub.task_id or "", operation="segmentation")
        seen.append((status.state, status.raw_state, status.progress))
        if status.state is not TaskState.PENDING:
            break

    # THEN each intermediate state is pending with growing progress, and the fourth poll ends it
    assert seen == [
        (TaskState.PENDING, 2, 10),
        (TaskState.PENDING, 3, 20),
        (TaskState.PENDING, 4, 50),
        (TaskState.DONE, 1, 100),
    ]
    assert fetch_image(urls(status)[ResultKind.IMAGE][0]).format == "PNG"
    assert mock_upstream.count(route=POLL) == 4
    assert mock_upstream.count(paid=True) == 1


def test_timed_task_ends_when_the_mock_clock_passes_its_duration(taskpic, mock_upstream):
    # GIVEN a 30-second task, submitted async
    mock_upstream.set_scenario(next=1, seconds=30)
    sub = cutout(taskpic, sync=False)
    assert sub.status is not None
    assert sub.status.state is TaskState.PENDING

    assert taskpic.status(sub.task_id or "").state is TaskState.PENDING
    mock_upstream.advance_clock(30)
    status = taskpic.status(sub.task_id or "")

    assert status.state is TaskState.DONE
    assert status.meta["completed_at"] - status.meta["created_at"] == 30


def test_background_polled_names_its_single_image_as_a_batch_member(taskpic, mock_upstream):
    sub = taskpic.submit("background", {"prompt": "sea", "batch_size": 1}, upload(), sync=False)

    status = taskpic.status(sub.task_id or "", operation="background")

    assert status.state is TaskState.DONE
    assert [ref.kind for ref in status.results] == [ResultKind.IMAGES]


def test_callback_body_parses_to_the_same_task_a_poll_returns(taskpic, mock_upstream):
    # GIVEN an async task with a callback_url
    sub = taskpic.submit(
        "segmentation", {"output_type": 1}, upload(), callback_url=mock_upstream.sink_url("cb")
    )
    assert sub.status is not None
    assert sub.status.state is TaskState.PENDING

    # WHEN the mock delivers the callback
    mock_upstream.flush_callbacks()
    (body,) = mock_upstream.sink("cb", wait_for=1)
    from_callback = TaskPicClient.parse_callback(json.dumps(body).encode(), operation="segmentation")

    # THEN it is the finished task, equal to what a poll says
    from_poll = taskpic.status(sub.task_id or "", operation="segmentation")
    assert from_callback.state is TaskState.DONE
    assert from_callback == from_poll
    assert fetch_image(urls(from_callback)[ResultKind.MASK][0]).format == "PNG"
    assert [d["outcome"] for d in mock_upstream.callbacks()["log"]] == ["delivered"]


def test_callback_comes_only_once_a_poll_counted_task_ends(taskpic, mock_upstream):
    # GIVEN an async task with a callback that ends on its second poll
    mock_upstream.set_scenario(next=1, polls=1)
    sub = taskpic.submit("segmentation", {}, upload(), callback_url=mock_upstream.sink_url("late"))

    # WHEN callbacks are flushed before it ends, nothing is sent
    mock_upstream.flush_callbacks()
    assert mock_upstream.sink("late") == []
    assert taskpic.status(sub.task_id or "").state is TaskState.PENDING
    last = taskpic.status(sub.task_id or "")
    mock_upstream.flush_callbacks()

    # THEN the callback that follows the ending poll reports the same finished task
    (body,) = mock_upstream.sink("late", wait_for=1)
    assert last.state is TaskState.DONE
    assert TaskPicClient.parse_callback(body) == last


def test_callback_of_a_failed_task_carries_its_state(taskpic, mock_upstream):
    mock_upstream.set_scenario(next=1, outcome="failure", code=-2)
    taskpic.submit("segmentation", {}, upload(), callback_url=mock_upstream.sink_url("failed"))

    mock_upstream.flush_callbacks()
    (body,) = mock_upstream.sink("failed", wait_for=1)
    status = TaskPicClient.parse_callback(json.dumps(body).encode())

    assert (status.state, status.error_code) == (TaskState.FAILED, -2)
    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()
    assert caught.value.code == -2
    assert "result upload failed" in caught.value.message


# --- documented errors --------------------------------------------------------------------


def test_bad_token_is_an_auth_error_and_costs_nothing(http, retry, mock_upstream):
    client = TaskPicClient(http, Secret("sk-not-a-customer"), retry=retry)

    with pytest.raises(AuthError) as caught:
        cutout(client)

    assert (caught.value.code, caught.value.http_status) == (401, 401)
    assert errors.TASKPIC_BAD_TOKEN in caught.value.message  # the provider's text, kept
    assert "sk-not-a-customer" not in str(caught.value)
    assert mock_upstream.count(paid=True) == 0


def test_exhausted_balance_is_quota_exhausted(taskpic, mock_upstream):
    mock_upstream.set_account("default", taskpic_balance=0)

    with pytest.raises(QuotaExhaustedError) as caught:
        cutout(taskpic)

    assert (caught.value.code, caught.value.http_status) == (402, 402)
    assert errors.TASKPIC_NO_BALANCE in caught.value.message


def test_a_batch_costs_its_size_so_a_small_balance_refuses_it(taskpic, mock_upstream):
    mock_upstream.set_account("default", taskpic_balance=2)

    with pytest.raises(QuotaExhaustedError):
        taskpic.submit("background", {"prompt": "x", "batch_size": 3}, upload(), sync=True)
    taskpic.submit("background", {"prompt": "x", "batch_size": 2}, upload(), sync=True)

    assert mock_upstream.account()["taskpic_balance"] == 0


def test_unknown_task_fails_the_task_with_the_providers_text(taskpic):
    with pytest.raises(UpstreamTaskFailedError) as caught:
        taskpic.status("00000000-0000-4000-8000-000000000000")

    assert (caught.value.code, caught.value.http_status) == (404, 404)
    assert errors.TASKPIC_TASK_UNKNOWN in caught.value.message


def test_another_accounts_task_is_not_found(taskpic, http, retry, mock_upstream):
    mock_upstream.set_account("other", token="sk-other")
    theirs = cutout(TaskPicClient(http, Secret("sk-other"), retry=retry), sync=False)

    with pytest.raises(UpstreamTaskFailedError):
        taskpic.status(theirs.task_id or "")


def test_a_provider_bad_request_keeps_its_message(taskpic, mock_upstream):
    mock_upstream.inject_fault("provider_error", route=SUBMIT, code=400, message="size must be 100-2000")

    with pytest.raises(InvalidRequestError) as caught:
        cutout(taskpic)

    assert (caught.value.code, caught.value.http_status) == (400, 400)
    assert "size must be 100-2000" in caught.value.message


def _failing(mock_upstream: MockUpstream, code: int) -> dict[str, Any]:
    """How to make the mock fail a task with ``code``: for real where it can, else by scenario."""
    if code == -3:  # the source URL cannot be downloaded (here: a missing file on the mock)
        return {"image": ImageInput(url=mock_upstream.url("/files/none/missing.png"))}
    if code == -5:  # the source is over the limit (lowered so the sample exceeds it)
        mock_upstream.configure(taskpic_max_image_bytes=1000)
        return {"image": upload()}
    if code == -7:  # the file is not an image
        return {"image": ImageInput(file=io.BytesIO(b"not an image at all"), filename="x.png")}
    mock_upstream.set_scenario(next=1, outcome="failure", code=code)
    return {"image": upload()}


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (-1, "task failed"),
        (-2, "result upload failed"),
        (-3, "source image download failed"),
        (-5, "source image over 15 MB"),
        (-7, "invalid source image"),
        (-8, "processing timed out"),
    ],
)
def test_failed_task_state_is_reported_with_its_code(taskpic, mock_upstream, code, meaning):
    # GIVEN a task the provider accepts and then fails with ``code``
    how = _failing(mock_upstream, code)
    sub = taskpic.submit("segmentation", {}, how["image"], sync=False)

    # WHEN it is polled
    status = taskpic.status(sub.task_id or "")

    # THEN it is FAILED with the raw state and the provider's err_info kept
    assert (status.state, status.raw_state, status.error_code, status.results) == (
        TaskState.FAILED,
        code,
        code,
        (),
    )
    assert status.error_message is not None
    assert status.error_message.startswith(meaning)
    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()
    assert caught.value.code == code


# --- faults: the matrix every provider passes is in test_contract_faults.py -------------


def test_a_failed_submit_then_a_good_one_pays_once_each(taskpic, mock_upstream):
    mock_upstream.inject_fault("http_status", route=SUBMIT, status=503)

    with pytest.raises(TransientError):
        cutout(taskpic)
    cutout(taskpic)

    assert mock_upstream.count(route=SUBMIT) == 2
    assert mock_upstream.count(paid=True) == 1


# --- faults on the status read: retried within the policy -------------------------------


@pytest.fixture
def task_id(taskpic: TaskPicClient) -> str:
    return cutout(taskpic, sync=False).task_id or ""


def test_rate_limited_status_beyond_the_budget_is_not_waited_for(taskpic, mock_upstream, sleeps, task_id):
    mock_upstream.inject_fault("rate_limit", route="/task/*", method="GET", retry_after=30)

    with pytest.raises(RateLimitedError) as caught:
        taskpic.status(task_id)

    # Waiting 30 s would not fit the Lambda: the wait goes back to the workflow.
    assert caught.value.retry_after == 30.0
    assert sleeps == []


# --- result downloads through picflow.job.results --------------------------------------------


def test_collect_stores_every_result_with_the_served_checksum(taskpic, mock_upstream, collect, s3):
    status = taskpic.submit("segmentation", {"output_type": 1}, upload(), sync=True).status
    assert status is not None

    manifest = collect(status.results, "taskpic")

    outputs = {o["kind"]: o for o in manifest["outputs"]}
    assert set(outputs) == {"image", "mask"}
    served = {e["path"]: e["result_sha256"] for e in mock_upstream.journal(provider="files")}
    for ref in status.results:
        out = outputs[ref.kind.value]
        assert out["content_type"] == "image/png"
        assert (out["width"], out["height"]) == sample_size("foreground.png")
        assert out["sha256"] == served[httpx.URL(ref.url or "").path]
        assert len(stored(s3, out["key"])) == out["size"]


@pytest.mark.parametrize(
    ("kind", "params", "error", "code"),
    [
        ("http_status", {"status": 403}, ResultUnavailableError, 403),
        ("http_status", {"status": 404}, ResultUnavailableError, 404),
        ("truncated", {}, TransientError, "Truncated"),
        ("truncated_body", {}, ResultUnavailableError, "CorruptResult"),
        ("corrupt_body", {}, ResultUnavailableError, "CorruptResult"),
    ],
)
def test_damaged_result_download_maps_to_its_error(
    taskpic, mock_upstream, collect, kind, params, error, code
):
    status = cutout(taskpic).status
    assert status is not None
    mock_upstream.inject_fault(kind, route="/files/*", **params)

    with pytest.raises(PicflowError) as caught:
        collect(status.results, "taskpic")

    assert type(caught.value) is error
    assert caught.value.code == code


def test_expired_result_url_is_unavailable(taskpic, mock_upstream, collect):
    status = cutout(taskpic).status
    assert status is not None
    mock_upstream.advance_clock(3600)

    with pytest.raises(ResultUnavailableError) as caught:
        collect(status.results, "taskpic")

    assert (caught.value.code, caught.value.http_status) == (403, 403)
