"""User-given URLs (``input.url``, ``notify_url``) without server-side request forgery.

A URL is fetched only when it is http(s), has no user-info, and its host resolves to public
addresses only: loopback, private, CGNAT, link-local (the instance metadata service at
169.254.169.254), multicast, reserved and unspecified addresses are refused, and so are the
IPv6 forms that embed one (IPv4-mapped, 6to4, Teredo, NAT64). Numeric hosts are read the way
``inet_aton`` reads them (``2130706433``, ``0x7f.1``, ``0177.0.0.1`` are all 127.0.0.1), so no
spelling of an address slips past the check.

Checking a name once and then letting the HTTP client resolve it again leaves a DNS-rebinding
window. :func:`safe_client` closes it: its network backend resolves, checks and connects to the
checked address itself (TLS still verifies the certificate for the name), and it never follows
redirects on its own; :func:`open_public` follows at most :data:`MAX_REDIRECTS`, checking each.

``PICFLOW_URL_ALLOWLIST`` (``host`` or ``host:port``, comma-separated) exempts the local stack's
own endpoints (mock upstream, S3) from the address rules; nothing else does.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from picflow import config
from picflow.errors import InvalidRequestError

__all__ = ["MAX_REDIRECTS", "UnsafeUrlError", "check_public_url", "open_public", "resolve", "safe_client"]

MAX_REDIRECTS = 3
FETCH_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=20.0, pool=5.0)
_DEFAULT_PORT = {"http": 80, "https": 443}
# A host made only of numbers (decimal, 0-octal, 0x-hex) and dots: inet_aton's grammar.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")
# NAT64 (RFC 6052) embeds an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(InvalidRequestError):
    """A URL picflow refuses to fetch or call; ``rule`` says which check it failed."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, code="UnsafeUrl")
        self.rule = rule


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client address is the one traffic reaches
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = _non_public_reason(inner)
            return f"embeds {inner}: {reason}" if reason else None
    checks = (
        ("is_loopback", "loopback"),
        ("is_unspecified", "unspecified"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attr, reason in checks:
        if getattr(ip, attr):
            return reason
    # is_global also excludes shared address space (CGNAT 100.64/10) and documentation ranges.
    return None if ip.is_global else "not globally routable"


def _numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    if not _NUMERIC_HOST.match(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except OSError:
        raise UnsafeUrlError(f"{host!r} is not a valid address", rule="a valid host") from None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for: a literal (in any spelling) or what DNS answers."""
    bare = host.strip("[]")
    try:
        return [ipaddress.ip_address(bare)]
    except ValueError:
        pass
    numeric = _numeric_ipv4(bare)
    if numeric is not None:
        return [numeric]
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnsafeUrlError(f"host {host!r} does not resolve", rule="a resolvable host") from None
    addresses: list[IPAddress] = []
    for info in infos:
        # sockaddr[0] may carry an IPv6 zone ("fe80::1%eth0"); ip_address accepts it.
        address = ipaddress.ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeUrlError(f"host {host!r} does not resolve", rule="a resolvable host")
    return addresses


def _allowlist() -> set[tuple[str, int | None]]:
    entries: set[tuple[str, int | None]] = set()
    for raw in config.optional(config.URL_ALLOWLIST).split(","):
        item = raw.strip().lower()
        if not item:
            continue
        parsed = urlsplit(f"//{item}")
        if parsed.hostname:
            entries.add((parsed.hostname, parsed.port))
    return entries


def _allowed(host: str, port: int) -> bool:
    allow = _allowlist()
    name = host.strip("[]").lower()
    return (name, port) in allow or (name, None) in allow


def checked_addresses(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` when every one of them is public (all, not any: a name with
    one public and one internal record must not be a coin toss)."""
    addresses = resolve(host, port)
    for ip in addresses:
        reason = _non_public_reason(ip)
        if reason:
            raise UnsafeUrlError(f"host {host!r} resolves to {ip} ({reason})", rule="a public host")
    return addresses


def check_public_url(url: str) -> str:
    """``url`` when it is safe to fetch from inside the VPC-less Lambda, else :class:`UnsafeUrlError`."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise UnsafeUrlError("the URL contains whitespace or control characters", rule="a well-formed URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrlError("the URL cannot be parsed", rule="a well-formed URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT:
        raise UnsafeUrlError(f"scheme {parts.scheme!r} is not allowed", rule="http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeUrlError("the URL must not carry user-info", rule="no user-info")
    host = parts.hostname
    if not host:
        raise UnsafeUrlError("the URL has no host", rule="a host")
    if not (_HOST_CHARS.match(host) or parts.netloc.startswith("[")):
        # Parsers disagree about exotic hosts (unicode, '\\', '%'): accept only the plain form.
        raise UnsafeUrlError(
            f"host {host!r} is not a plain DNS name or address", rule="ASCII host (punycode)"
        )
    port = port if port is not None else _DEFAULT_PORT[scheme]
    if not _allowed(host, port):
        checked_addresses(host, port)
    return url


# --- fetching -----------------------------------------------------------------------------


class _CheckingBackend(httpcore.SyncBackend):
    """Resolves and checks at connect time, then connects to the checked address itself."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if _allowed(host, port):
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        last: Exception | None = None
        for ip in checked_addresses(host, port):
            try:
                return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # checked_addresses never returns an empty list
        raise last


class _CheckingTransport(httpx.HTTPTransport):
    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx exposes no network_backend argument: rebuild its pool with ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_CheckingBackend(),
        )


def safe_client(timeout: httpx.Timeout = FETCH_TIMEOUT) -> httpx.Client:
    """An httpx client for user-given URLs: connect-time address checks, no proxies, no redirects."""
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    return httpx.Client(
        transport=_CheckingTransport(limits),
        timeout=timeout,
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "picflow/0.1 (+fetching a user-given input)"},
    )


@contextmanager
def open_public(
    client: httpx.Client, url: str, *, max_redirects: int = MAX_REDIRECTS
) -> Iterator[httpx.Response]:
    """GET ``url`` as a stream, following at most ``max_redirects`` redirects, each checked."""
    current = check_public_url(url)
    for _ in range(max_redirects + 1):
        response = client.send(client.build_request("GET", current), stream=True)
        location = response.headers.get("location")
        if response.is_redirect and location:
            response.close()
            current = check_public_url(str(response.url.join(location)))
            continue
        try:
            yield response
        finally:
            response.close()
        return
    raise UnsafeUrlError(f"more than {max_redirects} redirects", rule=f"at most {max_redirects} redirects")
