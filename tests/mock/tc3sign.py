"""An independent TC3-HMAC-SHA256 signer for the tests (the SDK test cross-checks the mock's verifier)."""

from __future__ import annotations

import datetime
import hashlib
import hmac

SECRET_ID = "AKIDMOCKUPSTREAM"
SECRET_KEY = "mock-upstream-secret-key"


def tc3_headers(
    host: str,
    body: bytes,
    *,
    timestamp: int,
    secret_id: str = SECRET_ID,
    secret_key: str = SECRET_KEY,
    action: str = "ReplaceBackground",
    version: str = "2022-12-29",
    region: str = "ap-guangzhou",
    service: str = "aiart",
) -> dict[str, str]:
    """An independent TC3-HMAC-SHA256 signer (the SDK test cross-checks the mock's verifier)."""
    date = datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:application/json\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"

    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing = h(h(h(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": version,
        "X-TC-Region": region,
        "X-TC-Timestamp": str(timestamp),
        "Authorization": (
            f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        ),
    }
