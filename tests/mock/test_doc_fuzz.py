"""Random requests built from the documents' parameter names: every answer keeps its provider's
envelope (the documents' answer shapes), and none is a server error.

This replaces a schemathesis run against an OpenAPI document the project wrote for the mock
(which checked the mock against itself): here the names and the envelopes come from the seeds.
"""

from __future__ import annotations

import json

import pytest
from documents import hdredraw, taskpic, tencent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tc3sign import tc3_headers

pytestmark = pytest.mark.integration

TASKPIC = {kind: taskpic(kind) for kind in ("background", "segmentation", "idphoto")}
HD = hdredraw()
TENCENT = tencent()
VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-5, 5000).map(str),
    st.sampled_from(["1", "0", "true", "png", "jpg", "300x400", "ffffff", "https://example.com/image.png"]),
)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def form_of(names):
    return st.dictionaries(st.sampled_from(sorted(names)), VALUES, max_size=len(names))


@FUZZ
@given(kind=st.sampled_from(sorted(TASKPIC)), fields=st.data())
def test_taskpic_answers_keep_the_documented_envelope(fuzz_client, kind, fields):
    doc = TASKPIC[kind]
    names = set(doc.params) - {"image_file", "callback_url"}
    data = fields.draw(form_of(names))
    response = fuzz_client.post(doc.path, headers={"Authorization": "Bearer sk-xxxx"}, data=data)
    assert response.status_code < 500
    body = response.json()
    assert isinstance(body["status"], int)
    if body["status"] == doc.example_answer["status"]:
        assert set(body["data"]) >= set(doc.example_answer["data"])
    else:
        assert response.status_code == body["status"]


@FUZZ
@given(path=st.sampled_from(sorted(HD)), fields=st.data(), image=st.booleans())
def test_hd_answers_keep_the_documented_envelope(fuzz_client, path, fields, image):
    endpoint = HD[path]
    data = fields.draw(form_of(set(endpoint.params) - {"input_image"}))
    data.setdefault("user_key", "test-key")
    files = {"input_image": ("a.png", b"\x89PNG not really", "image/png")} if image else None
    response = fuzz_client.post(path, data=data, files=files)
    assert response.status_code == 200
    body = response.json()
    assert body["err_code"] in (0, 1)
    if body["err_code"] == 1:
        assert set(body) == {"err_code", "err_msg"}
    assert set(body) <= set(endpoint.answer_fields)


@FUZZ
@given(params=st.dictionaries(st.sampled_from(sorted(TENCENT.inputs)), VALUES | st.integers(), max_size=6))
def test_tencent_answers_keep_the_documented_envelope(fuzz_tencent, params):
    answer = fuzz_tencent(params)
    assert answer["RequestId"]
    if "Error" in answer:
        assert set(answer["Error"]) == {"Code", "Message"}
    else:
        assert set(answer) <= set(TENCENT.outputs)


@pytest.fixture(scope="module")
def fuzz_client(mock_server):
    import httpx

    with httpx.Client(base_url=mock_server.base_url, timeout=30, trust_env=False) as client:
        client.post("/__mock/reset")
        client.post("/__mock/config", json={"fetch_timeout_seconds": 0.5})
        yield client
        client.post("/__mock/reset")


@pytest.fixture(scope="module")
def fuzz_tencent(fuzz_client, mock_server):
    host = mock_server.base_url.removeprefix("http://")

    def call(params):
        body = json.dumps(params).encode()
        now = int(fuzz_client.get("/__mock/clock").json()["now"])
        response = fuzz_client.post("/", content=body, headers=tc3_headers(host, body, timestamp=now))
        assert response.status_code == 200
        return response.json()["Response"]

    return call
