"""Every refusal in one shape, ``{"error": {"type", "message", "field", "rule"}}``, rendered here:
400 for a body that is not JSON, 415 for one that is not ``application/json``, 422 for any field
that breaks a rule (request models and the catalogue alike), 404 for unknown ids and routes,
409 for conflicts. The handlers are a router of their own (:data:`router`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from picflow.api.models import ErrorDetail, ErrorResponse
from picflow.core.catalogue import (
    rule_of,
)
from picflow.core.errors import ParamValidationError
from picflow.net import urls

if TYPE_CHECKING:
    pass

__all__ = ["ApiError", "error_response"]

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated


class ApiError(Exception):
    """A refusal with its HTTP status; rendered as the one error shape."""

    def __init__(
        self, status: int, kind: str, message: str, *, field: str | None = None, rule: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.field, self.rule = status, kind, message, field, rule

    @classmethod
    def invalid(cls, exc: ParamValidationError | urls.UnsafeUrlError, field: str) -> ApiError:
        rule = exc.rule
        return cls(422, type(exc).__name__, exc.message, field=field, rule=rule)


logger = Logger(child=True)


def error_response(status: int, detail: ErrorDetail) -> Response[str]:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorResponse(error=detail).model_dump_json(),
    )


def _handles[E: Exception](
    exc: type[E],
) -> Callable[[Callable[[E], Response[str]]], Callable[[E], Response[str]]]:
    """``app.exception_handler``, typed (powertools leaves its return type out)."""
    register: Callable[[Callable[[E], Response[str]]], Callable[[E], Response[str]]] = (
        router.exception_handler(exc)
    )
    return register


@_handles(ApiError)
def _api_error(exc: ApiError) -> Response[str]:
    return error_response(
        exc.status, ErrorDetail(type=exc.kind, message=exc.message, field=exc.field, rule=exc.rule)
    )


@_handles(ParamValidationError)
def _param_error(exc: ParamValidationError) -> Response[str]:
    # Raised by model validators (JobInput) while powertools parses the body.
    return error_response(
        422, ErrorDetail(type=type(exc).__name__, message=exc.message, field=exc.field, rule=exc.rule)
    )


def _field_of(loc: tuple[Any, ...]) -> str:
    where, *path = loc or ("body",)
    if where == "header":
        return "Idempotency-Key" if path == ["idempotency-key"] else ".".join(map(str, path))
    return ".".join(str(p) for p in path) or str(where)


@_handles(RequestValidationError)
def _request_error(exc: RequestValidationError) -> Response[str]:
    first = dict(exc.errors()[0])
    if first.get("type") == "json_invalid":
        detail = ErrorDetail(
            type="InvalidJson", message="the body is not valid JSON", field="body", rule="a JSON object"
        )
        return error_response(400, detail)
    field = _field_of(tuple(first.get("loc") or ()))
    # pydantic's message is safe to echo: it names the rule, never the input value.
    message = f"{field}: {first.get('msg', 'invalid')}"
    return error_response(
        422, ErrorDetail(type="RequestValidationError", message=message, field=field, rule=rule_of(first))
    )


@_handles(UnicodeDecodeError)
def _not_utf8(exc: UnicodeDecodeError) -> Response[str]:
    # powertools decodes the body as UTF-8 before parsing it: bytes that are not are not JSON.
    try:
        router.current_event.decoded_body  # noqa: B018 - the same decode, to tell bad input from a bug
    except UnicodeDecodeError:
        pass
    else:
        raise exc
    detail = ErrorDetail(
        type="InvalidJson", message="the body is not UTF-8 JSON", field="body", rule="a JSON object"
    )
    return error_response(400, detail)


@_handles(NotImplementedError)
def _unsupported_body(exc: NotImplementedError) -> Response[str]:
    # powertools raises NotImplementedError for a body that is neither JSON nor a form.
    if router.current_event.headers.get("content-type", "").startswith(content_types.APPLICATION_JSON):
        raise exc
    detail = ErrorDetail(
        type="UnsupportedMediaType",
        message="send the body as application/json",
        field="Content-Type",
        rule="application/json",
    )
    return error_response(415, detail)


@_handles(Exception)
def _internal_error(exc: Exception) -> Response[str]:
    # A bug, not bad input: log it whole, answer without internals (they can carry URLs and keys).
    logger.exception("unhandled error in the jobs API")
    detail = ErrorDetail(type="InternalError", message="internal error; the request id is in the logs")
    return error_response(500, detail)
