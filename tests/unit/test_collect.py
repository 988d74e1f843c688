"""picflow.job.results: provider results copied into S3 (moto) from a fake result host (MockTransport).

Memory staying flat for large results is a bench concern (bench/), not a unit test.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow.core.catalogue import ResultKind
from picflow.core.errors import ResultUnavailableError, TransientError
from picflow.core.names import result_key
from picflow.core.tasks import ResultRef
from picflow.job.results import collect_results
from picflow.net.urls import UnsafeUrlError
from PIL import Image

BUCKET = "picflow-out"
PREFIX = "segmentation/cat/"
JOB = {
    "job_id": "job-1",
    "operation": "segmentation",
    "params": {"output_type": 1},
    "input": {"key": "in.png"},
}
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n%%EOF\n"


def image_bytes(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 50).convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")


class ResultHost:
    """A fake provider file host: path -> (status, body, headers); records what was fetched."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, Any, dict[str, str]]] = {}
        self.fetched: list[str] = []

    def serve(self, path: str, body: Any, *, status: int = 200, content_type: str | None = None) -> str:
        headers = {"Content-Type": content_type} if content_type else {}
        self.files[path] = (status, body, headers)
        return f"https://results.example{path}"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetched.append(request.url.path)
        status, body, headers = self.files.get(request.url.path, (404, b"", {}))
        if isinstance(body, httpx.SyncByteStream):
            return httpx.Response(status, headers=headers, stream=body)
        return httpx.Response(status, headers=headers, content=body)


class CutShort(httpx.SyncByteStream):
    """A body that stops mid-way, the way httpx reports a peer closing early."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


@pytest.fixture
def host() -> ResultHost:
    return ResultHost()


@pytest.fixture
def s3(s3: Any) -> Any:
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def collect(host: ResultHost, s3: Any, workdir: Path, refs: list[ResultRef]) -> dict[str, Any]:
    http = httpx.Client(transport=httpx.MockTransport(host))
    return collect_results(
        refs,
        http=http,
        s3=s3,
        bucket=BUCKET,
        prefix=PREFIX,
        provider="taskpic",
        job=JOB,
        workdir=str(workdir),
    )


def keys(s3: Any) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


# --- stored objects and the manifest ---------------------------------------------------------


def test_collect_results_stores_each_result_with_type_checksum_and_size(
    host: ResultHost, s3: Any, workdir: Path
) -> None:
    refs = [
        ResultRef(ResultKind.IMAGE, url=host.serve("/r/image.png", PNG, content_type="image/png")),
        ResultRef(ResultKind.MASK, url=host.serve("/r/mask", JPEG, content_type="image/jpeg")),
    ]
    manifest = collect(host, s3, workdir, refs)
    assert keys(s3) == [f"{PREFIX}image.png", f"{PREFIX}manifest.json", f"{PREFIX}mask.jpg"]
    for output, body in zip(manifest["outputs"], (PNG, JPEG), strict=True):
        stored = s3.get_object(Bucket=BUCKET, Key=output["key"])
        assert stored["Body"].read() == body
        assert stored["ContentType"] == output["content_type"]
        assert stored["Metadata"]["sha256"] == hashlib.sha256(body).hexdigest() == output["sha256"]
        assert output["size"] == len(body)
        assert (output["width"], output["height"]) == (24, 16)
    assert [o["content_type"] for o in manifest["outputs"]] == ["image/png", "image/jpeg"]


def test_collect_results_writes_manifest_json_beside_the_results(
    host: ResultHost, s3: Any, workdir: Path
) -> None:
    refs = [
        ResultRef(ResultKind.IMAGES, url=host.serve("/r/0", PNG), index=0),
        ResultRef(ResultKind.IMAGES, url=host.serve("/r/1", JPEG), index=1),
        ResultRef(ResultKind.PROMPT, text="a red vase on oak"),
    ]
    manifest = collect(host, s3, workdir, refs)
    assert manifest["manifest_key"] == f"{PREFIX}manifest.json"
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest["manifest_key"])["Body"].read())
    assert stored == {k: v for k, v in manifest.items() if k != "manifest_key"}
    assert [o["key"] for o in stored["outputs"]] == [f"{PREFIX}images-0.png", f"{PREFIX}images-1.jpg"]
    assert stored["texts"] == {"prompt": "a red vase on oak"}
    assert (stored["job_id"], stored["operation"], stored["provider"]) == ("job-1", "segmentation", "taskpic")
    assert stored["params"] == {"output_type": 1}
    assert host.fetched == ["/r/0", "/r/1"]  # text results fetch nothing


def test_collect_results_provider_content_type_lie_is_recorded_but_bytes_decide(
    host: ResultHost, s3: Any, workdir: Path
) -> None:
    refs = [ResultRef(ResultKind.IMAGE, url=host.serve("/r/x.jpg", PNG, content_type="image/jpeg"))]
    (output,) = collect(host, s3, workdir, refs)["outputs"]
    assert output["content_type"] == "image/png"
    assert output["declared_content_type"] == "image/jpeg"
    assert output["key"].endswith(".png")
    assert s3.head_object(Bucket=BUCKET, Key=output["key"])["ContentType"] == "image/png"


def test_collect_results_eps_vector_is_accepted(host: ResultHost, s3: Any, workdir: Path) -> None:
    refs = [
        ResultRef(ResultKind.VECTOR, url=host.serve("/r/v", EPS, content_type="application/octet-stream"))
    ]
    (output,) = collect(host, s3, workdir, refs)["outputs"]
    assert output["key"] == f"{PREFIX}vector.eps"
    assert output["content_type"] == "application/postscript"
    assert output["width"] is None
    assert s3.get_object(Bucket=BUCKET, Key=output["key"])["Body"].read() == EPS


def test_collect_results_local_file_result_is_stored_and_removed(
    host: ResultHost, s3: Any, workdir: Path
) -> None:
    # A base64 result the provider client already decoded to disk.
    decoded = workdir / "decoded.bin"
    decoded.write_bytes(PNG)
    (output,) = collect(host, s3, workdir, [ResultRef(ResultKind.IMAGE, path=str(decoded))])["outputs"]
    assert output["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert host.fetched == []
    assert list(workdir.iterdir()) == []  # neither the decoded file nor any scratch file is left


def test_collect_results_leaves_no_scratch_files(host: ResultHost, s3: Any, workdir: Path) -> None:
    collect(host, s3, workdir, [ResultRef(ResultKind.IMAGE, url=host.serve("/r/a", PNG))])
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "index", "content_type", "key"),
    [
        (ResultKind.IMAGE, 0, "image/png", "p/image.png"),
        (ResultKind.IMAGE, 2, "image/webp", "p/image-2.webp"),
        (ResultKind.IMAGES, 0, "image/jpeg", "p/images-0.jpg"),
        (ResultKind.GRID, 0, "image/tiff", "p/grid.tif"),
        (ResultKind.IMAGE_1X, 0, "image/gif", "p/image_1x.gif"),
        (ResultKind.VECTOR, 0, "application/postscript", "p/vector.eps"),
        (ResultKind.MASK, 0, "application/x-unknown", "p/mask.bin"),
    ],
)
def test_result_key_is_predictable(kind: ResultKind, index: int, content_type: str, key: str) -> None:
    numbered = kind is ResultKind.IMAGES
    assert result_key("p/", kind.value, index, content_type, numbered=numbered) == key


# --- unavailable and broken results ----------------------------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_collect_results_expired_or_missing_url_raises_result_unavailable(
    host: ResultHost, s3: Any, workdir: Path, status: int
) -> None:
    refs = [
        ResultRef(ResultKind.IMAGE, url=host.serve("/r/gone", b"<Error>AccessDenied</Error>", status=status))
    ]
    with pytest.raises(ResultUnavailableError) as info:
        collect(host, s3, workdir, refs)
    assert info.value.http_status == status
    assert keys(s3) == []  # no manifest for a job whose results are not all there
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Link expired</body></html>",
        b'{"err_code": 1, "err_msg": "no such file"}',
        b"",
        PNG[: len(PNG) // 2],  # the right magic, but it does not decode
        JPEG[: len(JPEG) // 2],
    ],
    ids=["html", "json", "empty", "truncated-png", "truncated-jpeg"],
)
def test_collect_results_body_that_is_not_an_image_raises_result_unavailable(
    host: ResultHost, s3: Any, workdir: Path, body: bytes
) -> None:
    refs = [ResultRef(ResultKind.IMAGE, url=host.serve("/r/x", body, content_type="image/png"))]
    with pytest.raises(ResultUnavailableError) as info:
        collect(host, s3, workdir, refs)
    assert info.value.code == "CorruptResult"
    assert keys(s3) == []


def test_collect_results_body_cut_short_raises_transient(host: ResultHost, s3: Any, workdir: Path) -> None:
    refs = [ResultRef(ResultKind.IMAGE, url=host.serve("/r/cut", CutShort(PNG[:100])))]
    with pytest.raises(TransientError) as info:
        collect(host, s3, workdir, refs)
    assert info.value.code == "Truncated"
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    assert keys(s3) == []
    assert list(workdir.iterdir()) == []


def test_collect_results_client_error_status_raises_transient(
    host: ResultHost, s3: Any, workdir: Path
) -> None:
    refs = [ResultRef(ResultKind.IMAGE, url=host.serve("/r/bad", b"bad request", status=400))]
    with pytest.raises(TransientError) as info:
        collect(host, s3, workdir, refs)
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/stolen.png",  # loopback
        "http://169.254.169.254/latest/meta-data/",  # the metadata service
        "https://evil.example/out.png",  # a public host that is not the provider's
        "https://results.example:8443/out.png",  # the provider's host on another port
        "file:///etc/passwd",
    ],
)
def test_collect_results_url_off_the_providers_result_hosts_is_refused_unfetched(
    host: ResultHost, s3: Any, workdir: Path, url: str
) -> None:
    # GIVEN a status (poll, callback or sync answer) naming a result anywhere else
    refs = [
        ResultRef(ResultKind.IMAGE, url=host.serve("/r/ok.png", PNG)),
        ResultRef(ResultKind.MASK, url=url),
    ]
    # WHEN the results are collected THEN nothing of it is fetched or stored
    with pytest.raises(UnsafeUrlError) as info:
        collect(host, s3, workdir, refs)
    assert info.value.rule in {"a result host of the provider", "http or https"}
    assert host.fetched == ["/r/ok.png"]
    assert not any(k.endswith("manifest.json") for k in keys(s3))
