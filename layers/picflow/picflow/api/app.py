"""The jobs API (API Gateway REST, API key + usage plan): the resolver, one router per resource.

    POST   /uploads          presigned PUT for an input            201 | 4xx
    POST   /jobs             start a job (Idempotency-Key header)  202 new, 200 replay | 409 | 4xx
    GET    /jobs             list (status, operation, since, cursor) 200 | 422
    GET    /jobs/{job_id}    status, timings, cost, results (presigned GETs) 200 | 404
    DELETE /jobs/{job_id}    cancel: mark CANCELLED, stop execution, free slot 200 | 404 | 409
    POST   /batches          a prefix or manifest through an operation or the pipeline  202 | 200 | 409 | 4xx
    GET    /batches/{id}     counts by status, progress, reuse, cost, results manifest 200 | 404
    DELETE /batches/{id}     stop the batch and cancel its unfinished jobs 200 | 404 | 409
    POST   /batches/{id}/pause   drain: items not started end unpaid, started ones finish 200 | 404 | 409
    POST   /batches/{id}/resume  once ended, a batch of the items that did not succeed  202 | 200 | 404 | 409
    GET    /operations       the catalogue, and the pipeline batches run  200

Every refusal has one shape (:mod:`picflow.api.errors`); validation happens before anything is
written or started. Before the body is parsed it is held to :mod:`picflow.core.jsonlimits`: over
256 KiB is 413, nested over 32 levels or with a number over 64 digits is 400 (never a 5xx).
The OpenAPI 3.0 document (``docs/openapi.json``) is written from this resolver
at build time by ``python -m picflow_cli.openapi``.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

from picflow.api import batches, errors, jobs, operations, uploads
from picflow.api.errors import ApiError, error_response
from picflow.api.models import ErrorDetail
from picflow.core.errors import ParamValidationError

__all__ = ["app"]

app = APIGatewayRestResolver(enable_validation=True)
for _router in (errors.router, uploads.router, jobs.router, batches.router, operations.router):
    app.include_router(_router)


def _declared_query_only(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[str]:
    """A query parameter the route does not declare is refused (422), like an unknown body field:
    a misspelt filter (``?stauts=FAILED``) must not silently list everything."""
    # "_route" is how powertools' own validation middleware finds the matched route (pinned 3.23).
    route = resolver.context.get("_route")
    if route is not None:
        declared = {param.alias for param in route.dependant.query_params}
        unknown = sorted(set(resolver.current_event.query_string_parameters or {}) - declared)
        if unknown:
            detail = ErrorDetail(
                type="RequestValidationError",
                message=f"unknown query parameter {unknown[0]!r}",
                field=unknown[0],
                rule=f"one of: {', '.join(sorted(declared))}" if declared else "no query parameters",
            )
            return error_response(422, detail)
    response: Response[str] = next_middleware(resolver)
    return response


app.use(middlewares=[_declared_query_only])

# powertools' request validation parses the body first (its middleware heads every route's stack,
# pinned 3.23): the body's limits are checked before it, so a body too large, too deep or with a
# number too long is refused 413/400 instead of reaching the parser (RecursionError, ValueError).
_parse_and_validate = app._request_validation_middleware


def _body_within_limits(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[str]:
    from picflow.core.jsonlimits import MAX_BODY_BYTES, check_json_text

    event = resolver.current_event
    raw = event.body or ""
    if len(raw) > MAX_BODY_BYTES * (4 / 3 if event.is_base64_encoded else 1):
        raise ApiError(
            413,
            "PayloadTooLarge",
            f"the body is larger than {MAX_BODY_BYTES} bytes",
            field="body",
            rule=f"≤ {MAX_BODY_BYTES} bytes",
        )
    try:
        check_json_text(event.decoded_body or "", field="body")
    except ParamValidationError as exc:
        raise ApiError(400, "InvalidJson", exc.message, field="body", rule=exc.rule) from None
    response: Response[str] = _parse_and_validate(resolver, next_middleware)
    return response


app._request_validation_middleware = _body_within_limits  # type: ignore[assignment]  # a middleware too


@app.not_found
def _no_route(_: Exception) -> Response[str]:
    event = app.current_event
    message = f"no route {event.http_method} {event.path}"
    return error_response(404, ErrorDetail(type="NotFound", message=message))
