"""TC3-HMAC-SHA256: Tencent Cloud API 3.0 request signing, from the public specification.

    CanonicalRequest = Method, URI, Query, CanonicalHeaders, SignedHeaders, hex(sha256(payload))
    StringToSign     = "TC3-HMAC-SHA256", Timestamp, Date/Service/tc3_request, hex(sha256(CanonicalRequest))
    (each joined with "\\n")
    SecretDate       = HMAC("TC3" + SecretKey, Date)
    SecretService    = HMAC(SecretDate, Service)
    SecretSigning    = HMAC(SecretService, "tc3_request")
    Signature        = hex(HMAC(SecretSigning, StringToSign))

``Date`` is the UTC date (YYYY-MM-DD) of the ``X-TC-Timestamp``; Tencent rejects a
timestamp more than five minutes off (AuthFailure.SignatureExpire). Only ``content-type``
and ``host`` are signed, as the official SDKs do. Everything here is a pure function of its
inputs, so a signature is reproducible from (secret, timestamp, host, payload).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from picflow.providers.base import Secret

__all__ = [
    "ALGORITHM",
    "SIGNED_HEADERS",
    "authorization",
    "canonical_request",
    "credential_scope",
    "signature",
    "signing_key",
    "string_to_sign",
    "utc_date",
]

ALGORITHM = "TC3-HMAC-SHA256"
SIGNED_HEADERS = "content-type;host"


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def utc_date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def credential_scope(timestamp: int, service: str) -> str:
    return f"{utc_date(timestamp)}/{service}/tc3_request"


def canonical_request(
    *, method: str, uri: str, query: str, content_type: str, host: str, payload: bytes
) -> str:
    # The specification: names and values lowercased and trimmed, one "name:value\n" per
    # header in name order. The values must otherwise be exactly those sent.
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join((method.upper(), uri, query, headers, SIGNED_HEADERS, _sha256_hex(payload)))


def string_to_sign(*, timestamp: int, service: str, canonical: str) -> str:
    scope = credential_scope(timestamp, service)
    return "\n".join((ALGORITHM, str(timestamp), scope, _sha256_hex(canonical.encode("utf-8"))))


def signing_key(secret_key: Secret, date: str, service: str) -> bytes:
    secret_date = _hmac(("TC3" + secret_key.reveal()).encode("utf-8"), date)
    secret_service = _hmac(secret_date, service)
    return _hmac(secret_service, "tc3_request")


def signature(secret_key: Secret, *, timestamp: int, service: str, to_sign: str) -> str:
    key = signing_key(secret_key, utc_date(timestamp), service)
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    secret_id: Secret,
    secret_key: Secret,
    *,
    service: str,
    host: str,
    content_type: str,
    payload: bytes,
    timestamp: int,
    method: str = "POST",
    uri: str = "/",
    query: str = "",
) -> str:
    """The ``Authorization`` header value for one request.

    ``host`` and ``content_type`` must be exactly the header values sent, and ``payload``
    the exact body bytes: the server recomputes the signature from what it received.
    """
    canonical = canonical_request(
        method=method, uri=uri, query=query, content_type=content_type, host=host, payload=payload
    )
    to_sign = string_to_sign(timestamp=timestamp, service=service, canonical=canonical)
    sig = signature(secret_key, timestamp=timestamp, service=service, to_sign=to_sign)
    return (
        f"{ALGORITHM} Credential={secret_id.reveal()}/{credential_scope(timestamp, service)}, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )
