"""Unit tests of the task/pic client against respx routes (no sockets).

The documents (shared/seeds 000-002) fix the request shape and the success answer; the error
answers, the status path and the unknown states are our documented guesses, tested as such.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st
from picflow.core.catalogue import (
    SPECS,
    CheckedParams,
    Provider,
    ResultKind,
    TaskState,
    get_operation,
    validate_params,
)
from picflow.core.errors import (
    AuthError,
    InvalidRequestError,
    OutcomeUnknownError,
    ParamValidationError,
    PicflowError,
    QuotaExhaustedError,
    RateLimitedError,
    ResultUnavailableError,
    TransientError,
    UpstreamTaskFailedError,
)
from picflow.core.params import SegmentationParams
from picflow.core.tasks import TaskStatus
from picflow.net.http import RetryPolicy, build_client
from picflow.providers.base import ImageInput, Secret
from picflow.providers.taskpic import TaskPicClient, expected_results

FAILED_STATES = SPECS[Provider.TASKPIC].states.failed

BASE = "https://taskpic.test"
TOKEN = "sk-unit-test-TOKEN-0123456789"
TASK_ID = "3b950563-e53f-4036-a581-5ac04d0829b3"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
IMAGE_URL = f"https://oss.test/tasks/output/segmentation/{TASK_ID}-image.png"
MASK_URL = f"https://oss.test/tasks/output/segmentation/{TASK_ID}-mask.png"

# The documents' 200 answer (identical in 000, 001 and 002 apart from the URL and size).
DOC_DATA: dict[str, Any] = {
    "completed_at": 1742670627,
    "created_at": 1742670626,
    "download_time": 488,
    "err_info": "",
    "foreground_rect": {"x": 133, "y": 110, "width": 604, "height": 952},
    "image": IMAGE_URL,
    "image_height": 1152,
    "image_width": 864,
    "output_type": 2,
    "processed_at": 1742670626,
    "progress": 100,
    "result_type": "object",
    "return_type": 1,
    "state": 1,
    "state_detail": "Complete",
    "task_id": TASK_ID,
    "time_elapsed": 384.54998779296875,
    "type": "auto",
}


# --- helpers ------------------------------------------------------------------------------


def make_client(router: respx.MockRouter, sleeps: list[float] | None = None) -> TaskPicClient:
    http = build_client(BASE, transport=httpx.MockTransport(router.handler))
    recorded = sleeps if sleeps is not None else []
    return TaskPicClient(http, Secret(TOKEN), retry=RetryPolicy(sleep=recorded.append))


def new_router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


def ok(data: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"status": 200, "data": data}, headers=headers)


def task(state: int, **extra: Any) -> dict[str, Any]:
    return {"task_id": TASK_ID, "state": state, "progress": 0, "err_info": "", **extra}


@dataclass(frozen=True)
class Part:
    filename: str | None
    content_type: str | None
    body: bytes


def parts(request: httpx.Request) -> dict[str, Part]:
    """The multipart parts of ``request`` by field name (parsed with the stdlib, not httpx)."""
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    message = BytesParser(policy=policy.HTTP).parsebytes(raw)
    found: dict[str, Part] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        assert name not in found, f"field {name} sent twice"
        body = part.get_payload(decode=True)
        assert isinstance(body, bytes)
        found[name] = Part(part.get_filename(), part["content-type"], body)
    return found


def text_fields(found: dict[str, Part]) -> dict[str, str]:
    return {name: p.body.decode() for name, p in found.items() if p.filename is None}


@pytest.fixture
def router() -> respx.MockRouter:
    return new_router()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(router: respx.MockRouter, sleeps: list[float]) -> TaskPicClient:
    return make_client(router, sleeps)


def png_file() -> ImageInput:
    return ImageInput(file=io.BytesIO(PNG), filename="cat.png", content_type="image/png")


def url_image() -> ImageInput:
    return ImageInput(url="https://example.com/foreground.png")


# --- request shape ------------------------------------------------------------------------


def test_submit_segmentation_file_sends_multipart_with_file_part_and_defaults(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=ok(task(0)))

    client.submit("segmentation", {}, png_file())

    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE}/task/pic/segmentation"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    found = parts(request)
    assert found["image_file"] == Part("cat.png", "image/png", PNG)
    # Documented defaults are sent explicitly (what we validated is what runs); None is omitted.
    assert text_fields(found) == {"output_type": "2", "crop": "0", "format": "png", "sync": "0"}
    for part in text_fields(found):
        assert found[part].content_type is None


def test_submit_segmentation_all_params_sent_as_form_strings(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=ok(task(0)))

    client.submit(
        "segmentation",
        {"type": "person", "output_type": 1, "crop": 1, "format": "jpg", "bg_color": "ffffff"},
        png_file(),
        sync=True,
        callback_url="https://hooks.test/cb?job=1",
    )

    assert text_fields(parts(route.calls.last.request)) == {
        "type": "person",
        "output_type": "1",
        "crop": "1",
        "format": "jpg",
        "bg_color": "ffffff",
        "sync": "1",
        "callback_url": "https://hooks.test/cb?job=1",
    }


def test_submit_background_url_sends_image_url_as_plain_field_and_batch_size(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/background").mock(return_value=ok(task(0)))

    client.submit("background", {"prompt": "a beach at dusk"}, url_image(), sync=True)

    request = route.calls.last.request
    assert request.url.path == "/task/pic/background"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    found = parts(request)
    assert "image_file" not in found
    assert found["image_url"] == Part(None, None, b"https://example.com/foreground.png")
    assert text_fields(found) == {
        "image_url": "https://example.com/foreground.png",
        "batch_size": "2",
        "prompt": "a beach at dusk",
        "sync": "1",
    }


def test_submit_idphoto_sends_size_format_bg_color_and_callback(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/idphoto").mock(return_value=ok(task(0)))

    client.submit(
        "idphoto",
        {"size": "300x400", "format": "jpg", "bg_color": "FFFFFF"},
        png_file(),
        callback_url="https://hooks.test/cb",
    )

    found = parts(route.calls.last.request)
    assert found["image_file"].filename == "cat.png"
    assert text_fields(found) == {
        "size": "300x400",
        "format": "jpg",
        "bg_color": "FFFFFF",
        "sync": "0",
        "callback_url": "https://hooks.test/cb",
    }


class RecordingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int | None] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.reads.append(size)
        return super().read(size)


def test_submit_file_is_streamed_in_chunks_not_read_whole(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    source = RecordingFile(data)
    route = router.post("/task/pic/idphoto").mock(return_value=ok(task(0)))

    client.submit(
        "idphoto",
        {"size": "300x400"},
        ImageInput(file=source, filename="p.jpg", content_type="image/jpeg"),
    )

    assert parts(route.calls.last.request)["image_file"] == Part("p.jpg", "image/jpeg", data)
    sized = [size for size in source.reads if size not in (None, -1)]
    assert len(sized) >= 4
    assert all(size is not None and 0 < size < len(data) for size in sized)
    assert None not in source.reads
    assert -1 not in source.reads


def test_submit_params_model_instance_is_sent_as_given(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=ok(task(0)))

    client.submit("segmentation", SegmentationParams(output_type=3), url_image())

    assert text_fields(parts(route.calls.last.request))["output_type"] == "3"


@pytest.mark.parametrize(
    ("operation", "raw"),
    [
        ("segmentation", {}),
        (
            "segmentation",
            {"type": "person", "output_type": "1", "crop": 1, "format": "jpg", "bg_color": "00ff00"},
        ),
        ("background", {"prompt": " a beach ", "batch_size": 3}),
        ("idphoto", {"size": "300x400", "format": "jpg", "bg_color": "FFFFFF"}),
    ],
)
def test_submit_checked_params_sent_as_the_model_they_came_from_would_be(
    client: TaskPicClient, router: respx.MockRouter, operation: str, raw: dict[str, Any]
) -> None:
    # A submit sends Validate's dump (CheckedParams) without building the model again.
    route = router.post(get_operation(operation).endpoint).mock(return_value=ok(task(0)))
    model = validate_params(operation, raw)
    dumped = json.loads(
        json.dumps(model.model_dump(mode="json", exclude_none=True))
    )  # as Step Functions passes it
    checked = CheckedParams(operation, dumped)

    client.submit(operation, model, url_image())
    client.submit(operation, checked, url_image())

    first, second = (text_fields(parts(call.request)) for call in route.calls)
    assert first == second


def test_submit_checked_params_of_another_operation_refused(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError) as caught:
        client.submit("background", CheckedParams("segmentation", {"output_type": 2}), url_image())

    assert caught.value.field == "params"
    assert route.call_count == 0


# --- validation before any network call ----------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "field"),
    [
        ("redraw", {}, "operation"),
        ("replace_background", {"prompt": "x"}, "operation"),
        ("no_such_op", {}, "operation"),
        ("background", {"prompt": "x", "batch_size": 5}, "batch_size"),
        ("background", {"batch_size": 2}, "prompt"),
        ("segmentation", {"bg_color": "ffffff"}, "bg_color"),
        ("segmentation", {"output_type": 4}, "output_type"),
        ("segmentation", {"sync": 1}, "sync"),
        ("idphoto", {"size": "99x400"}, "size"),
        ("idphoto", {}, "size"),
    ],
)
def test_submit_invalid_request_raises_param_validation_and_sends_nothing(
    client: TaskPicClient, router: respx.MockRouter, operation: str, params: dict[str, Any], field: str
) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError) as caught:
        client.submit(operation, params, url_image())

    assert caught.value.field == field
    assert route.call_count == 0


def test_submit_params_model_of_another_operation_refused(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError) as caught:
        client.submit("background", SegmentationParams(), url_image())

    assert caught.value.field == "params"
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("image", "callback_url", "field"),
    [
        (ImageInput(url="ftp://example.com/a.png"), None, "image_url"),
        (ImageInput(url="file:///etc/passwd"), None, "image_url"),
        (ImageInput(url="https://example.com/a.png"), "javascript:alert(1)", "callback_url"),
    ],
)
def test_submit_non_http_url_refused_before_network(
    client: TaskPicClient, router: respx.MockRouter, image: ImageInput, callback_url: str | None, field: str
) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError) as caught:
        client.submit("segmentation", {}, image, callback_url=callback_url)

    assert caught.value.field == field
    assert route.call_count == 0


def test_submit_file_over_15_mb_refused_before_network(
    client: TaskPicClient, router: respx.MockRouter, tmp_path: Any
) -> None:
    route = router.route().mock(return_value=ok(task(0)))
    big = tmp_path / "big.png"
    with big.open("wb") as out:
        out.truncate(15 * 1024 * 1024 + 1)  # sparse: costs no memory

    with big.open("rb") as source, pytest.raises(ParamValidationError) as caught:
        client.submit("segmentation", {}, ImageInput(file=source))

    assert caught.value.field == "image_file"
    assert route.call_count == 0


def test_submit_empty_file_refused_before_network(client: TaskPicClient, router: respx.MockRouter) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError) as caught:
        client.submit("segmentation", {}, ImageInput(file=io.BytesIO(b"")))

    assert caught.value.field == "image_file"
    assert route.call_count == 0


class Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


def test_submit_unseekable_file_is_sent_unmeasured(client: TaskPicClient, router: respx.MockRouter) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=ok(task(0)))

    client.submit(
        "segmentation", {}, ImageInput(file=Unseekable(PNG), filename="a.png", content_type="image/png")
    )

    assert parts(route.calls.last.request)["image_file"].body == PNG


def test_submit_file_of_exactly_15_mb_is_sent(
    client: TaskPicClient, router: respx.MockRouter, tmp_path: Any
) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=ok(task(0)))
    edge = tmp_path / "edge.png"
    with edge.open("wb") as out:
        out.truncate(15 * 1024 * 1024)

    with edge.open("rb") as source:
        client.submit("segmentation", {}, ImageInput(file=source))

    assert route.call_count == 1


# --- hypothesis: validation boundaries (just inside / just outside each range) ---------------


def _sent(operation: str, params: dict[str, Any]) -> bool:
    """True if the client sent the request, False if it refused it before the network."""
    router = new_router()
    route = router.route().mock(return_value=ok(task(0)))
    try:
        make_client(router).submit(operation, params, url_image())
    except ParamValidationError:
        assert route.call_count == 0
        return False
    assert route.call_count == 1
    return True


@given(st.integers(min_value=-2, max_value=7))
def test_submit_background_batch_size_boundary_1_to_4(batch_size: int) -> None:
    assert _sent("background", {"prompt": "sea", "batch_size": batch_size}) == (1 <= batch_size <= 4)


@given(st.integers(min_value=1018, max_value=1030))
def test_submit_background_prompt_boundary_1024_chars(length: int) -> None:
    assert _sent("background", {"prompt": "好" * length}) == (length <= 1024)


def test_submit_background_empty_prompt_refused() -> None:
    assert _sent("background", {"prompt": ""}) is False


_SIDES = st.sampled_from([98, 99, 100, 101, 1999, 2000, 2001, 2002])


@given(_SIDES, _SIDES)
def test_submit_idphoto_size_boundary_each_side_100_to_2000(width: int, height: int) -> None:
    expected = 100 <= width <= 2000 and 100 <= height <= 2000
    assert _sent("idphoto", {"size": f"{width}x{height}"}) == expected


@given(st.text(alphabet="0123456789abcdefABCDEFgG#", min_size=5, max_size=7))
def test_submit_idphoto_bg_color_must_be_six_hex_digits(color: str) -> None:
    expected = len(color) == 6 and all(c in "0123456789abcdefABCDEF" for c in color)
    assert _sent("idphoto", {"size": "300x400", "format": "jpg", "bg_color": color}) == expected


@given(st.integers(min_value=-1, max_value=5))
def test_submit_segmentation_output_type_boundary_1_to_3(output_type: int) -> None:
    assert _sent("segmentation", {"output_type": output_type}) == (1 <= output_type <= 3)


# --- documented answers -------------------------------------------------------------------


def test_submit_sync_documented_answer_returns_done_status_with_meta(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(return_value=ok(DOC_DATA, **{"X-Request-Id": "req-1"}))

    submission = client.submit("segmentation", {}, url_image(), sync=True)

    assert submission.task_id == TASK_ID
    assert submission.request_id == "req-1"
    status = submission.status
    assert status is not None
    assert status.state is TaskState.DONE
    assert status.raw_state == 1
    assert status.progress == 100
    assert status.detail == "Complete"
    assert [(r.kind, r.url) for r in status.results] == [(ResultKind.IMAGE, IMAGE_URL)]
    assert status.meta == {
        "foreground_rect": {"x": 133, "y": 110, "width": 604, "height": 952},
        "image_width": 864,
        "image_height": 1152,
        "created_at": 1742670626,
        "processed_at": 1742670626,
        "completed_at": 1742670627,
        "time_elapsed": 384.54998779296875,
        "download_time": 488,
        "result_type": "object",
        "return_type": 1,
        "output_type": 2,
        "type": "auto",
    }
    status.raise_for_failure()  # done: nothing to raise


def test_submit_segmentation_image_and_mask_returns_both_refs(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(
        return_value=ok({**DOC_DATA, "output_type": 1, "mask": MASK_URL})
    )

    status = client.submit("segmentation", {"output_type": 1}, url_image(), sync=True).status

    assert status is not None
    assert [(r.kind, r.url) for r in status.results] == [
        (ResultKind.IMAGE, IMAGE_URL),
        (ResultKind.MASK, MASK_URL),
    ]


def test_submit_segmentation_mask_only_returns_mask_ref(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    data = {k: v for k, v in DOC_DATA.items() if k != "image"} | {"output_type": 3, "mask": MASK_URL}
    router.post("/task/pic/segmentation").mock(return_value=ok(data))

    status = client.submit("segmentation", {"output_type": 3}, url_image(), sync=True).status

    assert status is not None
    assert [(r.kind, r.url) for r in status.results] == [(ResultKind.MASK, MASK_URL)]


def test_submit_background_ignores_an_undocumented_images_list(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    # Document 000's answer has one `image`; an `images` list is no field of it.
    urls = [f"https://oss.test/bg/{i}.png" for i in range(4)]
    router.post("/task/pic/background").mock(return_value=ok({**DOC_DATA, "images": urls}))

    status = client.submit("background", {"prompt": "sea", "batch_size": 4}, url_image(), sync=True).status

    assert status is not None
    assert [(r.kind, r.url, r.index) for r in status.results] == [(ResultKind.IMAGES, IMAGE_URL, 0)]


def test_submit_background_single_image_returns_images_index_0(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/background").mock(return_value=ok(DOC_DATA))

    status = client.submit("background", {"prompt": "sea"}, url_image(), sync=True).status

    assert status is not None
    assert [(r.kind, r.url, r.index) for r in status.results] == [(ResultKind.IMAGES, IMAGE_URL, 0)]


def test_submit_async_returns_task_id_and_pending_status(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/idphoto").mock(return_value=ok(task(0)))

    submission = client.submit("idphoto", {"size": "300x400"}, url_image())

    assert submission.task_id == TASK_ID
    assert submission.status is not None
    assert submission.status.state is TaskState.PENDING
    assert submission.status.results == ()


def test_submit_answer_already_failed_returns_failed_status_and_raise_for_failure_raises(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(
        return_value=ok(task(-7, state_detail="Failed", err_info="cannot decode"))
    )

    status = client.submit("segmentation", {}, url_image(), sync=True).status

    assert status is not None
    assert status.state is TaskState.FAILED
    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()
    assert caught.value.code == -7
    assert caught.value.provider == "taskpic"
    assert "invalid source image" in caught.value.message
    assert "cannot decode" in caught.value.message


def test_submit_done_without_result_url_raises_result_unavailable(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(return_value=ok({**DOC_DATA, "image": ""}))

    with pytest.raises(ResultUnavailableError):
        client.submit("segmentation", {}, url_image(), sync=True)


# --- status -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [0, 2, 3, 4])
def test_status_documented_pending_states_are_pending(
    client: TaskPicClient, router: respx.MockRouter, state: int
) -> None:
    route = router.get(f"/task/{TASK_ID}").mock(return_value=ok(task(state, progress=40)))

    status = client.status(TASK_ID)

    request = route.calls.last.request
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.content == b""
    assert (status.state, status.raw_state, status.progress) == (TaskState.PENDING, state, 40)
    status.raise_for_failure()


def test_status_done_returns_results(client: TaskPicClient, router: respx.MockRouter) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=ok(DOC_DATA))

    status = client.status(TASK_ID)

    assert status.state is TaskState.DONE
    assert [r.kind for r in status.results] == [ResultKind.IMAGE]


def test_status_background_operation_names_single_image_as_images(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=ok(DOC_DATA))

    status = client.status(TASK_ID, operation="background")

    assert [r.kind for r in status.results] == [ResultKind.IMAGES]


@pytest.mark.parametrize(("state", "meaning"), sorted(FAILED_STATES.items()))
def test_status_documented_failed_states_are_failed_with_code_and_meaning(
    client: TaskPicClient, router: respx.MockRouter, state: int, meaning: str
) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=ok(task(state, state_detail="Failed", err_info="why")))

    status = client.status(TASK_ID)

    assert status.state is TaskState.FAILED
    assert status.error_code == state
    assert status.error_message == f"{meaning}; Failed; why"
    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()
    assert caught.value.code == state


def test_status_failed_state_table_matches_the_documents() -> None:
    assert set(FAILED_STATES) == {-1, -2, -3, -5, -7, -8}


@pytest.mark.parametrize(
    ("state", "expected"),
    [(-4, TaskState.FAILED), (-99, TaskState.FAILED), (5, TaskState.PENDING), (9, TaskState.PENDING)],
)
def test_status_undocumented_state_negative_fails_else_pending(
    client: TaskPicClient, router: respx.MockRouter, state: int, expected: TaskState
) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=ok(task(state)))

    status = client.status(TASK_ID)

    assert status.state is expected
    if expected is TaskState.FAILED:
        assert status.error_message == "unknown failure state"


def test_status_path_is_one_class_attribute(router: respx.MockRouter) -> None:
    class V2(TaskPicClient):
        STATUS_PATH = "/v2/tasks/{task_id}/status"

    route = router.get(f"/v2/tasks/{TASK_ID}/status").mock(return_value=ok(task(0)))
    http = build_client(BASE, transport=httpx.MockTransport(router.handler))

    V2(http, Secret(TOKEN)).status(TASK_ID)

    assert route.call_count == 1


@pytest.mark.parametrize("task_id", ["", "../admin", "a/b", "id?x=1", "a b"])
def test_status_unsafe_task_id_refused_before_network(
    client: TaskPicClient, router: respx.MockRouter, task_id: str
) -> None:
    route = router.route().mock(return_value=ok(task(0)))

    with pytest.raises(ParamValidationError):
        client.status(task_id)

    assert route.call_count == 0


def test_status_answer_without_task_id_uses_the_requested_one(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=ok({"state": 3}))

    assert client.status(TASK_ID).task_id == TASK_ID


# --- callback -----------------------------------------------------------------------------


def test_parse_callback_bytes_and_mapping_equal_a_poll_of_the_same_json(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    body = {"status": 200, "data": DOC_DATA}
    router.get(f"/task/{TASK_ID}").mock(return_value=httpx.Response(200, json=body))

    polled = client.status(TASK_ID)

    # A classmethod: the callback handler needs no client or token to read a callback.
    assert TaskPicClient.parse_callback(json.dumps(body).encode()) == polled
    assert client.parse_callback(body) == polled


def test_parse_callback_failed_task_returns_failed_status(client: TaskPicClient) -> None:
    status = client.parse_callback({"status": 200, "data": task(-3, err_info="404 on source")})

    assert (status.state, status.error_code) == (TaskState.FAILED, -3)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"status": 200}', b'{"status": 200, "data": {"task_id": "x"}}', b"{}"],
)
def test_parse_callback_malformed_body_raises_invalid_request(client: TaskPicClient, body: bytes) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        client.parse_callback(body)

    assert not isinstance(caught.value, ParamValidationError)


# --- error mapping ------------------------------------------------------------------------

_SUBMIT_CODES = [
    (400, InvalidRequestError),
    (401, AuthError),
    (402, QuotaExhaustedError),
    (403, AuthError),
    (404, InvalidRequestError),
    (413, InvalidRequestError),
    (418, InvalidRequestError),
    (429, RateLimitedError),
    (500, TransientError),
    (503, TransientError),
]


@pytest.mark.parametrize("http_status_matches", [False, True], ids=["http200", "matching-http"])
@pytest.mark.parametrize(("code", "expected"), _SUBMIT_CODES)
def test_submit_error_body_maps_code_to_error_class(
    client: TaskPicClient,
    router: respx.MockRouter,
    code: int,
    expected: type[PicflowError],
    http_status_matches: bool,
) -> None:
    http_status = code if http_status_matches else 200
    route = router.post("/task/pic/segmentation").mock(
        return_value=httpx.Response(
            http_status, json={"status": code, "message": "provider says no"}, headers={"X-Request-Id": "r-9"}
        )
    )

    with pytest.raises(PicflowError) as caught:
        client.submit("segmentation", {}, url_image())

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.http_status == http_status
    assert caught.value.request_id == "r-9"
    assert "provider says no" in caught.value.message
    assert route.call_count == 1  # a paid submit is never retried


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (400, InvalidRequestError),
        (401, AuthError),
        (402, QuotaExhaustedError),
        (403, AuthError),
        (404, UpstreamTaskFailedError),
        (429, RateLimitedError),
        (500, TransientError),
    ],
)
def test_status_error_body_with_http_200_maps_code_to_error_class(
    client: TaskPicClient, router: respx.MockRouter, code: int, expected: type[PicflowError]
) -> None:
    router.get(f"/task/{TASK_ID}").mock(
        return_value=httpx.Response(200, json={"status": code, "message": "nope"})
    )

    with pytest.raises(PicflowError) as caught:
        client.status(TASK_ID)

    assert type(caught.value) is expected
    assert caught.value.code == code


def test_status_unknown_task_http_404_raises_upstream_task_failed(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.get(f"/task/{TASK_ID}").mock(
        return_value=httpx.Response(404, json={"status": 404, "message": "task not found"})
    )

    with pytest.raises(UpstreamTaskFailedError) as caught:
        client.status(TASK_ID)

    assert (caught.value.code, caught.value.http_status) == (404, 404)


def test_submit_429_returns_rate_limited_with_retry_after_and_no_retry(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.post("/task/pic/background").mock(
        return_value=httpx.Response(
            429, json={"status": 429, "message": "slow down"}, headers={"Retry-After": "7"}
        )
    )

    with pytest.raises(RateLimitedError) as caught:
        client.submit("background", {"prompt": "sea"}, url_image())

    assert caught.value.retry_after == 7.0
    assert route.call_count == 1
    assert sleeps == []


def test_status_429_waits_retry_after_then_succeeds(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.get(f"/task/{TASK_ID}").mock(
        side_effect=[
            httpx.Response(429, json={"status": 429, "message": "slow"}, headers={"Retry-After": "2"}),
            ok(task(4)),
        ]
    )

    status = client.status(TASK_ID)

    assert status.state is TaskState.PENDING
    assert route.call_count == 2
    assert sleeps == [2.0]


def test_status_429_past_budget_raises_rate_limited_with_retry_after(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    router.get(f"/task/{TASK_ID}").mock(
        return_value=httpx.Response(429, text="busy", headers={"Retry-After": "3"})
    )

    with pytest.raises(RateLimitedError) as caught:
        client.status(TASK_ID)

    assert caught.value.retry_after == 3.0
    assert sleeps == [3.0]  # the second wait would exceed the 5 s budget


def test_status_5xx_is_retried_then_transient(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.get(f"/task/{TASK_ID}").mock(return_value=httpx.Response(503, text="down"))

    with pytest.raises(TransientError) as caught:
        client.status(TASK_ID)

    assert caught.value.http_status == 503
    assert route.call_count == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("http_status", "expected"),
    [(502, OutcomeUnknownError), (504, OutcomeUnknownError), (500, TransientError), (503, TransientError)],
)
def test_submit_gateway_5xx_without_provider_body_maps_by_whether_answer_was_lost(
    client: TaskPicClient, router: respx.MockRouter, http_status: int, expected: type[PicflowError]
) -> None:
    route = router.post("/task/pic/idphoto").mock(
        return_value=httpx.Response(http_status, html="<h1>Bad Gateway</h1>")
    )

    with pytest.raises(PicflowError) as caught:
        client.submit("idphoto", {"size": "300x400"}, url_image())

    assert type(caught.value) is expected
    assert caught.value.http_status == http_status
    assert route.call_count == 1


def test_submit_connect_error_is_retried_because_nothing_was_sent(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.post("/task/pic/segmentation").mock(
        side_effect=[httpx.ConnectError("refused"), ok(task(0))]
    )

    submission = client.submit("segmentation", {}, png_file())

    assert submission.task_id == TASK_ID
    assert route.call_count == 2
    assert parts(route.calls.last.request)["image_file"].body == PNG  # file re-sent from the start
    assert len(sleeps) == 1


def test_submit_connect_error_every_time_raises_transient(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(TransientError):
        client.submit("segmentation", {}, url_image())


def test_submit_read_timeout_raises_outcome_unknown_without_retry(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.post("/task/pic/background").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(OutcomeUnknownError):
        client.submit("background", {"prompt": "sea"}, url_image(), sync=True)

    assert route.call_count == 1


def test_status_read_timeout_is_retried_then_succeeds(
    client: TaskPicClient, router: respx.MockRouter, sleeps: list[float]
) -> None:
    route = router.get(f"/task/{TASK_ID}").mock(side_effect=[httpx.ReadTimeout("slow"), ok(DOC_DATA)])

    assert client.status(TASK_ID).state is TaskState.DONE
    assert route.call_count == 2
    assert len(sleeps) == 1


def test_status_read_timeout_every_time_raises_transient(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    route = router.get(f"/task/{TASK_ID}").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(TransientError):
        client.status(TASK_ID)

    assert route.call_count == 3


_MALFORMED = [
    httpx.Response(200, text="{not json", headers={"content-type": "application/json"}),
    httpx.Response(200, html="<html>maintenance</html>"),
    httpx.Response(
        200, text=json.dumps({"status": 200, "data": DOC_DATA}), headers={"content-type": "text/plain"}
    ),
    httpx.Response(200, json=[1, 2]),
    httpx.Response(200, json={"status": 200}),
    httpx.Response(200, json={"status": 200, "data": {"task_id": TASK_ID}}),
    httpx.Response(200, json={"status": 200, "data": {"task_id": TASK_ID, "state": "done"}}),
    httpx.Response(200, json={"data": DOC_DATA}),
]
_MALFORMED_IDS = [
    "bad-json",
    "html",
    "json-as-text-plain",
    "array",
    "no-data",
    "no-state",
    "state-not-int",
    "no-status",
]


@pytest.mark.parametrize("answer", _MALFORMED, ids=_MALFORMED_IDS)
def test_submit_malformed_answer_raises_outcome_unknown(
    client: TaskPicClient, router: respx.MockRouter, answer: httpx.Response
) -> None:
    route = router.post("/task/pic/segmentation").mock(return_value=answer)

    with pytest.raises(OutcomeUnknownError):
        client.submit("segmentation", {}, url_image())

    assert route.call_count == 1


@pytest.mark.parametrize("answer", _MALFORMED, ids=_MALFORMED_IDS)
def test_status_malformed_answer_raises_transient(
    client: TaskPicClient, router: respx.MockRouter, answer: httpx.Response
) -> None:
    router.get(f"/task/{TASK_ID}").mock(return_value=answer)

    with pytest.raises(TransientError):
        client.status(TASK_ID)


def test_status_json_content_type_with_charset_is_accepted(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.get(f"/task/{TASK_ID}").mock(
        return_value=httpx.Response(
            200,
            content=json.dumps({"status": 200, "data": task(2)}).encode(),
            headers={"content-type": "application/json; charset=utf-8"},
        )
    )

    assert client.status(TASK_ID).raw_state == 2


# --- secrets ------------------------------------------------------------------------------


def test_token_never_in_reprs_or_error_text_even_when_provider_echoes_it(
    client: TaskPicClient, router: respx.MockRouter
) -> None:
    router.post("/task/pic/segmentation").mock(
        return_value=httpx.Response(401, json={"status": 401, "message": f"invalid token {TOKEN}"})
    )

    with pytest.raises(AuthError) as caught:
        client.submit("segmentation", {}, url_image())

    rendered = [
        repr(client),
        str(client),
        str(caught.value),
        repr(caught.value),
        json.dumps(caught.value.to_dict()),
    ]
    assert all(TOKEN not in text for text in rendered)
    assert "invalid token ***" in caught.value.message


def test_token_never_in_submission_or_status_repr(client: TaskPicClient, router: respx.MockRouter) -> None:
    router.post("/task/pic/segmentation").mock(return_value=ok(DOC_DATA))

    submission = client.submit("segmentation", {}, url_image(), sync=True)

    assert TOKEN not in repr(submission)
    assert TOKEN not in repr(vars(client))


# --- expected result kinds and the generic failure helper ----------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "kinds"),
    [
        ("segmentation", {"output_type": 1}, {ResultKind.IMAGE, ResultKind.MASK}),
        ("segmentation", {}, {ResultKind.IMAGE}),
        ("segmentation", {"output_type": 3}, {ResultKind.MASK}),
        ("background", {"prompt": "sea"}, {ResultKind.IMAGES}),
        ("idphoto", {"size": "300x400"}, {ResultKind.IMAGE}),
    ],
)
def test_expected_results_by_operation_and_output_type(
    operation: str, params: dict[str, Any], kinds: set[ResultKind]
) -> None:
    op = get_operation(operation)

    assert expected_results(operation, op.params.model_validate(params)) == kinds


@pytest.mark.parametrize(
    ("message", "detail", "expected"),
    [("boom", "Failed", "boom"), (None, "Failed", "Failed"), (None, None, "upstream task failed")],
)
def test_raise_for_failure_message_falls_back_to_detail_then_generic_text(
    message: str | None, detail: str | None, expected: str
) -> None:
    status = TaskStatus(
        provider=Provider.TASKPIC,
        task_id="t",
        state=TaskState.FAILED,
        error_code=-1,
        error_message=message,
        detail=detail,
    )

    with pytest.raises(UpstreamTaskFailedError) as caught:
        status.raise_for_failure()

    assert (caught.value.message, caught.value.code, caught.value.provider) == (expected, -1, "taskpic")
