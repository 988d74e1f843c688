"""Control API: faults of every kind, the journal and its redaction, callbacks, scenarios, accounts."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.integration

AUTH = {"Authorization": "Bearer sk-xxxx"}
IMAGE = {"image_url": "https://example.com/image.png"}


def seg(client, data=None, headers=None):
    return client.post(
        "/task/pic/segmentation", headers={**AUTH, **(headers or {})}, data={**IMAGE, **(data or {})}
    )


def face(client, png, key="test-key"):
    return client.post("/api/submit_face_enhance_task", data={"user_key": key},
                       files={"input_image": ("f.png", png((64, 64)), "image/png")})  # fmt: skip


# ---- faults ---------------------------------------------------------------------------------
def test_rate_limit_fault_fires_once_in_provider_shape(client, mock_upstream):
    mock_upstream.inject_fault("rate_limit", route="/task/pic/*", retry_after=7)
    limited = seg(client)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json() == {"status": 429, "message": "too many requests"}
    assert seg(client).status_code == 200
    assert mock_upstream.count(route="/task/pic/segmentation", paid=True) == 1  # the 429 was not charged


def test_http_5xx_n_times_scoped_by_account(client, mock_upstream, png):
    mock_upstream.set_account("other", user_key="other-key")
    mock_upstream.inject_fault("http_status", status=503, account="default", times=2)
    assert face(client, png, "other-key").json()["err_code"] == 0
    assert [face(client, png).status_code for _ in range(3)] == [503, 503, 200]
    assert mock_upstream.faults()[0]["hits"] == 2


def test_provider_error_in_each_shape(client, mock_upstream, png, tencent):
    mock_upstream.inject_fault("provider_error", route="/api/*", message="任务提交失败:GPU忙")
    assert face(client, png).json() == {"err_code": 1, "err_msg": "任务提交失败:GPU忙"}
    mock_upstream.inject_fault("provider_error", route="/task/pic/*", code=402, message="no money")
    paid = seg(client)
    assert paid.status_code == 402
    assert paid.json() == {"status": 402, "message": "no money"}
    mock_upstream.inject_fault("provider_error", action="ReplaceBackground", code="FailedOperation.RpcFail")
    error = tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"})["Error"]
    assert error == {"Code": "FailedOperation.RpcFail", "Message": "RPC请求失败,一般为算法微服务故障。"}


def test_fault_scoped_by_task(client, mock_upstream):
    a = seg(client).json()["data"]["task_id"]
    b = seg(client).json()["data"]["task_id"]
    mock_upstream.inject_fault("http_status", status=500, task_id=b, times=None)
    assert client.get(f"/task/{a}", headers=AUTH).status_code == 200
    assert client.get(f"/task/{b}", headers=AUTH).status_code == 500
    assert client.get(f"/task/{b}", headers=AUTH).status_code == 500


def test_seeded_probability_is_reproducible(client, mock_upstream):
    def pattern():
        mock_upstream.reset()
        mock_upstream.set_seed(3)
        mock_upstream.inject_fault("http_status", status=502, probability=0.5, times=None, route="/task/*")
        return [client.get("/task/x", headers=AUTH).status_code for _ in range(12)]

    first = pattern()
    assert first == pattern()
    assert {502, 404} == set(first)


def test_malformed_json_after_the_work_is_done(client, mock_upstream):
    mock_upstream.inject_fault("malformed_json", route="/task/pic/segmentation")
    response = seg(client)
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert mock_upstream.count(paid=True) == 1  # processed and charged: only the answer broke


def test_wrong_content_type(client, mock_upstream, png):
    mock_upstream.inject_fault("wrong_content_type", route="/api/check_task_status")
    response = client.post("/api/check_task_status", data={"user_key": "test-key", "task_id": "x"})
    assert response.headers["content-type"].startswith("text/html")
    assert b"502" in response.content


def test_latency_on_the_mock_clock(client, mock_upstream):
    before = mock_upstream.now()
    mock_upstream.inject_fault("latency", seconds=42, clock=True)
    assert seg(client).status_code == 200
    assert mock_upstream.now() - before == pytest.approx(42)


def test_real_latency_uniform_is_small_and_applied(client, mock_upstream):
    mock_upstream.inject_fault("latency", min_seconds=0.05, max_seconds=0.06)
    response = seg(client)
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.05


def test_latency_without_a_hit_limit_slows_every_request_and_each_still_answers(client, mock_upstream):
    # "Slow but answering" (issue 15, finding 9): the rule used to match again after its own
    # sleep, so a request under `times: null` never answered (here: the client's 10 s timeout).
    mock_upstream.inject_fault("latency", seconds=0.05, times=None)
    for _ in range(3):
        response = seg(client)
        assert response.status_code == 200
        assert response.elapsed.total_seconds() >= 0.05
    (fault,) = mock_upstream.faults()
    assert fault["hits"] == 3  # once per request


@pytest.mark.parametrize(
    ("kind", "error"),
    [("reset", (httpx.ReadError, httpx.RemoteProtocolError)), ("empty", httpx.RemoteProtocolError),
     ("truncated", httpx.RemoteProtocolError)],
)  # fmt: skip
def test_connection_faults(mock_upstream, kind, error):
    mock_upstream.inject_fault(kind, route="/task/pic/segmentation")
    with httpx.Client(base_url=mock_upstream.base_url, timeout=5) as fresh, pytest.raises(error):
        seg(fresh)
    with httpx.Client(base_url=mock_upstream.base_url, timeout=5) as fresh:
        assert seg(fresh).status_code == 200  # the server carries on


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (404, "NoSuchKey")])
def test_download_faults_expired_or_missing(client, mock_upstream, status, code):
    url = seg(client, {"sync": "1"}).json()["data"]["image"]
    mock_upstream.inject_fault("http_status", route="/files/*", status=status)
    response = client.get(url)
    assert response.status_code == status
    assert code.encode() in response.content
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("kind", ["truncated_body", "corrupt_body"])
def test_download_damaged_bytes(client, mock_upstream, kind):
    url = seg(client, {"sync": "1"}).json()["data"]["image"]
    good = client.get(url).content
    mock_upstream.inject_fault(kind, route="/files/*")
    bad = client.get(url).content
    assert bad != good
    assert len(bad) < len(good) if kind == "truncated_body" else len(bad) == len(good)
    served = [e["result_sha256"] for e in mock_upstream.journal(provider="files")]
    assert served[0] != served[1]  # the journal records what actually went out


def test_fault_validation_and_removal(client, mock_upstream):
    assert client.post("/__mock/faults", json={"kind": "meteor"}).status_code == 400
    fault = mock_upstream.inject_fault("http_status", status=500, times=None)
    assert client.delete(f"/__mock/faults/{fault['id']}").status_code == 200
    assert seg(client).status_code == 200


# ---- journal --------------------------------------------------------------------------------
def test_journal_redacts_secrets_and_records_parts(client, mock_upstream, png, tencent):
    content = png((64, 64))
    client.post("/api/submit_face_enhance_task", data={"user_key": "test-key"},
                files={"input_image": ("face.png", content, "image/png")})  # fmt: skip
    seg(client, headers={"X-Mock-Marker": "job-1"})
    tencent({"ProductUrl": "https://xxx.com/product.jpg", "Prompt": "x"})
    dump = json.dumps(mock_upstream.journal())
    for secret in ("sk-xxxx", "test-key", "mock-upstream-secret-key", "Signature="):
        assert secret not in dump
    hd_entry = mock_upstream.journal(provider="hd")[0]
    part = hd_entry["files"][0]
    assert (part["name"], part["filename"], part["size"]) == ("input_image", "face.png", len(content))
    assert len(part["sha256"]) == 64
    assert hd_entry["fields"]["user_key"] == "<redacted>"
    assert mock_upstream.count(marker="job-1") == 1
    assert mock_upstream.count_by("provider", paid=True) == {"hd": 1, "taskpic": 1, "tencent": 1}


# ---- callbacks ------------------------------------------------------------------------------
def test_callback_posts_the_poll_answer(client, mock_upstream):
    response = seg(client, {"callback_url": mock_upstream.sink_url("cb")})
    task_id = response.json()["data"]["task_id"]
    mock_upstream.flush_callbacks()
    received = mock_upstream.sink("cb")
    assert len(received) == 1
    assert received[0] == client.get(f"/task/{task_id}", headers=AUTH).json()
    assert mock_upstream.callbacks()["log"][0]["outcome"] == "delivered"


def test_callback_delay_on_mock_clock(client, mock_upstream):
    mock_upstream.configure_callbacks(delay=10)
    seg(client, {"callback_url": mock_upstream.sink_url("late")})
    mock_upstream.flush_callbacks()
    assert mock_upstream.sink("late") == []
    assert len(mock_upstream.callbacks()["pending"]) == 1
    mock_upstream.advance_clock(10)
    mock_upstream.flush_callbacks()
    assert len(mock_upstream.sink("late")) == 1


def test_callback_after_timed_task_ends(client, mock_upstream):
    seg(client, {"callback_url": mock_upstream.sink_url("timed")}, mock_upstream.scenario_header(seconds=5))
    mock_upstream.flush_callbacks()
    assert mock_upstream.sink("timed") == []
    mock_upstream.advance_clock(5)
    mock_upstream.flush_callbacks()
    assert mock_upstream.sink("timed")[0]["data"]["state"] == 1


def test_callback_duplicate_and_drop(client, mock_upstream):
    mock_upstream.configure_callbacks(duplicate=2)
    seg(client, {"callback_url": mock_upstream.sink_url("dup")})
    mock_upstream.flush_callbacks()
    assert len(mock_upstream.sink("dup")) == 3
    mock_upstream.configure_callbacks(duplicate=0, drop=True)
    seg(client, {"callback_url": mock_upstream.sink_url("drop")})
    mock_upstream.flush_callbacks()
    assert mock_upstream.sink("drop") == []
    assert mock_upstream.callbacks()["log"][-1]["outcome"] == "dropped"


def test_callback_reorder(client, mock_upstream):
    mock_upstream.configure_callbacks(reorder=True, delay=1)
    ids = [
        seg(client, {"callback_url": mock_upstream.sink_url("order")}).json()["data"]["task_id"]
        for _ in range(3)
    ]
    mock_upstream.wait_renders(idle=True)  # all three ended: their callbacks come due together
    mock_upstream.advance_clock(1)
    mock_upstream.flush_callbacks()
    got = [c["data"]["task_id"] for c in mock_upstream.sink("order")]
    assert got == ids[::-1], (ids, mock_upstream.callbacks())


def test_failed_callback_delivery_is_logged(client, mock_upstream):
    seg(client, {"callback_url": mock_upstream.url("/no/such/receiver")})
    mock_upstream.flush_callbacks()
    log = mock_upstream.callbacks()["log"]
    assert log[0]["outcome"] == "failed"
    assert log[0]["http_status"] == 404


def test_callback_worker_delivers_without_flush(client, mock_upstream):
    seg(client, {"callback_url": mock_upstream.sink_url("auto")})
    # The worker runs on the server's loop; the sink blocks server-side until the body arrives.
    assert len(mock_upstream.sink("auto", wait_for=1, timeout=5)) == 1
    with pytest.raises(httpx.HTTPStatusError):
        mock_upstream.sink("auto", wait_for=2, timeout=0.2)


# ---- scenarios, accounts, config --------------------------------------------------------------
def test_scenario_for_a_live_task(client, mock_upstream):
    mock_upstream.set_scenario(account="default", polls=10)
    task_id = seg(client).json()["data"]["task_id"]
    mock_upstream.set_scenario(task_id=task_id, outcome="failure", code=-8)
    assert client.get(f"/task/{task_id}", headers=AUTH).json()["data"]["state"] == -8
    assert mock_upstream.task(task_id)["polls"] == 1


def test_reset_one_account(client, mock_upstream):
    seg(client)
    mock_upstream.set_account("default", taskpic_balance=5)
    mock_upstream.reset(account="default")
    assert mock_upstream.account()["taskpic_balance"] == 1000
    assert {a["name"] for a in mock_upstream.accounts} == {"default"}


def test_accounts_never_expose_secrets(mock_upstream):
    account = mock_upstream.account()
    assert account["token"] == "<set>"
    assert account["secret_key"] == "<set>"
    assert account["user_key"] == "<set>"


def test_config_file_from_env(tmp_path, monkeypatch):
    from mock_upstream.state import CONFIG_ENV, MockState

    path = tmp_path / "mock.json"
    path.write_text(
        json.dumps({"accounts": [{"name": "b", "token": "sk-b", "taskpic_balance": 3}], "seed": 9})
    )
    monkeypatch.setenv(CONFIG_ENV, str(path))
    state = MockState()
    assert state.account_by("token", "sk-b").taskpic_balance == 3
    assert state.seed == 9


def test_control_rejects_bad_input(client):
    assert client.post("/__mock/scenario", json={"polls": -1}).status_code == 400
    assert client.post("/__mock/config", json={"nope": 1}).status_code == 400
    assert client.post("/__mock/seed", content=b"{").status_code == 400
    assert client.get("/__mock/tasks/none").status_code == 404
