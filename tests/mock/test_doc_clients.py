"""The layer's provider clients read the documents' own example answers.

No mock here: an httpx MockTransport answers each client's request with the example answer
read from the seed document at test time, so the clients' parsing paths are exercised on the
documented shapes themselves (the mock is checked against the same examples elsewhere).
"""

from __future__ import annotations

import json

import httpx
import pytest
from documents import hdredraw, taskpic, tencent
from picflow.core.catalogue import ResultKind, TaskState
from picflow.net.http import RetryPolicy, build_client
from picflow.providers.base import ImageInput, Secret
from picflow.providers.hdredraw import HdRedrawClient
from picflow.providers.taskpic import TaskPicClient
from picflow.providers.tencent import TencentClient

BASE = "https://provider.test"
NO_SLEEP = RetryPolicy(sleep=lambda _s: None)


def client_answering(answers: dict[str, object]) -> httpx.Client:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers[request.url.path])

    return build_client(BASE, transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("kind", ["background", "idphoto", "segmentation"])
def test_taskpic_client_reads_the_example_answer(kind):
    doc = taskpic(kind)
    example = doc.example_answer
    client = TaskPicClient(client_answering({doc.path: example}), Secret("sk-xxxx"), retry=NO_SLEEP)
    params = {k: v for k, v in doc.example_request.items() if k not in ("image_url", "sync")}

    submission = client.submit(kind, params, ImageInput(url=doc.example_request["image_url"]), sync=True)

    status = submission.status
    assert status is not None
    assert (status.state, status.task_id, status.raw_state) == (
        TaskState.DONE,
        example["data"]["task_id"],
        example["data"]["state"],
    )
    kind_of_image = ResultKind.IMAGES if kind == "background" else ResultKind.IMAGE
    assert [(r.kind, r.url) for r in status.results] == [(kind_of_image, example["data"]["image"])]
    assert status.meta["foreground_rect"] == example["data"]["foreground_rect"]
    # A callback carries the same JSON (the documents name callback_url only): same reading.
    assert TaskPicClient.parse_callback(json.dumps(example).encode(), operation=kind) == status


def test_hd_client_reads_the_example_answers():
    endpoints = hdredraw()
    status_path = "/api/check_task_status"
    single, multi = endpoints[status_path].answer, endpoints[status_path].extra_answers["multi"]
    submitted = endpoints["/api/submit_task"].answer
    answers = {"/api/submit_task": {**submitted, "task_id": "task123"}, status_path: single}
    client = HdRedrawClient(client_answering(answers), Secret("test-key"), retry=NO_SLEEP)
    image = ImageInput(file=__import__("io").BytesIO(b"\x89PNG"), filename="in.png")

    submission = client.submit("redraw", {}, image)
    assert submission.task_id == "task123"
    assert submission.balance is not None
    assert submission.balance.remaining_count == submitted["remaining_count"]

    done = client.status("task123")
    assert done.state is TaskState.DONE
    found = {r.kind: (r.url or r.text) for r in done.results}
    assert found[ResultKind.IMAGE] == single["images_url"]
    assert found[ResultKind.VECTOR] == single["vector_url"]
    assert found[ResultKind.GRID] == single["grid_url"]
    assert found[ResultKind.PROMPT] == single["generated_prompt"]

    answers[status_path] = multi
    listed = client.status("task123")
    assert [r.url for r in listed.results if r.kind is ResultKind.IMAGES] == multi["images_urls"]
    # "vector_url": "" and "grid_url": "" mean none.
    assert not {ResultKind.VECTOR, ResultKind.GRID} & {r.kind for r in listed.results}

    for terminal, state in (("Failed", TaskState.FAILED), (None, TaskState.FAILED)):
        answers[status_path] = {"err_code": 0, "status": terminal}
        assert client.status("task123").state is state


def test_tencent_client_reads_the_example_output():
    doc = tencent()
    answer = {"Response": doc.example_output}
    client = TencentClient(
        client_answering({"/": answer}), Secret("AKIDEXAMPLE"), Secret("secret"), host=None, retry=NO_SLEEP
    )
    params = {
        "prompt": doc.example_input["Prompt"],
        "mask_url": doc.example_input["MaskUrl"],
        "rsp_img_type": "url",
    }

    submission = client.replace_background(params, doc.example_input["ProductUrl"])

    assert submission.request_id == doc.example_output["RequestId"]
    assert submission.status is not None
    assert [(r.kind, r.url) for r in submission.status.results] == [
        (ResultKind.IMAGE, doc.example_output["ResultImage"])
    ]
