"""The jobs API's OpenAPI 3.0 document (``docs/openapi.json``), written at build time.

powertools writes OpenAPI 3.1 from the resolver's routes and models; API Gateway imports only 3.0,
so the document is converted here: a build step, not code the API's Lambda carries.
``python -m picflow_cli.openapi [path]`` writes it (tests/unit/test_api.py checks it is current).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from picflow.api.app import app
from picflow.api.common import API_KEY_SCHEME

__all__ = ["openapi_document", "write_openapi"]

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")


_SCHEMA_ONE = ("items", "additionalProperties", "not")


def _schema_30(schema: Any) -> Any:
    """One JSON Schema (2020-12, as pydantic writes it) as an OpenAPI 3.0 Schema Object."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _schema_30(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_schema_30(sub) for sub in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = _schema_30(value)
        elif key != "$schema":
            out[key] = value
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if "examples" in out:
        examples = out.pop("examples")
        if isinstance(examples, list) and examples:
            out["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain] = out.pop(bound)
            out[bound] = True
    if isinstance(out.get("type"), list):
        types = [t for t in out["type"] if t != "null"]
        if len(types) < len(out["type"]):
            out["nullable"] = True
        out["type"] = types[0] if len(types) == 1 else types
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and any(o == {"type": "null"} for o in options):
            rest = [o for o in options if o != {"type": "null"}]
            del out[key]
            out["nullable"] = True
            if len(rest) == 1 and "$ref" not in rest[0]:
                out = {**rest[0], **out}
            elif len(rest) == 1:
                out["allOf"] = rest  # 3.0 ignores siblings of $ref, so wrap it
            else:
                out[key] = rest
    if "$ref" in out and len(out) > 1:
        # 3.0 ignores every sibling of $ref (a description, a default): keep them beside an allOf.
        out = {**{k: v for k, v in out.items() if k != "$ref"}, "allOf": [{"$ref": out["$ref"]}]}
    return out


def _type_nullable_refs(node: Any, schemas: Mapping[str, Any]) -> None:
    """3.0 counts ``nullable`` only beside a ``type`` (3.0.3's clarification; redocly's
    nullable-type-sibling): a nullable ``allOf: [$ref]`` gets the type of the schema it names."""
    if isinstance(node, dict):
        refs = node.get("allOf")
        if node.get("nullable") and "type" not in node and isinstance(refs, list) and len(refs) == 1:
            target = schemas.get(str(refs[0].get("$ref", "")).removeprefix("#/components/schemas/"), {})
            if "type" in target:
                node["type"] = target["type"]
        for value in node.values():
            _type_nullable_refs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _type_nullable_refs(value, schemas)


def _to_30(node: Any, *, in_schema: bool = False) -> Any:
    if in_schema:
        return _schema_30(node)
    if isinstance(node, dict):
        return {
            k: {name: _schema_30(sub) for name, sub in v.items()}
            if k == "schemas"
            else _to_30(v, in_schema=k == "schema")
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_to_30(v) for v in node]
    return node


def _referenced(doc: Any) -> set[str]:
    text = json.dumps(doc)
    return set(re.findall(r'"#/components/schemas/([^"]+)"', text))


_NOTICE_HEADERS = (
    ("webhook-id", "The notice's id (`{job_id}-{status}`): the same on every retry, to deduplicate."),
    ("webhook-timestamp", "Unix seconds when it was signed; refuse it more than 300 s from now."),
    (
        "webhook-signature",
        "`v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}.{body}'>` with the notify "
        "signing key; space-separated when several keys sign. Compare in constant time.",
    ),
)


def _add_notice_callbacks(doc: dict[str, Any]) -> None:
    """The signed completion notice (:class:`picflow.core.results.Notice`) as a ``callbacks``
    object on every operation whose request body takes ``notify_url``."""
    from picflow.core.results import Notice
    from pydantic import TypeAdapter

    schemas = doc["components"]["schemas"]
    raw = TypeAdapter(Notice).json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in raw.pop("$defs", {}).items():
        schemas.setdefault(name, _schema_30(sub))
    schemas["Notice"] = _schema_30(raw)
    _type_nullable_refs(schemas, schemas)
    notice = {
        "post": {
            "summary": "The signed completion notice",
            "description": "POSTed to notify_url once the job ends (SUCCEEDED, FAILED or CANCELLED); "
            "retried on 429/5xx and lost answers, so it may arrive twice with one webhook-id. "
            "README: verifying a notice.",
            "operationId": "jobNotice",
            "security": [],
            "parameters": [
                {
                    "name": name,
                    "in": "header",
                    "required": True,
                    "description": text,
                    "schema": {"type": "string"},
                }
                for name, text in _NOTICE_HEADERS
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Notice"}}},
            },
            "responses": {
                "2XX": {"description": "Received."},
                "4XX": {
                    "description": "Refused (a bad signature, a stale timestamp): not sent again (429 is)."
                },
                "5XX": {"description": "Not received: sent again, a few times within seconds."},
            },
        }
    }
    for item in doc["paths"].values():
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = str(body.get("schema", {}).get("$ref", "")).removeprefix("#/components/schemas/")
            if "notify_url" in schemas.get(ref, {}).get("properties", {}):
                operation["callbacks"] = {"jobNotice": {"{$request.body#/notify_url}": notice}}


def openapi_document() -> dict[str, Any]:
    """The API as OpenAPI 3.0.3: powertools writes 3.1, API Gateway imports only 3.0."""
    # powertools' OpenAPI document models take ~70 ms to build; requests never need them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, License

    raw = json.loads(
        app.get_openapi_json_schema(
            title="picflow jobs API",
            version="1.0.0",
            description="AI image jobs: upload, start, follow and cancel. Every route needs an API key "
            "(x-api-key header); errors are {error: {type, message, field, rule}}.",
            security_schemes={API_KEY_SCHEME: APIKey(name="x-api-key", in_=APIKeyIn.header)},
            security=[{API_KEY_SCHEME: []}],
            # No open licence is declared for picflow (pyproject has none).
            license_info=License(name="Proprietary"),
        )
    )
    doc: dict[str, Any] = _to_30(raw)
    _type_nullable_refs(doc, doc["components"]["schemas"])
    doc["openapi"] = "3.0.3"
    doc["x-amazon-apigateway-api-key-source"] = "HEADER"
    for item in doc["paths"].values():
        for operation in item.values():
            operation["security"] = [{API_KEY_SCHEME: []}]
            operation["responses"] = dict(sorted(operation["responses"].items()))
    _add_notice_callbacks(doc)
    # Our error handlers replace powertools' 422 shapes: keep only schemas the paths reach.
    schemas = doc["components"]["schemas"]
    reached: set[str] = set()
    frontier = _referenced(doc["paths"])
    while frontier:
        reached |= frontier
        frontier = {ref for name in frontier for ref in _referenced(schemas[name])} - reached
    doc["components"]["schemas"] = {k: v for k, v in schemas.items() if k in reached}
    return doc


def write_openapi(path: str = "docs/openapi.json") -> str:
    text = json.dumps(openapi_document(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


if __name__ == "__main__":
    import sys

    write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json")
