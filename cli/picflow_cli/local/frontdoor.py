"""The local front door: HTTP requests in, API Gateway (REST, v1 payload) proxy events out.

What ``sam local start-api`` does, without Docker: routes come from the template's own ``Api``
events, requests become proxy events for the function behind the route, and the function's
``{statusCode, headers, body}`` becomes the HTTP response. Routes that require an API key refuse
requests without a known ``x-api-key`` (``LOCAL_API_KEY``, and the keys
:meth:`FrontDoor.add_api_key` adds: one per tenant, as the usage plan holds them) with a 403, as
API Gateway does, and put the key's id in ``requestContext.identity.apiKeyId``; a key made with
``picflow tenants add`` (in moto's API Gateway) is found on its first use. Each key gets the
template's usage plan on its own (:func:`usage_limits`): past its throttle (a token bucket of
``BurstLimit`` refilled at ``RateLimit`` a second) a request is refused 429 ``THROTTLED``, past its
quota (requests a day) 429 ``QUOTA_EXCEEDED``, as API Gateway does. The
provider-callback route is open, as in the template. The gateway's own refusals use the template's
``GatewayResponses`` (``DEFAULT_4XX``/``DEFAULT_5XX`` bodies) when it has them (the door serves
both APIs under one stage, so the first API's templates apply to all).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from picflow_cli.local.runtime import LambdaRuntime

__all__ = [
    "LOCAL_API_KEY",
    "LOCAL_API_KEY_ID",
    "STAGE",
    "FrontDoor",
    "Route",
    "UsageLimits",
    "gateway_templates",
    "routes_from_template",
    "usage_limits",
]

LOCAL_API_KEY = "picflow-local-api-key"  # documented in the README; the local stack only
# Its id: the default tenant's key here (PICFLOW_DEFAULT_TENANT_KEY), as the sample events carry it.
LOCAL_API_KEY_ID = "abcdef1234"
STAGE = "v1"
MAX_BODY = 20 * 1024 * 1024
POLL = 0.05  # seconds between the server loop's looks at a stop request (socketserver's: 0.5)


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # "/jobs/{job_id}"
    function: str
    api_key_required: bool
    pattern: re.Pattern[str]


def routes_from_template(sam: Mapping[str, Any], physical: Mapping[str, str]) -> list[Route]:
    api_auth = {
        logical_id: bool(res.get("Properties", {}).get("Auth", {}).get("ApiKeyRequired", False))
        for logical_id, res in sam["Resources"].items()
        if res["Type"] == "AWS::Serverless::Api"
    }
    routes = []
    for logical_id, res in sam["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        for event in res.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "Api":
                continue
            props = event["Properties"]
            api = props.get("RestApiId", {}).get("Ref", "")
            required = props.get("Auth", {}).get("ApiKeyRequired", api_auth.get(api, False))
            path = str(props["Path"])
            regex = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"
            routes.append(
                Route(
                    str(props["Method"]).upper(),
                    path,
                    physical[logical_id],
                    bool(required),
                    re.compile(regex),
                )
            )
    return routes


def gateway_templates(sam: Mapping[str, Any]) -> dict[str, str]:
    """``DEFAULT_4XX``/``DEFAULT_5XX`` JSON body templates of the template's APIs."""
    out: dict[str, str] = {}
    for res in sam["Resources"].values():
        if res["Type"] != "AWS::Serverless::Api":
            continue
        for kind, response in res.get("Properties", {}).get("GatewayResponses", {}).items():
            template = response.get("ResponseTemplates", {}).get("application/json")
            if template is not None:
                out.setdefault(str(kind), str(template))
    return out


@dataclass(frozen=True)
class UsageLimits:
    """A usage plan's limits, which API Gateway applies to each of its keys on its own."""

    rate: float  # requests a second, steadily
    burst: int  # requests at once
    quota: int | None = None  # requests a day


def usage_limits(sam: Mapping[str, Any]) -> UsageLimits | None:
    """The jobs API's usage plan (``Auth.UsagePlan`` of the template's API that has one)."""
    for res in sam["Resources"].values():
        if res["Type"] != "AWS::Serverless::Api":
            continue
        plan = res.get("Properties", {}).get("Auth", {}).get("UsagePlan") or {}
        throttle, quota = plan.get("Throttle") or {}, plan.get("Quota") or {}
        if not (throttle or quota):
            continue
        if quota and str(quota.get("Period", "DAY")) != "DAY":
            raise ValueError(f"the front door emulates daily quotas only, not {quota.get('Period')}")
        return UsageLimits(
            rate=float(throttle.get("RateLimit", 10_000)),
            burst=int(throttle.get("BurstLimit", 5_000)),
            quota=int(quota["Limit"]) if quota.get("Limit") is not None else None,
        )
    return None


class _Meter:
    """One key's token bucket (the throttle) and its requests of the day (the quota)."""

    def __init__(self, limits: UsageLimits) -> None:
        self.limits = limits
        self.tokens = float(limits.burst)
        self.stamp = time.monotonic()
        self.day = time.gmtime().tm_yday
        self.used = 0

    def refusal(self) -> str | None:
        """None when the request may pass (and is counted), else the gateway's response type."""
        now, day = time.monotonic(), time.gmtime().tm_yday
        if day != self.day:
            self.day, self.used = day, 0
        self.tokens = min(float(self.limits.burst), self.tokens + (now - self.stamp) * self.limits.rate)
        self.stamp = now
        if self.limits.quota is not None and self.used >= self.limits.quota:
            return "QUOTA_EXCEEDED"
        if self.tokens < 1:
            return "THROTTLED"
        self.tokens -= 1
        self.used += 1
        return None


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class FrontDoor:
    def __init__(
        self,
        runtime: LambdaRuntime,
        routes: list[Route],
        host: str = "127.0.0.1",
        templates: Mapping[str, str] | None = None,
        limits: UsageLimits | None = None,
        lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.routes = routes
        self.host = host
        self.templates = dict(templates or {})
        # Key value -> key id, as the usage plan's keys: one per tenant.
        self.api_keys: dict[str, str] = {LOCAL_API_KEY: LOCAL_API_KEY_ID}
        # The plan's limits, per key id (a key added with limits of its own stands for another plan).
        self.limits = limits
        self._key_limits: dict[str, UsageLimits] = {}
        self._meters: dict[str, _Meter] = {}
        self._meter_lock = threading.Lock()
        # Finds a key value made outside this process (`picflow tenants add`): its id, or None.
        self.lookup = lookup
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def add_api_key(self, limits: UsageLimits | None = None) -> tuple[str, str]:
        """A new tenant's key: (value, id), as ``picflow tenants add`` makes one on AWS;
        ``limits``: its own usage plan's instead of the template's."""
        import secrets

        value, key_id = secrets.token_urlsafe(30), secrets.token_hex(5)
        self.api_keys[value] = key_id
        if limits is not None:
            self._key_limits[key_id] = limits
        return value, key_id

    def key_id(self, value: str) -> str | None:
        """The id of the key ``value``: one this door holds, else one ``lookup`` finds (kept)."""
        found = self.api_keys.get(value)
        if found is None and value and self.lookup is not None:
            found = self.lookup(value)
            if found is not None:
                self.api_keys[value] = found
        return found

    def _over_limit(self, key_id: str) -> str | None:
        """The usage plan's verdict for one more request of ``key_id`` (None: it passes)."""
        limits = self._key_limits.get(key_id, self.limits)
        if limits is None:
            return None
        with self._meter_lock:
            meter = self._meters.get(key_id)
            if meter is None or meter.limits != limits:
                meter = self._meters[key_id] = _Meter(limits)
            return meter.refusal()

    def refusal(self, status: int, kind: str, message: str) -> tuple[int, dict[str, str], bytes]:
        """One of the gateway's own answers, rendered as API Gateway renders its templates."""
        template = self.templates.get("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX")
        if template is None:
            return _json(status, {"message": message})
        body = template.replace("$context.error.responseType", kind)
        body = body.replace("$context.error.messageString", json.dumps(message))
        return status, {"Content-Type": "application/json"}, body.encode()

    def dispatch(
        self,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        prefix = f"/{STAGE}"
        if not (split.path == prefix or split.path.startswith(prefix + "/")):
            return self.refusal(404, "RESOURCE_NOT_FOUND", "Not Found")
        path = split.path[len(prefix) :] or "/"
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        route_match = next(((r, m) for r, m in matches if r.method == method), None)
        if route_match is None:
            # API Gateway answers an unknown route with 403 "Missing Authentication Token".
            return self.refusal(
                403 if not matches else 405, "MISSING_AUTHENTICATION_TOKEN", "Missing Authentication Token"
            )
        route, match = route_match
        lower = {k.lower(): v for k, v in headers.items()}
        key_id = self.key_id(lower.get("x-api-key") or "")
        if route.api_key_required and key_id is None:
            return self.refusal(403, "INVALID_API_KEY", "Forbidden")
        if route.api_key_required and key_id is not None:
            over = self._over_limit(key_id)
            if over is not None:
                message = "Limit Exceeded" if over == "QUOTA_EXCEEDED" else "Too Many Requests"
                return self.refusal(429, over, message)
        query = parse_qs(split.query, keep_blank_values=True)
        text_body: str | None
        try:
            text_body, is_b64 = body.decode(), False
        except UnicodeDecodeError:
            text_body, is_b64 = base64.b64encode(body).decode(), True
        event = {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": dict(headers),
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": {k: unquote(v) for k, v in match.groupdict().items()} or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": method,
                "path": split.path,
                "stage": STAGE,
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(time.time() * 1000),
                "identity": {"sourceIp": source_ip, "apiKey": lower.get("x-api-key"), "apiKeyId": key_id},
                "accountId": "123456789012",
                "apiId": "local",
            },
            "body": text_body if body else None,
            "isBase64Encoded": is_b64,
        }
        payload, errored, _ = self.runtime.invoke(route.function, event)
        if errored:
            return self.refusal(502, "INTEGRATION_FAILURE", "Internal server error")
        response = json.loads(payload)
        out_body = response.get("body") or ""
        data = base64.b64decode(out_body) if response.get("isBase64Encoded") else str(out_body).encode()
        out_headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
        for key, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[str(key)] = ", ".join(str(v) for v in values)
        return int(response.get("statusCode", 200)), out_headers, data

    def start(self, port: int = 0) -> str:
        door = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body are two writes: with Nagle's algorithm the body would wait for the
            # client's delayed ACK (40 ms) on a kept-alive connection (local/server.py says more).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    status, headers, data = door.refusal(413, "REQUEST_TOO_LARGE", "Request Too Long")
                else:
                    body = self.rfile.read(length) if length else b""
                    status, headers, data = door.dispatch(
                        self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
                    )
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def __getattr__(self, name: str) -> Any:
                # Every method (do_GET, do_QUERY...) reaches dispatch, which refuses one without
                # a route as the gateway does, never with http.server's HTML 501.
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # http.server's 5 resets bursts of clients; API Gateway does not

        try:
            self._server = Server((self.host, port), Handler)
        except OSError as exc:
            raise OSError(f"the API front door cannot listen on {self.host}:{port}: {exc.strerror}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL}, name="frontdoor", daemon=True
        )
        self._thread.start()
        self.base_url = f"http://{self.host}:{self._server.server_port}/{STAGE}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
