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

URLs a provider names (result URLs in status answers, callbacks and sync answers) pass
:func:`check_result_url`: the rules above, and the host must be one of that provider's result
hosts (its spec's ``result_hosts`` plus ``PICFLOW_RESULT_HOSTS``). Every refusal, whoever named
the URL, is counted as the metric ``UnsafeUrlRefused`` (dimension ``where``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from picflow.core import config
from picflow.core.catalogue import check_image_size
from picflow.core.errors import InvalidRequestError

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_s3 import S3Client

    from picflow.core.catalogue import ProviderSpec
    from picflow.core.params import Params

__all__ = [
    "MAX_REDIRECTS",
    "REFUSED_METRIC",
    "InputUnavailableError",
    "UnsafeUrlError",
    "check_param_urls",
    "check_public_url",
    "check_result_url",
    "count_refusal",
    "fetch_into_s3",
    "open_public",
    "resolve",
    "result_hosts",
    "safe_client",
]

MAX_REDIRECTS = 3
# The metric every refused URL counts in (one EMF line per refusal, dimension "where").
REFUSED_METRIC = "UnsafeUrlRefused"
# httpx is imported where a URL is fetched, not with the rules: the API checks every notify_url
# and URL param but fetches only URL inputs, and an httpx import is ~25 ms of its cold start.
FETCH_TIMEOUT = {"connect": 5.0, "read": 20.0, "write": 20.0, "pool": 5.0}
_DEFAULT_PORT = {"http": 80, "https": 443}
# A host made only of numbers (decimal, 0-octal, 0x-hex) and dots: inet_aton's grammar.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}\.?$", re.IGNORECASE)
_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")
# NAT64 (RFC 6052) embeds an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(InvalidRequestError):
    """A URL picflow refuses to fetch or call; ``rule`` says which check it failed, ``field``
    which param held it (URL-valued params only)."""

    def __init__(self, message: str, *, rule: str, field: str | None = None) -> None:
        super().__init__(message, code="UnsafeUrl")
        self.rule = rule
        self.field = field


class InputUnavailableError(InvalidRequestError):
    """A safe URL that did not give an image: not 200, or no answer at all."""

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message, code="InputUnavailable")
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


def count_refusal(where: str) -> None:
    """Count one refused URL: ``UnsafeUrlRefused`` with the dimension ``where`` (``input``,
    ``notify_url``, ``params``, ``manifest``, ``result``, ``connect``)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    namespace = config.optional("POWERTOOLS_METRICS_NAMESPACE", "picflow")
    with single_metric(name=REFUSED_METRIC, unit=MetricUnit.Count, value=1, namespace=namespace) as metric:
        metric.add_dimension(name="where", value=where)


def _parts(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a well-formed http(s) URL without user-info, else UnsafeUrlError."""
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
    return scheme, host, port if port is not None else _DEFAULT_PORT[scheme]


def check_public_url(url: str, *, checked: set[tuple[str, int]] | None = None, where: str = "input") -> str:
    """``url`` when it is safe to fetch from inside the VPC-less Lambda, else :class:`UnsafeUrlError`
    (counted under ``where``: :func:`count_refusal`).

    ``checked`` remembers the hosts already found public, so checking many URLs on one host
    (a batch manifest) resolves it once; the fetch checks the address again when it connects."""
    try:
        _scheme, host, port = _parts(url)
        if checked is not None and (host, port) in checked:
            return url
        if not _allowed(host, port):
            checked_addresses(host, port)
    except UnsafeUrlError:
        count_refusal(where)
        raise
    if checked is not None:
        checked.add((host, port))
    return url


def check_param_urls(params: Params) -> None:
    """Every URL-valued param of ``params`` (``mask_url``, ``logo_param.logo_url``, ...) as
    :func:`check_public_url` checks an input: the provider would fetch it on picflow's behalf."""
    for field, url in params.url_params():
        try:
            check_public_url(url, where="params")
        except UnsafeUrlError as exc:
            raise UnsafeUrlError(f"{field}: {exc.message}", rule=exc.rule, field=field) from None


def result_hosts(spec: ProviderSpec) -> tuple[str, ...]:
    """The hosts ``spec``'s provider may name for a result: its spec's and PICFLOW_RESULT_HOSTS'."""
    return (*spec.result_hosts, *config.result_hosts(spec.name.value))


def _host_matches(host: str, port: int, default_port: int, entry: str) -> bool:
    """``host:port`` against one entry: ``name``, ``name:port`` or ``*.suffix`` (no port: the
    scheme's default; the wildcard matches one or more labels, never the bare suffix)."""
    name, _, entry_port = entry.lower().partition(":")
    if port != (int(entry_port) if entry_port.isdigit() else default_port):
        return False
    host = host.strip("[]").lower()
    if name.startswith("*."):
        return host.endswith(name[1:]) and len(host) > len(name) - 1
    return host == name


def check_result_url(url: str, spec: ProviderSpec) -> str:
    """``url`` when ``spec``'s provider may name it for a result, else :class:`UnsafeUrlError`
    (counted under ``result``): a well-formed http(s) URL on one of its result hosts
    (:func:`result_hosts`) whose addresses are public (the local stack's allow-list aside)."""
    try:
        scheme, host, port = _parts(url)
        if not any(_host_matches(host, port, _DEFAULT_PORT[scheme], e) for e in result_hosts(spec)):
            raise UnsafeUrlError(
                f"{spec.title} named a result on {host}:{port}, not one of its result hosts",
                rule="a result host of the provider",
            )
        if not _allowed(host, port):
            checked_addresses(host, port)
    except UnsafeUrlError:
        count_refusal("result")
        raise
    return url


# --- fetching -----------------------------------------------------------------------------


@functools.cache
def _checking_transport() -> Callable[[httpx.Limits], httpx.HTTPTransport]:
    """The transport class of :func:`safe_client` (defined on first use: httpx is imported then)."""
    import httpcore
    import httpx

    from picflow.net.http import ssl_context

    class CheckingBackend(httpcore.SyncBackend):
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
            try:
                addresses = checked_addresses(host, port)
            except UnsafeUrlError:
                count_refusal("connect")
                raise
            for ip in addresses:
                try:
                    return super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
                except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                    last = exc
            assert last is not None  # checked_addresses never returns an empty list
            raise last

    class CheckingTransport(httpx.HTTPTransport):
        def __init__(self, limits: httpx.Limits) -> None:
            # One shared TLS context (picflow.net.http.ssl_context): building one per client was ~35 ms each.
            super().__init__(verify=ssl_context(trust_env=False), trust_env=False, limits=limits)
            # httpx exposes no network_backend argument: rebuild its pool with ours.
            self._pool = httpcore.ConnectionPool(
                ssl_context=ssl_context(trust_env=False),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=CheckingBackend(),
            )

    return CheckingTransport


def safe_client(timeout: httpx.Timeout | None = None) -> httpx.Client:
    """An httpx client for user-given URLs: connect-time address checks, no proxies, no redirects."""
    import httpx

    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    return httpx.Client(
        transport=_checking_transport()(limits),
        timeout=timeout or httpx.Timeout(**FETCH_TIMEOUT),
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


def fetch_into_s3(
    s3: S3Client,
    client: httpx.Client,
    url: str,
    *,
    bucket: str,
    key: str,
    max_bytes: int,
    what: str,
    content_types: Collection[str],
) -> str | None:
    """Copy the image at ``url`` to ``bucket``/``key``; returns the object's version id.

    The one way a user-given input URL is read (a job's ``input.url``, a batch's URL items):
    checked (:func:`open_public`), at most ``max_bytes`` read (``what`` names the operation in
    the refusal), spooled to /tmp past 1 MB. Refusals: :class:`UnsafeUrlError`,
    :class:`InputUnavailableError`, ``ParamValidationError`` (size, field ``input``).
    """
    import tempfile

    import httpx

    try:
        with open_public(client, url) as response:
            if response.status_code != 200:
                raise InputUnavailableError(
                    f"the URL answered HTTP {response.status_code}", rule="answers 200"
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit():
                check_image_size(int(declared), max_bytes, what=what, field="input")
            # Spooled: small inputs stay in memory, large ones go to /tmp; never more than limit+1.
            with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as tmp:
                size = 0
                for chunk in response.iter_bytes(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        check_image_size(size, max_bytes, what=what, field="input")
                    tmp.write(chunk)
                check_image_size(size, max_bytes, what=what, field="input")
                tmp.seek(0)
                # The declared type is only a label: Validate sniffs the bytes themselves.
                declared_type = response.headers.get("content-type", "")
                content_type = declared_type if declared_type in content_types else "application/octet-stream"
                out = s3.put_object(Bucket=bucket, Key=key, Body=tmp, ContentType=content_type)
    except httpx.HTTPError as exc:
        raise InputUnavailableError(
            f"the URL could not be fetched ({type(exc).__name__})", rule="reachable"
        ) from None
    return out.get("VersionId")
