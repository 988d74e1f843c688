"""What the routers share: presigned URLs, the Idempotency-Key header, OpenAPI responses."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel

from picflow.api.errors import ApiError
from picflow.api.models import ErrorResponse
from picflow.aws.services import services
from picflow.core import config
from picflow.net import urls

if TYPE_CHECKING:
    import httpx
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

__all__ = [
    "API_KEY_SCHEME",
    "CANCEL_NOTE",
    "JOB_ID",
    "RESULT_URL_TTL_DEFAULT",
    "UPLOAD_URL_TTL",
    "bad_cursor",
    "conflict",
    "fetch_client",
    "idempotency_header",
    "owner",
    "presign",
    "request_fingerprint",
    "reset_clients",
    "responses",
    "start_responses",
    "tenant_of",
]

UPLOAD_URL_TTL = 900


RESULT_URL_TTL_DEFAULT = config.RESULT_URL_TTL_DEFAULT


API_KEY_SCHEME = "api_key"


JOB_ID = r"^[A-Za-z0-9_-]{1,80}$"


CANCEL_NOTE = (
    "No provider offers an upstream cancel: a task already submitted may still run and be billed; "
    "its result is not collected."
)


@functools.cache
def fetch_client() -> httpx.Client:
    return urls.safe_client()


def reset_clients() -> None:
    """Forget cached clients (tests start a new moto mock per test)."""
    fetch_client.cache_clear()


def responses(ok: int, description: str, *errors: int, also: dict[int, Any] | None = None) -> dict[int, Any]:
    """OpenAPI responses of one route; built per call because powertools edits them in place."""
    out: dict[int, Any] = {ok: {"description": description}, **(also or {})}
    reasons = {
        400: "Body is not JSON",
        403: "No valid API key (API Gateway's answer, in the same shape)",
        404: "Not found",
        409: "Conflict",
        415: "Body is not application/json",
        422: "A field breaks a rule",
        429: "Over the key's throttle or daily quota (API Gateway's answer, in the same shape)",
    }
    # 403, 422 and 429 can answer any route: no key, a bad field, a tenant over its usage plan.
    for code in (*errors, 403, 422, 429):
        out[code] = {
            "description": reasons[code],
            "content": {content_types.APPLICATION_JSON: {"model": ErrorResponse}},
        }
    return out


def idempotency_header(what: str) -> Any:
    return Header(
        alias="idempotency-key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=f"Retry-safe key: the same key and body return the same {what}.",
    )


def start_responses(what: str, model: type[BaseModel]) -> dict[int, Any]:
    replay = {
        "description": f"Idempotency-Key replay: the {what} this key started",
        "content": {content_types.APPLICATION_JSON: {"model": model}},
    }
    return responses(202, f"{what.capitalize()} started", 400, 409, 415, also={200: replay})


def request_fingerprint(body: BaseModel) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def bad_cursor() -> ApiError:
    """A list's ``cursor`` this API did not hand out (forged, truncated, another list's)."""
    return ApiError(
        422,
        "RequestValidationError",
        "cursor is not one this API returned",
        field="cursor",
        rule="a cursor from a previous page",
    )


def conflict() -> ApiError:
    return ApiError(
        409,
        "IdempotencyConflict",
        "this Idempotency-Key was used with a different request",
        field="Idempotency-Key",
        rule="one request per key",
    )


def presign(bucket: str, key: str, ttl: int) -> str:
    return services().presigner.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl
    )


def tenant_of(event: BaseProxyEvent) -> str:
    """The caller's tenant: the id of its API key, which API Gateway puts in the request context
    (one key per tenant in the usage plan: ``picflow tenants add``). The template's own key
    (PICFLOW_DEFAULT_TENANT_KEY) is the default tenant, which owns S3-triggered jobs."""
    from picflow.core.names import DEFAULT_TENANT

    identity = (event.raw_event.get("requestContext") or {}).get("identity") or {}
    key_id = identity.get("apiKeyId")
    if not key_id:
        # Every jobs route requires a key at the gateway: a request without one is refused here too.
        raise ApiError(403, "Forbidden", "no API key in the request", field="x-api-key", rule="an API key")
    if key_id == config.optional(config.DEFAULT_TENANT_KEY):
        return DEFAULT_TENANT
    from picflow.core.names import TENANT_ID

    if not TENANT_ID.match(str(key_id)) or key_id == DEFAULT_TENANT:
        # A key id names the tenant's S3 root (tenants/<id>/): never a path, never the default's name.
        raise ApiError(
            403, "Forbidden", "the API key id is not a tenant id", field="x-api-key", rule="an API key"
        )
    return str(key_id)


def owner(record: Mapping[str, Any]) -> str:
    """The tenant a job record (or a batch's request) belongs to; from before tenants: the default."""
    from picflow.core.names import DEFAULT_TENANT

    return str(record.get("tenant") or DEFAULT_TENANT)
