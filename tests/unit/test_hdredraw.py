"""HD redraw client (document 004): request shapes, answers, states, errors and faults, via respx."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from hypothesis import example, given, settings
from hypothesis import strategies as st
from picflow.core.catalogue import MB, OPERATIONS, CheckedParams, Provider, ResultKind, TaskState
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
from picflow.core.tasks import Balance, ResultRef
from picflow.net.http import RetryPolicy, build_client
from picflow.providers.base import ImageInput, Secret
from picflow.providers.hdredraw import ERROR_TABLE, STATUS_PATH, HdRedrawClient

BASE_URL = "https://hd.example.test"
USER_KEY = "uk-9f8e7d6c5b4a"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200

SUBMITTED = {"err_code": 0, "task_id": "task123", "remaining_count": 5, "remaining_money": 300}
# The two check_task_status examples of document 004, verbatim.
DONE_SINGLE = {
    "err_code": 0,
    "status": "Completed",
    "images_url": "https://api.domain.com/api/images/xxx/task123",
    "vector_url": "https://api.domain.com/api/images/xxx/task123/vector",
    "grid_url": "https://api.domain.com/api/images/xxx/task123/grid",
    "generated_prompt": "high quality, detailed, sharp, professional photography, beautiful lighting",
    "remaining_count": 5,
    "remaining_money": 300,
}
DONE_MULTI = {
    "err_code": 0,
    "status": "Completed",
    "images_url": "https://api.domain.com/api/images/xxx/task123",
    "images_urls": [
        "https://api.domain.com/api/images/xxx/task123",
        "https://api.domain.com/api/images/xxx/task123/alternative/1",
    ],
    "vector_url": "",
    "grid_url": "",
    "generated_prompt": "vibrant pattern, textile design, seamless repeat, colorful motifs",
    "remaining_count": 5,
    "remaining_money": 300,
}

# Each operation with the params of the document's example code and the form it must send.
EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "redraw": (
        {"upscale": 1.0, "s_noise": 1.003, "steps": 30},
        {
            "sdxl_model_dropdown": "通用模型",
            "style_dropdown": "通用风格",
            "upscale": "1",
            "s_noise": "1.003",
            "steps": "30",
            "high_fidelity": "false",
            "strong_inpaint": "false",
            "strong_inpaint_intensity": "0.5",
            "prompt": "",
            "neg_prompt": "",
            "vector_switch": "false",
            "color_count": "5",
            "auto_generate_prompt": "false",
        },
    ),
    "vectorize": ({"color_count": 5}, {"color_count": "5"}),
    "face_enhance": ({}, {}),
    "seamless": (
        {"fit": 0.3, "direction": 0, "expand_top": 0.2, "expand_bottom": 0.1},
        {
            "fit": "0.3",
            "direction": "0",
            "expand_top": "0.2",
            "expand_bottom": "0.1",
            "expand_left": "0",
            "expand_right": "0",
        },
    ),
    "remove_fabric": ({}, {}),
    "edit_image": (
        {"prompt": "将这张图片转换为水彩画风格", "model_version": "v2"},
        {"prompt": "将这张图片转换为水彩画风格", "model_version": "v2"},
    ),
    "extract_pattern": ({"aspect_ratio": "1:1"}, {"aspect_ratio": "1:1"}),
    "remove_diamonds": ({}, {}),
    "expand_image": (
        {"expand_top": 0.2, "expand_bottom": 0.1, "prompt": "延续原图的风格和内容"},
        {
            "expand_top": "0.2",
            "expand_bottom": "0.1",
            "expand_left": "0",
            "expand_right": "0",
            "prompt": "延续原图的风格和内容",
        },
    ),
    "remove_watermark": ({}, {}),
}
ENDPOINTS = {
    "redraw": "/api/submit_task",
    "vectorize": "/api/submit_vector_task",
    "face_enhance": "/api/submit_face_enhance_task",
    "seamless": "/api/submit_seamless_task",
    "remove_fabric": "/api/submit_remove_fabric_task",
    "edit_image": "/api/submit_edit_image_task",
    "extract_pattern": "/api/submit_extract_pattern_task",
    "remove_diamonds": "/api/submit_remove_diamonds_task",
    "expand_image": "/api/submit_expand_image_task",
    "remove_watermark": "/api/submit_remove_watermark_task",
}


class Sleeps(list[float]):
    """Records the waits a RetryPolicy asks for, instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def client(router: respx.MockRouter, sleeps: Sleeps) -> HdRedrawClient:
    retry = RetryPolicy(attempts=3, base_delay=0.1, max_delay=1.0, budget=5.0, sleep=sleeps)
    return HdRedrawClient(build_client(BASE_URL), Secret(USER_KEY), retry=retry)


def png(name: str = "test3.png") -> ImageInput:
    return ImageInput(file=io.BytesIO(PNG), filename=name, content_type="image/png")


def parts(request: httpx.Request) -> dict[str, tuple[str | None, str | None, bytes]]:
    """Multipart parts by name: (filename, content type or None, raw bytes)."""
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.read())
    out: dict[str, tuple[str | None, str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        explicit_type = part["Content-Type"]
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        out[name] = (part.get_filename(), explicit_type, payload)
    return out


def fields(request: httpx.Request) -> dict[str, str]:
    return {name: data.decode() for name, (filename, _, data) in parts(request).items() if filename is None}


def answer(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


# --- submit: request shape -----------------------------------------------------------------


@pytest.mark.parametrize("operation", sorted(EXAMPLES))
def test_submit_each_operation_posts_documented_multipart(client, router, operation):
    # GIVEN the document's example params for the operation
    params, expected = EXAMPLES[operation]
    route = router.post(ENDPOINTS[operation]).mock(return_value=answer(SUBMITTED))

    # WHEN it is submitted
    client.submit(operation, params, png())

    # THEN one multipart POST reaches the documented endpoint with every param and the image
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}{ENDPOINTS[operation]}"
    assert "authorization" not in request.headers
    assert fields(request) == {"user_key": USER_KEY, **expected}
    assert parts(request)["input_image"] == ("test3.png", "image/png", PNG)


def test_submit_endpoints_come_from_the_catalogue():
    assert {name: OPERATIONS[name].endpoint for name in ENDPOINTS} == ENDPOINTS


def test_submit_input_image_matches_documented_httpx_files_shape(client, router, tmp_path):
    # GIVEN the request the document's example builds with files={"input_image": image_file}
    path = tmp_path / "test3.png"
    path.write_bytes(PNG)
    with path.open("rb") as image_file:
        reference = httpx.Request(
            "POST",
            f"{BASE_URL}/api/submit_task",
            data={"user_key": USER_KEY},
            files={"input_image": image_file},
        )
        reference_image = parts(reference)["input_image"]
    route = router.post("/api/submit_task").mock(return_value=answer(SUBMITTED))

    # WHEN the client sends the same file
    with path.open("rb") as image_file:
        client.submit(
            "redraw", {}, ImageInput(file=image_file, filename="test3.png", content_type="image/png")
        )

    # THEN the file part is identical: name, filename, content type and bytes
    assert (
        parts(route.calls.last.request)["input_image"] == reference_image == ("test3.png", "image/png", PNG)
    )


def test_submit_params_model_instance_is_accepted(client, router):
    route = router.post("/api/submit_vector_task").mock(return_value=answer(SUBMITTED))
    params = OPERATIONS["vectorize"].params.model_validate({"color_count": 16})

    client.submit("vectorize", params, png())

    assert fields(route.calls.last.request)["color_count"] == "16"


@pytest.mark.parametrize(
    ("operation", "raw"),
    [
        ("redraw", {}),
        ("redraw", {"steps": 25, "upscale": 2, "s_noise": 1.05, "high_fidelity": "true", "prompt": " sky "}),
        ("vectorize", {"color_count": "9"}),
        ("seamless", {"fit": 0.3, "direction": "2", "expand_top": 0.1}),
        ("expand_image", {"expand_left": 0.2}),
        ("remove_fabric", {}),
    ],
)
def test_submit_checked_params_sent_as_the_model_they_came_from_would_be(client, router, operation, raw):
    # A submit sends Validate's dump (CheckedParams, through JSON as Step Functions passes it)
    # without building the model again: the same form fields, defaults included.
    route = router.post(OPERATIONS[operation].endpoint).mock(return_value=answer(SUBMITTED))
    model = OPERATIONS[operation].params.model_validate(raw)
    dumped = json.loads(json.dumps(model.model_dump(mode="json", exclude_none=True)))

    client.submit(operation, model, png())
    client.submit(operation, CheckedParams(operation, dumped), png())

    first, second = (fields(call.request) for call in route.calls)
    assert first == second


def test_submit_checked_params_of_another_operation_refused(client, router):
    route = router.route().mock(return_value=answer(SUBMITTED))

    with pytest.raises(ParamValidationError) as caught:
        client.submit("vectorize", CheckedParams("redraw", {"color_count": 5}), png())

    assert caught.value.field == "params"
    assert route.call_count == 0


def test_submit_values_form_encoded_like_httpx_but_integral_floats_without_point(client, router):
    route = router.post("/api/submit_task").mock(return_value=answer(SUBMITTED))

    client.submit(
        "redraw",
        {"steps": 30.0, "upscale": 2.5, "high_fidelity": True, "vector_switch": True, "color_count": 16},
        png(),
    )

    sent = fields(route.calls.last.request)
    assert (sent["steps"], sent["upscale"]) == ("30", "2.5")
    assert (sent["high_fidelity"], sent["vector_switch"], sent["strong_inpaint"]) == ("true", "true", "false")
    assert sent["color_count"] == "16"


def test_submit_file_streamed_in_chunks_never_read_whole(client, router):
    # GIVEN a file that records how it is read
    class Spy(io.BytesIO):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.sizes: list[int | None] = []

        def read(self, size: int | None = -1) -> bytes:
            self.sizes.append(size)
            return super().read(size)

    spy = Spy(PNG * 2000)  # ~400 KB: several chunks
    route = router.post("/api/submit_face_enhance_task").mock(return_value=answer(SUBMITTED))

    client.submit("face_enhance", {}, ImageInput(file=spy, filename="face.png", content_type="image/png"))

    # THEN every read asked for a bounded chunk, and the bytes arrived intact
    assert spy.sizes
    assert all(size is not None and 0 < size <= 64 * 1024 for size in spy.sizes)
    assert parts(route.calls.last.request)["input_image"][2] == PNG * 2000


# --- submit: refused before any network call --------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "field"),
    [
        ("redraw", {"upscale": 8.01}, "upscale"),
        ("redraw", {"s_noise": 0.99}, "s_noise"),
        ("redraw", {"steps": 41}, "steps"),
        ("redraw", {"strong_inpaint_intensity": 1.5}, "strong_inpaint_intensity"),
        ("redraw", {"color_count": 1}, "color_count"),
        ("redraw", {"prompt": "x" * 1025}, "prompt"),
        ("redraw", {"high_fidelity": "maybe"}, "high_fidelity"),
        ("vectorize", {"color_count": 17}, "color_count"),
        ("seamless", {"fit": 0.95}, "fit"),
        ("seamless", {"direction": 3}, "direction"),
        ("seamless", {"expand_left": 0.31}, "expand_left"),
        ("edit_image", {}, "prompt"),
        ("edit_image", {"prompt": "x", "model_version": "v3"}, "model_version"),
        ("extract_pattern", {"aspect_ratio": "1x1"}, "aspect_ratio"),
        ("expand_image", {"expand_right": -0.01}, "expand_right"),
        ("face_enhance", {"upscale": 2}, "upscale"),
    ],
)
def test_submit_invalid_params_raises_before_sending(client, router, operation, params, field):
    route = router.post(ENDPOINTS[operation]).mock(return_value=answer(SUBMITTED))

    with pytest.raises(ParamValidationError) as caught:
        client.submit(operation, params, png())

    assert caught.value.field == field
    assert caught.value.operation == operation
    assert route.call_count == 0


def test_submit_other_providers_params_model_is_revalidated(client, router):
    # A SeamlessParams instance handed to expand_image: `fit` is not an expand_image param.
    route = router.post("/api/submit_expand_image_task").mock(return_value=answer(SUBMITTED))
    seamless = OPERATIONS["seamless"].params.model_validate({"expand_top": 0.1})

    with pytest.raises(ParamValidationError) as caught:
        client.submit("expand_image", seamless, png())

    assert caught.value.field in {"fit", "direction"}
    assert route.call_count == 0


@pytest.mark.parametrize("operation", ["segmentation", "background", "idphoto", "replace_background"])
def test_submit_another_providers_operation_raises_param_validation(client, router, operation):
    with pytest.raises(ParamValidationError) as caught:
        client.submit(operation, {}, png())

    assert caught.value.field == "operation"
    assert len(router.calls) == 0


def test_submit_unknown_operation_raises_param_validation(client, router):
    with pytest.raises(ParamValidationError):
        client.submit("upscale_more", {}, png())
    assert len(router.calls) == 0


def test_submit_url_image_raises_param_validation(client, router):
    with pytest.raises(ParamValidationError) as caught:
        client.submit("face_enhance", {}, ImageInput(url="https://example.test/a.png"))

    assert (caught.value.field, caught.value.rule) == ("input_image", "a file, not a URL")
    assert len(router.calls) == 0


def _sized_file(tmp_path: Path, size: int) -> io.BufferedReader:
    path = tmp_path / "big.png"
    with path.open("wb") as f:
        f.truncate(size)  # sparse: no 16 MB written
    return path.open("rb")


def test_submit_file_over_16mb_raises_before_sending(client, router, tmp_path):
    route = router.post("/api/submit_remove_watermark_task").mock(return_value=answer(SUBMITTED))
    with _sized_file(tmp_path, 16 * MB + 1) as big:
        with pytest.raises(ParamValidationError) as caught:
            client.submit("remove_watermark", {}, ImageInput(file=big, filename="big.png"))
        assert big.tell() == 0  # the size came from seeking; nothing was read

    assert (caught.value.field, caught.value.rule) == ("input_image", f"at most {16 * MB} bytes")
    assert route.call_count == 0


def test_submit_file_of_exactly_16mb_is_sent(client, router, tmp_path):
    route = router.post("/api/submit_remove_watermark_task").mock(return_value=answer(SUBMITTED))
    with _sized_file(tmp_path, 16 * MB) as edge:
        client.submit("remove_watermark", {}, ImageInput(file=edge, filename="big.png"))

    assert route.call_count == 1


def test_submit_empty_file_raises_before_sending(client, router):
    with pytest.raises(ParamValidationError) as caught:
        client.submit("face_enhance", {}, ImageInput(file=io.BytesIO(b""), filename="a.png"))

    assert caught.value.rule == "not empty"
    assert len(router.calls) == 0


def test_submit_unseekable_stream_is_sent_unchecked(client, router):
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    route = router.post("/api/submit_face_enhance_task").mock(return_value=answer(SUBMITTED))

    client.submit("face_enhance", {}, ImageInput(file=Pipe(PNG), filename="p.png", content_type="image/png"))

    assert parts(route.calls.last.request)["input_image"][2] == PNG


# --- submit: answers ----------------------------------------------------------------------------


def test_submit_accepted_returns_task_id_and_balance(client, router):
    router.post("/api/submit_task").mock(return_value=answer(SUBMITTED))

    submission = client.submit("redraw", {}, png())

    assert submission.provider is Provider.HDREDRAW
    assert submission.task_id == "task123"
    assert submission.balance == Balance(remaining_count=5, remaining_money=300.0)
    assert submission.status is None


def test_submit_accepted_without_balance_has_none(client, router):
    router.post("/api/submit_task").mock(return_value=answer({"err_code": 0, "task_id": "t1"}))

    assert client.submit("redraw", {}, png()).balance is None


@pytest.mark.parametrize(
    "body", [{"err_code": 0}, {"err_code": 0, "task_id": ""}, {"err_code": 0, "task_id": None}]
)
def test_submit_accepted_without_task_id_raises_outcome_unknown(client, router, body):
    router.post("/api/submit_task").mock(return_value=answer(body))

    with pytest.raises(OutcomeUnknownError) as caught:
        client.submit("redraw", {}, png())

    assert caught.value.code == "NoTaskId"


SUBMIT_ERRORS = [
    ("账户不存在", AuthError, "AccountNotFound"),
    ("账户剩余次数不足", QuotaExhaustedError, "InsufficientBalance"),
    ("文件大小不能超过16MB", InvalidRequestError, "FileTooLarge"),
    ("扩展参数错误:expand_top必须在0.0-0.3之间", InvalidRequestError, "ExpandOutOfRange"),
    ("任务提交失败:GPU out of memory", UpstreamTaskFailedError, "SubmitFailed"),
    ("任务提交失败：队列已满", UpstreamTaskFailedError, "SubmitFailed"),
    ("服务器维护中", UpstreamTaskFailedError, "UpstreamError"),
]


@pytest.mark.parametrize(("err_msg", "kind", "code"), SUBMIT_ERRORS)
def test_submit_err_code_1_maps_message_to_error(client, router, err_msg, kind, code):
    route = router.post("/api/submit_expand_image_task").mock(
        return_value=answer({"err_code": 1, "err_msg": err_msg})
    )

    with pytest.raises(PicflowError) as caught:
        client.submit("expand_image", {"expand_top": 0.1}, png())

    error = caught.value
    assert type(error) is kind
    assert (error.code, error.message, error.provider, error.http_status) == (code, err_msg, "hdredraw", 200)
    assert route.call_count == 1  # a paid submit is never retried on an answer


def test_error_table_is_covered_by_tests():
    assert {code for _, _, code in ERROR_TABLE} <= {code for _, _, code in SUBMIT_ERRORS} | {"TaskNotFound"}


def test_submit_err_code_1_without_message_raises_upstream_failed(client, router):
    router.post("/api/submit_task").mock(return_value=answer({"err_code": 1}))

    with pytest.raises(UpstreamTaskFailedError) as caught:
        client.submit("redraw", {}, png())

    assert caught.value.code == "UpstreamError"
    assert "err_code=1" in caught.value.message


# --- status ----------------------------------------------------------------------------------------


def test_status_posts_multipart_user_key_and_task_id(client, router):
    route = router.post(STATUS_PATH).mock(return_value=answer({"err_code": 0, "status": "Pending"}))

    client.status("task123")

    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}/api/check_task_status"
    assert parts(request) == {
        "user_key": (None, None, USER_KEY.encode()),
        "task_id": (None, None, b"task123"),
    }


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("Completed", TaskState.DONE),
        ("COMPLETED", TaskState.DONE),
        ("success", TaskState.DONE),
        ("Done", TaskState.DONE),
        ("Failed", TaskState.FAILED),
        ("ERROR", TaskState.FAILED),
        ("expired", TaskState.FAILED),
        ("Pending", TaskState.PENDING),
        ("Processing", TaskState.PENDING),
        ("queued", TaskState.PENDING),
        ("", TaskState.PENDING),
        ("Completing", TaskState.PENDING),
    ],
)
def test_status_state_compared_case_insensitively(client, router, raw, state):
    router.post(STATUS_PATH).mock(return_value=answer({**DONE_SINGLE, "status": raw}))

    status = client.status("task123")

    assert (status.state, status.raw_state, status.task_id) == (state, raw, "task123")
    assert status.provider is Provider.HDREDRAW


def test_status_none_is_terminal_as_in_the_documents_example(client, router):
    # Document 004's example polls until Completed and stops on `None` or "Failed".
    router.post(STATUS_PATH).mock(return_value=answer({"err_code": 0, "status": None}))

    status = client.status("task123")

    assert (status.state, status.raw_state, status.error_code, status.results) == (
        TaskState.FAILED,
        "None",
        "None",
        (),
    )


def test_status_without_status_field_is_pending(client, router):
    router.post(STATUS_PATH).mock(return_value=answer({"err_code": 0}))

    status = client.status("task123")

    assert (status.state, status.results, status.balance) == (TaskState.PENDING, (), None)


def test_status_pending_ignores_result_fields(client, router):
    router.post(STATUS_PATH).mock(return_value=answer({**DONE_SINGLE, "status": "Processing"}))

    assert client.status("task123").results == ()


def test_status_single_image_example_gives_every_result_and_balance(client, router):
    router.post(STATUS_PATH).mock(return_value=answer(DONE_SINGLE))

    status = client.status("task123")

    assert status.results == (
        ResultRef(ResultKind.IMAGE, url="https://api.domain.com/api/images/xxx/task123"),
        ResultRef(ResultKind.VECTOR, url="https://api.domain.com/api/images/xxx/task123/vector"),
        ResultRef(ResultKind.GRID, url="https://api.domain.com/api/images/xxx/task123/grid"),
        ResultRef(ResultKind.PROMPT, text=DONE_SINGLE["generated_prompt"]),
    )
    assert status.balance == Balance(remaining_count=5, remaining_money=300.0)


def test_status_multi_image_example_prefers_images_urls_and_skips_empty(client, router):
    router.post(STATUS_PATH).mock(return_value=answer(DONE_MULTI))

    status = client.status("task123")

    assert status.results == (
        ResultRef(ResultKind.IMAGES, url="https://api.domain.com/api/images/xxx/task123", index=0),
        ResultRef(
            ResultKind.IMAGES, url="https://api.domain.com/api/images/xxx/task123/alternative/1", index=1
        ),
        ResultRef(ResultKind.PROMPT, text=DONE_MULTI["generated_prompt"]),
    )


def test_status_single_entry_images_urls_is_one_image(client, router):
    body = {"err_code": 0, "status": "Completed", "images_url": "https://a/1", "images_urls": ["https://a/2"]}
    router.post(STATUS_PATH).mock(return_value=answer(body))

    assert client.status("t").results == (ResultRef(ResultKind.IMAGE, url="https://a/2"),)


def test_status_empty_images_urls_falls_back_to_images_url(client, router):
    body = {"err_code": 0, "status": "Completed", "images_url": "https://a/1", "images_urls": ["", None]}
    router.post(STATUS_PATH).mock(return_value=answer(body))

    assert client.status("t").results == (ResultRef(ResultKind.IMAGE, url="https://a/1"),)


def test_status_seamless_gives_image_1x_and_grid(client, router):
    body = {
        "err_code": 0,
        "status": "Completed",
        "images_url": "https://a/seamless",
        "images_url_1m": "https://a/seamless-1x",
        "grid_url": "https://a/grid",
        "vector_url": "",
    }
    router.post(STATUS_PATH).mock(return_value=answer(body))

    assert client.status("t").results == (
        ResultRef(ResultKind.IMAGE, url="https://a/seamless"),
        ResultRef(ResultKind.IMAGE_1X, url="https://a/seamless-1x"),
        ResultRef(ResultKind.GRID, url="https://a/grid"),
    )


def test_status_done_without_any_result_url_raises_result_unavailable(client, router):
    body = {"err_code": 0, "status": "Completed", "images_url": "", "generated_prompt": "a prompt"}
    router.post(STATUS_PATH).mock(return_value=answer(body))

    with pytest.raises(ResultUnavailableError) as caught:
        client.status("t")

    assert caught.value.code == "NoResultUrl"


def test_status_failed_keeps_raw_state_as_error_code(client, router):
    router.post(STATUS_PATH).mock(
        return_value=answer({"err_code": 0, "status": "Failed", "err_msg": "显存不足"})
    )

    status = client.status("t")

    assert (status.state, status.error_code, status.error_message, status.results) == (
        TaskState.FAILED,
        "Failed",
        "显存不足",
        (),
    )


@pytest.mark.parametrize(
    ("body", "balance"),
    [
        ({"remaining_count": 0, "remaining_money": 0}, Balance(0, 0.0)),
        ({"remaining_money": 12.5}, Balance(None, 12.5)),
        ({"remaining_count": "7"}, Balance(7, None)),
        ({"remaining_count": "lots", "remaining_money": True}, None),
        ({"remaining_count": "inf"}, None),
    ],
)
def test_status_balance_surfaced_when_present(client, router, body, balance):
    without = {k: v for k, v in DONE_SINGLE.items() if not k.startswith("remaining_")}
    router.post(STATUS_PATH).mock(return_value=answer({**without, **body}))

    assert client.status("t").balance == balance


@pytest.mark.parametrize(
    ("err_msg", "kind", "code"),
    [
        ("账户不存在", AuthError, "AccountNotFound"),
        ("任务未找到或状态未知", UpstreamTaskFailedError, "TaskNotFound"),
    ],
)
def test_status_documented_errors_map_to_classes(client, router, err_msg, kind, code):
    route = router.post(STATUS_PATH).mock(return_value=answer({"err_code": 1, "err_msg": err_msg}))

    with pytest.raises(kind) as caught:
        client.status("t")

    assert (caught.value.code, caught.value.message) == (code, err_msg)
    assert route.call_count == 1


def test_status_empty_task_id_raises_before_sending(client, router):
    with pytest.raises(ParamValidationError):
        client.status("  ")
    assert len(router.calls) == 0


def test_status_cache_constant_is_documented_three_seconds():
    assert HdRedrawClient.STATUS_CACHE_SECONDS == 3


# --- faults -----------------------------------------------------------------------------------------


def test_submit_429_raises_rate_limited_with_retry_after_without_retrying(client, router, sleeps):
    route = router.post("/api/submit_task").mock(return_value=answer({}, 429, **{"Retry-After": "7"}))

    with pytest.raises(RateLimitedError) as caught:
        client.submit("redraw", {}, png())

    assert (caught.value.retry_after, caught.value.http_status) == (7.0, 429)
    assert route.call_count == 1
    assert sleeps == []


def test_status_429_is_retried_honouring_retry_after(client, router, sleeps):
    route = router.post(STATUS_PATH).mock(
        side_effect=[answer({}, 429, **{"Retry-After": "2"}), answer({"err_code": 0, "status": "Pending"})]
    )

    assert client.status("t").state is TaskState.PENDING
    assert route.call_count == 2
    assert sleeps == [2.0]


def test_status_429_outliving_retries_raises_rate_limited(client, router, sleeps):
    route = router.post(STATUS_PATH).mock(return_value=answer({}, 429, **{"Retry-After": "1"}))

    with pytest.raises(RateLimitedError) as caught:
        client.status("t")

    assert caught.value.retry_after == 1.0
    assert (route.call_count, sleeps) == (3, [1.0, 1.0])


@pytest.mark.parametrize("status", [500, 503])
def test_submit_5xx_raises_transient_without_retrying(client, router, status):
    route = router.post("/api/submit_task").mock(
        return_value=httpx.Response(status, text="<html>bad gateway")
    )

    with pytest.raises(TransientError) as caught:
        client.submit("redraw", {}, png())

    assert caught.value.http_status == status
    assert route.call_count == 1


def test_status_5xx_is_retried_then_succeeds(client, router, sleeps):
    route = router.post(STATUS_PATH).mock(side_effect=[httpx.Response(503), answer(DONE_SINGLE)])

    assert client.status("t").state is TaskState.DONE
    assert route.call_count == 2
    assert len(sleeps) == 1


def test_status_5xx_outliving_retries_raises_transient(client, router):
    route = router.post(STATUS_PATH).mock(return_value=httpx.Response(500))

    with pytest.raises(TransientError):
        client.status("t")
    assert route.call_count == 3


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("call", ["submit", "status"])
def test_http_401_403_raises_auth_error(client, router, status, call):
    router.post(path__startswith="/api/").mock(return_value=httpx.Response(status, text="denied"))

    with pytest.raises(AuthError) as caught:
        client.submit("redraw", {}, png()) if call == "submit" else client.status("t")

    assert (caught.value.http_status, caught.value.code) == (status, status)


def test_http_400_with_err_msg_maps_by_message(client, router):
    router.post("/api/submit_task").mock(return_value=answer({"err_code": 1, "err_msg": "账户不存在"}, 400))

    with pytest.raises(AuthError) as caught:
        client.submit("redraw", {}, png())

    assert (caught.value.code, caught.value.http_status) == ("AccountNotFound", 400)


@pytest.mark.parametrize("status", [404, 413])
def test_http_other_4xx_without_err_msg_raises_invalid_request(client, router, status):
    router.post("/api/submit_task").mock(return_value=httpx.Response(status, text="nope"))

    with pytest.raises(InvalidRequestError) as caught:
        client.submit("redraw", {}, png())

    assert type(caught.value) is InvalidRequestError
    assert caught.value.http_status == status


def test_submit_connect_error_is_retried_and_raises_transient(client, router, sleeps):
    # Never connected, so the paid request provably never arrived: retrying is safe.
    route = router.post("/api/submit_task").mock(side_effect=httpx.ConnectError("refused"))

    with pytest.raises(TransientError) as caught:
        client.submit("redraw", {}, png())

    assert caught.value.code == "ConnectFailed"
    assert (route.call_count, len(sleeps)) == (3, 2)


def test_submit_connect_error_then_success_resends_whole_file(client, router):
    route = router.post("/api/submit_task").mock(
        side_effect=[httpx.ConnectError("refused"), answer(SUBMITTED)]
    )

    assert client.submit("redraw", {}, png()).task_id == "task123"
    assert parts(route.calls.last.request)["input_image"][2] == PNG


def test_submit_read_timeout_raises_outcome_unknown_without_retrying(client, router):
    route = router.post("/api/submit_task").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(OutcomeUnknownError):
        client.submit("redraw", {}, png())
    assert route.call_count == 1


def test_status_read_timeout_is_retried_then_raises_transient(client, router, sleeps):
    route = router.post(STATUS_PATH).mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(TransientError):
        client.status("t")
    assert (route.call_count, len(sleeps)) == (3, 2)


MALFORMED = [
    pytest.param(
        httpx.Response(200, text="{not json", headers={"Content-Type": "application/json"}), id="bad-json"
    ),
    pytest.param(
        httpx.Response(200, text=json.dumps(SUBMITTED), headers={"Content-Type": "text/html"}), id="html-type"
    ),
    pytest.param(httpx.Response(200, json=[SUBMITTED]), id="json-list"),
    pytest.param(httpx.Response(200, json={"task_id": "x"}), id="no-err-code"),
    pytest.param(httpx.Response(200, content=b""), id="empty"),
]


@pytest.mark.parametrize("response", MALFORMED)
def test_submit_malformed_answer_raises_outcome_unknown(client, router, response):
    route = router.post("/api/submit_task").mock(return_value=response)

    with pytest.raises(OutcomeUnknownError) as caught:
        client.submit("redraw", {}, png())

    assert caught.value.code == "MalformedAnswer"
    assert route.call_count == 1


@pytest.mark.parametrize("response", MALFORMED)
def test_status_malformed_answer_raises_transient(client, router, response):
    router.post(STATUS_PATH).mock(return_value=response)

    with pytest.raises(TransientError) as caught:
        client.status("t")

    assert caught.value.code == "MalformedAnswer"


def test_status_json_with_charset_content_type_is_accepted(client, router):
    router.post(STATUS_PATH).mock(
        return_value=httpx.Response(
            200,
            content=json.dumps(DONE_SINGLE).encode(),
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    )

    assert client.status("t").state is TaskState.DONE


# --- secrets ------------------------------------------------------------------------------------------


def test_user_key_absent_from_client_repr_and_errors(client, router):
    # GIVEN a vendor that echoes the form back in its error message
    router.post("/api/submit_task").mock(
        return_value=answer({"err_code": 1, "err_msg": f"任务提交失败:bad form user_key={USER_KEY}"})
    )

    with pytest.raises(UpstreamTaskFailedError) as caught:
        client.submit("redraw", {}, png())

    error = caught.value
    texts = [
        repr(client),
        str(client),
        str(error),
        repr(error),
        json.dumps(error.to_dict(), ensure_ascii=False),
    ]
    assert all(USER_KEY not in text for text in texts)
    assert error.message == "任务提交失败:bad form user_key=***"


# --- property tests: validation boundaries -------------------------------------------------------------

# (operation, field, low, high, base params that make the rest valid)
FLOAT_RANGES = [
    ("redraw", "upscale", 1.0, 8.0, {}),
    ("redraw", "s_noise", 1.0, 1.1, {}),
    ("redraw", "steps", 20.0, 40.0, {}),
    ("redraw", "strong_inpaint_intensity", 0.0, 1.0, {}),
    ("seamless", "fit", 0.1, 0.9, {}),
    ("seamless", "expand_top", 0.0, 0.3, {}),
    ("expand_image", "expand_bottom", 0.0, 0.3, {"expand_top": 0.1}),
]
INT_RANGES = [
    ("redraw", "color_count", 2, 16),
    ("vectorize", "color_count", 2, 16),
    ("seamless", "direction", 0, 2),
]


# Each example builds and parses a whole multipart request: a few dozen suffice, since the
# values just inside and just outside each bound are always tried as explicit examples.
BOUNDARY_SETTINGS = settings(max_examples=40, deadline=None)


def _mock_client() -> tuple[HdRedrawClient, respx.MockRouter]:
    router = respx.MockRouter(base_url=BASE_URL, assert_all_called=False)
    router.post(path__startswith="/api/").mock(return_value=answer(SUBMITTED))
    http = build_client(BASE_URL, transport=httpx.MockTransport(router.handler))
    return HdRedrawClient(http, Secret(USER_KEY)), router


def _sent(router: respx.MockRouter) -> Mapping[str, str]:
    return fields(router.calls.last.request)


def _floats_outside(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(max_value=low, exclude_max=True) | st.floats(min_value=high, exclude_min=True)


@pytest.mark.parametrize(("operation", "field", "low", "high", "base"), FLOAT_RANGES)
def test_submit_float_inside_range_is_sent_exactly(operation, field, low, high, base):
    @BOUNDARY_SETTINGS
    @given(value=st.floats(min_value=low, max_value=high))
    @example(value=low)
    @example(value=high)
    def check(value: float) -> None:
        client, router = _mock_client()
        client.submit(operation, {**base, field: value}, png())
        assert float(_sent(router)[field]) == value

    check()


@pytest.mark.parametrize(("operation", "field", "low", "high", "base"), FLOAT_RANGES)
def test_submit_float_outside_range_raises_without_sending(operation, field, low, high, base):
    @BOUNDARY_SETTINGS
    @given(value=_floats_outside(low, high))
    @example(value=math.nextafter(low, -math.inf))
    @example(value=math.nextafter(high, math.inf))
    @example(value=math.nan)
    @example(value=math.inf)
    def check(value: float) -> None:
        client, router = _mock_client()
        with pytest.raises(ParamValidationError) as caught:
            client.submit(operation, {**base, field: value}, png())
        assert caught.value.field == field
        assert len(router.calls) == 0

    check()


@pytest.mark.parametrize(("operation", "field", "low", "high"), INT_RANGES)
def test_submit_int_range_boundaries(operation, field, low, high):
    @BOUNDARY_SETTINGS
    @given(value=st.integers(min_value=low - 3, max_value=high + 3))
    @example(value=low - 1)
    @example(value=high + 1)
    def check(value: int) -> None:
        client, router = _mock_client()
        if low <= value <= high:
            client.submit(operation, {field: value}, png())
            assert _sent(router)[field] == str(value)
        else:
            with pytest.raises(ParamValidationError):
                client.submit(operation, {field: value}, png())
            assert len(router.calls) == 0

    check()


@BOUNDARY_SETTINGS
@given(length=st.integers(min_value=1020, max_value=1030))
@example(length=1024)
@example(length=1025)
def test_submit_prompt_length_boundary_1024(length):
    client, router = _mock_client()
    prompt = "画" * length
    if length <= 1024:
        client.submit("edit_image", {"prompt": prompt}, png())
        assert _sent(router)["prompt"] == prompt
    else:
        with pytest.raises(ParamValidationError):
            client.submit("edit_image", {"prompt": prompt}, png())
        assert len(router.calls) == 0


@pytest.mark.parametrize("status", [502, 504])
def test_submit_gateway_error_without_vendor_body_is_outcome_unknown(status):
    with respx.mock(base_url=BASE_URL) as router:
        route = router.post("/api/submit_face_enhance_task").respond(status, text="<html>Bad Gateway</html>")
        client = HdRedrawClient(httpx.Client(base_url=BASE_URL), Secret(USER_KEY))
        with pytest.raises(OutcomeUnknownError) as info:
            client.submit("face_enhance", {}, ImageInput(file=io.BytesIO(PNG), filename="f.png"))
    assert info.value.http_status == status
    assert route.call_count == 1
