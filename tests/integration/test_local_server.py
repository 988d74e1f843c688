"""picflow_cli.local.server: moto's app answering on connections that stay open, the same answers.

Over loopback to a MotoServer in this process: boto3 calls (S3 with a body big enough for
``Expect: 100-continue``, HEAD, DynamoDB) reuse one connection; a chunked request body, a client's
``Connection: close`` and an app failure close theirs."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from picflow_cli.local import server as local_server
from picflow_cli.local.server import MotoServer

pytestmark = pytest.mark.integration


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    running = MotoServer("127.0.0.1", 0)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every connection the server accepts (one handler per connection)."""
    accepted: list[object] = []
    setup = local_server.KeepAliveHandler.setup

    def counting(self: local_server.KeepAliveHandler) -> None:
        accepted.append(self)
        setup(self)

    monkeypatch.setattr(local_server.KeepAliveHandler, "setup", counting)
    return accepted


def client(moto: MotoServer, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=f"http://127.0.0.1:{moto.port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_sdk_calls_share_one_connection_and_get_moto_s_answers(
    moto: MotoServer, connections: list[object]
) -> None:
    s3 = client(moto, "s3")
    s3.create_bucket(Bucket="keepalive")
    body = bytes(range(256)) * 8192  # 2 MiB: botocore sends Expect: 100-continue
    s3.put_object(Bucket="keepalive", Key="k", Body=body)
    assert s3.head_object(Bucket="keepalive", Key="k")["ContentLength"] == len(body)
    assert s3.get_object(Bucket="keepalive", Key="k")["Body"].read() == body
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="keepalive", Key="missing")
    s3.put_object(Bucket="keepalive", Key="empty", Body=b"")
    assert s3.get_object(Bucket="keepalive", Key="empty")["Body"].read() == b""
    assert len(connections) == 1

    dynamodb = client(moto, "dynamodb")
    dynamodb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(5):
        dynamodb.put_item(TableName="t", Item={"pk": {"S": f"k{n}"}, "n": {"N": str(n)}})
    assert dynamodb.get_item(TableName="t", Key={"pk": {"S": "k3"}})["Item"]["n"] == {"N": "3"}
    assert len(connections) == 2  # one per client


def raw(moto: MotoServer, request: bytes) -> tuple[http.client.HTTPResponse, bool]:
    """Send ``request`` on a fresh socket; the answer and whether the server kept the socket."""
    conn = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=10)
    conn.connect()
    assert conn.sock is not None
    conn.sock.sendall(request)
    response = http.client.HTTPResponse(conn.sock, method="POST")
    response.begin()
    response.read()
    kept = not response.will_close
    conn.close()
    return response, kept


def test_a_plain_request_keeps_its_connection(moto: MotoServer) -> None:
    response, kept = raw(moto, b"GET /moto-api/data.json HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == 200
    assert kept


def test_a_chunked_body_and_connection_close_end_the_connection(moto: MotoServer) -> None:
    chunked = (
        b"GET /moto-api/data.json HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    response, kept = raw(moto, chunked)
    assert response.status == 200
    assert not kept
    response, kept = raw(
        moto, b"GET /moto-api/data.json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert response.status == 200
    assert not kept


def test_an_app_failure_answers_500_and_closes(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("boom")

    assert moto._server is not None
    monkeypatch.setattr(moto._server, "app", broken)
    response, kept = raw(moto, b"GET /anything HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert response.status == 500
    assert not kept


def test_dynamodb_conditional_writes_are_atomic_under_concurrent_requests(moto: MotoServer) -> None:
    """DynamoDB checks a condition and writes as one step: the semaphore's versioned put relies on
    it. 6 threads x 20 versioned increments of one item must all land, none lost."""
    import threading
    import uuid

    from botocore.exceptions import ClientError

    table = f"t-{uuid.uuid4().hex[:8]}"  # moto's backends outlive each test's server
    ddb = client(moto, "dynamodb")
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=table, Item={"name": {"S": "n"}, "version": {"N": "0"}})

    failures: list[Exception] = []

    def increments(times: int) -> None:
        mine = client(moto, "dynamodb")
        done = 0
        while done < times:
            item = mine.get_item(TableName=table, Key={"name": {"S": "n"}}, ConsistentRead=True)["Item"]
            version = int(item["version"]["N"])
            try:
                mine.put_item(
                    TableName=table,
                    Item={"name": {"S": "n"}, "version": {"N": str(version + 1)}},
                    ConditionExpression="version = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    failures.append(exc)
                    return
                continue
            done += 1

    threads = [threading.Thread(target=increments, args=(20,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = ddb.get_item(TableName=table, Key={"name": {"S": "n"}}, ConsistentRead=True)["Item"]
    assert failures == []
    assert int(final["version"]["N"]) == 6 * 20


def test_answers_go_out_with_nagle_off(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # With Nagle's algorithm on, an answer's body (its second write) waited for the client's delayed
    # ACK of its head: >= 40 ms a call on Linux, however little moto did.
    seen: list[int] = []
    setup = local_server.KeepAliveHandler.setup

    def recording(self: local_server.KeepAliveHandler) -> None:
        setup(self)
        # Read while the connection is open: the server may close it once its answer is out.
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(local_server.KeepAliveHandler, "setup", recording)
    client(moto, "s3").list_buckets()
    assert seen
    assert all(seen)
