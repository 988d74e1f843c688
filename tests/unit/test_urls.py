"""picflow.net.urls: hostile URLs are refused, at check time and again at connect time (no sockets)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from picflow.net import urls
from picflow.net.urls import UnsafeUrlError, check_public_url, open_public, safe_client

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"
# What the fake DNS answers; a name not listed does not resolve.
DNS: dict[str, list[str]] = {
    "images.example.com": [PUBLIC_V4],
    "v6.example.com": [PUBLIC_V6],
    "localhost": ["127.0.0.1", "::1"],
    "internal.example.com": ["10.0.0.5"],
    "metadata.example.com": ["169.254.169.254"],
    "mixed.example.com": [PUBLIC_V4, "192.168.0.10"],
}


def _fake_getaddrinfo(table: dict[str, list[str]]) -> Callable[..., list[Any]]:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for ip in table[host]:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            sockaddr = (ip, port, 0, 0) if family == socket.AF_INET6 else (ip, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    return getaddrinfo


@pytest.fixture(autouse=True)
def _dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", _fake_getaddrinfo(DNS))
    monkeypatch.delenv("PICFLOW_URL_ALLOWLIST", raising=False)


HOSTILE = [
    # schemes, user-info, hosts
    ("file:///etc/passwd", "http or https"),
    ("gopher://images.example.com/", "http or https"),
    ("ftp://images.example.com/a.png", "http or https"),
    ("javascript:alert(1)", "http or https"),
    ("http://user:pw@images.example.com/", "no user-info"),
    ("http://images.example.com@127.0.0.1/", "no user-info"),
    ("http://@images.example.com/", "no user-info"),
    ("http:///a.png", "a host"),
    ("http://:80/a.png", "a host"),
    ("http://images.example.com:99999/", "a well-formed URL"),
    ("http://images.example.com/a b.png", "a well-formed URL"),
    ("http://b\u00fccher.example/", "ASCII host (punycode)"),
    ("http://nxdomain.example/", "a resolvable host"),
    # loopback, unspecified, link-local (instance metadata), private, CGNAT, multicast, reserved
    ("http://127.0.0.1/", "a public host"),
    ("http://127.255.0.9:8080/", "a public host"),
    ("http://localhost:9000/", "a public host"),
    ("http://0.0.0.0/", "a public host"),
    ("http://169.254.169.254/latest/meta-data/", "a public host"),
    ("http://metadata.example.com/", "a public host"),
    ("http://10.0.0.1/", "a public host"),
    ("http://172.16.5.4/", "a public host"),
    ("http://192.168.1.1/", "a public host"),
    ("http://internal.example.com/", "a public host"),
    ("http://mixed.example.com/", "a public host"),
    ("http://100.64.0.1/", "a public host"),
    ("http://100.127.255.254/", "a public host"),
    ("http://224.0.0.1/", "a public host"),
    ("http://240.0.0.1/", "a public host"),
    ("http://255.255.255.255/", "a public host"),
    ("http://192.0.2.1/", "a public host"),
    # IPv6 and the forms that embed IPv4
    ("http://[::1]/", "a public host"),
    ("http://[::]/", "a public host"),
    ("http://[fd00::1]/", "a public host"),
    ("http://[fe80::1]/", "a public host"),
    ("http://[ff02::1]/", "a public host"),
    ("http://[::ffff:127.0.0.1]/", "a public host"),
    ("http://[::ffff:a9fe:a9fe]/", "a public host"),
    ("http://[2002:7f00:1::]/", "a public host"),
    ("http://[64:ff9b::a9fe:a9fe]/", "a public host"),
    ("http://[::127.0.0.1]/", "a public host"),
    # decimal, octal, hex and short spellings of 127.0.0.1 / 169.254.169.254
    ("http://2130706433/", "a public host"),
    ("http://0x7f.1/", "a public host"),
    ("http://0x7f000001/", "a public host"),
    ("http://0177.0.0.1/", "a public host"),
    ("http://017700000001/", "a public host"),
    ("http://127.1/", "a public host"),
    ("http://2852039166/", "a public host"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "a public host"),
    ("http://0/", "a public host"),
    # case, trailing dots, zone ids, more IPv4-in-IPv6 spellings and reserved ranges
    ("HTTP://127.0.0.1/", "a public host"),
    ("http://127.0.0.1./", "a public host"),
    ("http://[fe80::1%25eth0]/", "a public host"),
    ("http://[::ffff:7f00:1]/", "a public host"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "a public host"),
    ("http://[::ffff:169.254.169.254]/", "a public host"),
    ("http://[fc00::1]/", "a public host"),
    ("http://[64:ff9b:1::a9fe:a9fe]/", "a public host"),
    ("http://[2001::1]/", "a public host"),
    ("http://[2001:db8::1]/", "a public host"),
    ("http://[100::1]/", "a public host"),
    ("http://198.18.0.1/", "a public host"),
    # parser confusion: where the host ends is read the way the HTTP client reads it
    ("http://images.example.com\\@127.0.0.1/", "no user-info"),
    ("http://127.0.0.1:80\\@images.example.com/", "no user-info"),
    ("http://127.0.0.1%2f@images.example.com/", "no user-info"),
    ("http://%31%32%37.0.0.1/", "ASCII host (punycode)"),
    ("http://images.example.com%00.127.0.0.1/", "ASCII host (punycode)"),
    ("http://127.0.0.1\t/", "a well-formed URL"),
    (" http://127.0.0.1/", "a well-formed URL"),
]


@pytest.mark.parametrize(("url", "rule"), HOSTILE)
def test_check_public_url_hostile_refused_with_rule(url: str, rule: str) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_public_url(url)
    assert caught.value.rule == rule
    assert caught.value.code == "UnsafeUrl"


@pytest.mark.parametrize(
    "url",
    [
        "https://images.example.com/a.png",
        "http://images.example.com:8080/a.png?x=1",
        f"http://{PUBLIC_V4}/a.png",
        f"http://[{PUBLIC_V6}]/a.png",
        "https://v6.example.com/a.png",
        "HTTPS://IMAGES.EXAMPLE.COM/A.png",
    ],
)
def test_check_public_url_public_accepted_unchanged(url: str) -> None:
    assert check_public_url(url) == url


def test_check_public_url_allowlist_exempts_exact_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the local stack's mock (127.0.0.1:9000) and S3 (any port on localhost) allow-listed
    monkeypatch.setenv("PICFLOW_URL_ALLOWLIST", "127.0.0.1:9000, localhost")
    # THEN exactly those pass, and nothing else loopback does
    assert check_public_url("http://127.0.0.1:9000/img.png")
    assert check_public_url("http://localhost:4566/bucket/key")
    for url in ("http://127.0.0.1:9001/", "http://127.0.0.1/", "http://[::1]:9000/"):
        with pytest.raises(UnsafeUrlError):
            check_public_url(url)


# --- connect time --------------------------------------------------------------------------


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Record every TCP connect httpcore attempts, and fail it (no sockets in unit tests)."""
    seen: list[tuple[Any, ...]] = []

    def create_connection(address: tuple[Any, ...], *args: Any, **kwargs: Any) -> socket.socket:
        seen.append(address)
        raise ConnectionRefusedError("refused by the test")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return seen


def test_safe_client_connects_to_the_address_it_checked(connects: list[tuple[Any, ...]]) -> None:
    with safe_client() as client, pytest.raises(httpx.ConnectError):
        client.get("https://images.example.com/a.png")
    # The checked IP itself, not the name (which a second lookup could answer differently).
    assert connects == [(PUBLIC_V4, 443)]


def test_safe_client_rebinding_to_loopback_refused_at_connect(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[Any, ...]]
) -> None:
    # GIVEN a name that answers a public address first and loopback afterwards (DNS rebinding)
    answers = iter([[PUBLIC_V4], ["127.0.0.1"]])

    def rebinding(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return _fake_getaddrinfo({host: next(answers)})(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = check_public_url("http://rebind.example.com/a.png")
    # WHEN it is fetched THEN the connect-time check refuses and no connection is attempted
    with safe_client() as client, pytest.raises(UnsafeUrlError, match=r"127\.0\.0\.1"):
        client.get(url)
    assert connects == []


def test_safe_client_ignores_proxy_environment(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[Any, ...]]
) -> None:
    # A proxy would make the connect-time check look at the proxy, not the target.
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    with safe_client() as client, pytest.raises(httpx.ConnectError):
        client.get("https://images.example.com/a.png")
    assert connects == [(PUBLIC_V4, 443)]


def test_safe_client_allowlisted_host_connects_by_name(
    monkeypatch: pytest.MonkeyPatch, connects: list[tuple[Any, ...]]
) -> None:
    monkeypatch.setenv("PICFLOW_URL_ALLOWLIST", "localhost:9000")
    with safe_client() as client, pytest.raises(httpx.ConnectError):
        client.get("http://localhost:9000/a.png")
    assert connects == [("localhost", 9000)]


# --- redirects -----------------------------------------------------------------------------


def _redirecting(chain: dict[str, str], final: bytes = b"image-bytes") -> httpx.Client:
    """A client whose server redirects along ``chain`` (URL -> Location) and then answers 200."""
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        requested.append(url)
        if url in chain:
            return httpx.Response(302, headers={"Location": chain[url]})
        return httpx.Response(200, content=final)

    client = httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=False)
    client.requested = requested  # type: ignore[attr-defined]
    return client


def test_open_public_follows_checked_redirects() -> None:
    client = _redirecting(
        {
            "https://images.example.com/a": "/b",
            "https://images.example.com/b": "https://v6.example.com/c",
            "https://v6.example.com/c": f"http://{PUBLIC_V4}/d",
        }
    )
    with open_public(client, "https://images.example.com/a") as response:
        assert response.status_code == 200
        assert response.read() == b"image-bytes"
    assert client.requested[-1] == f"http://{PUBLIC_V4}/d"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "location",
    ["http://169.254.169.254/latest/meta-data/", "http://localhost/", "http://0x7f.1/", "file:///etc/passwd"],
)
def test_open_public_redirect_to_non_public_refused(location: str) -> None:
    client = _redirecting({"https://images.example.com/a": location})
    with pytest.raises(UnsafeUrlError), open_public(client, "https://images.example.com/a"):
        pass
    # The refused target was never requested.
    assert client.requested == ["https://images.example.com/a"]  # type: ignore[attr-defined]


def test_open_public_more_than_three_redirects_refused() -> None:
    chain = {f"https://images.example.com/{i}": f"/{i + 1}" for i in range(4)}
    client = _redirecting(chain)
    with (
        pytest.raises(UnsafeUrlError, match="redirects"),
        open_public(client, "https://images.example.com/0"),
    ):
        pass
    assert len(client.requested) == urls.MAX_REDIRECTS + 1  # type: ignore[attr-defined]
