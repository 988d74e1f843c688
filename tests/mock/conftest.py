"""Fixtures for the mock upstream's own tests: a loopback client, sample images, a TC3 signer."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from tc3sign import tc3_headers

SAMPLES = Path(__file__).resolve().parents[2] / "mock_upstream" / "samples"
BEARER = {"Authorization": "Bearer sk-xxxx"}


@pytest.fixture
def client(mock_upstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mock_upstream.base_url, timeout=10.0, trust_env=False) as c:
        yield c


@pytest.fixture
def sample() -> Callable[[str], bytes]:
    return lambda name: (SAMPLES / name).read_bytes()


def make_png(size: tuple[int, int], color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    image = Image.new("RGB", size, (240, 240, 240))
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), color), (size[0] // 4, size[1] // 4))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def png() -> Callable[..., bytes]:
    return make_png


@pytest.fixture
def tc3() -> Callable[..., dict[str, str]]:
    return tc3_headers


@pytest.fixture
def tencent(client, mock_upstream) -> Callable[..., dict[str, Any]]:
    """POST a signed ReplaceBackground; returns the parsed `Response` object."""

    def call(params: dict[str, Any], **sign: Any) -> dict[str, Any]:
        body = json.dumps(params).encode()
        host = mock_upstream.base_url.removeprefix("http://")
        timestamp = sign.pop("timestamp", int(mock_upstream.now()))
        headers = tc3_headers(host, body, timestamp=timestamp, **sign)
        response = client.post("/", content=body, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        return response.json()["Response"]

    return call
