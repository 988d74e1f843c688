"""A small typed client for the jobs API (``docs/openapi.json``), on an injected ``httpx.Client``.

Where the API is: ``--api-url``/``--api-key``, else ``$PICFLOW_API_URL``/``$PICFLOW_API_KEY``,
else the state file of a running ``picflow local up`` (:func:`resolve_endpoint`).

httpx's exceptions and the API's refusals become :mod:`picflow_cli.errors` here and nowhere
else. Reads (and POSTs that are safe to repeat: ``/uploads`` only presigns, ``/jobs`` and
``/batches`` always carry an Idempotency-Key; a batch's pause and resume are idempotent) are retried
a few times on connect errors, 429 and 502-504, with ``Retry-After`` honoured up to a short cap; a
cancel or a stop is never retried.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

import httpx
from picflow.core.results import ResultView

from picflow_cli import settings
from picflow_cli.errors import ApiError, ConfigError, TransportError
from picflow_cli.local.state import read_state

__all__ = [
    "BatchCreated",
    "BatchPaused",
    "BatchStopped",
    "BatchView",
    "CancelResult",
    "Endpoint",
    "JobCreated",
    "JobList",
    "JobSummary",
    "JobView",
    "PicflowClient",
    "ResultView",
    "UploadSlot",
    "resolve_endpoint",
]

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
ATTEMPTS = 3
RETRY_CAP_S = 5.0


# --- response shapes (the OpenAPI document's schemas) --------------------------------------
# A stored result (ResultView) is the layer's own shape, picflow.core.results: the API validates
# its answers against it and writes it into docs/openapi.json, so this client cannot drift from it.


class UploadSlot(TypedDict):
    upload_id: str
    key: str
    url: str
    method: str
    headers: dict[str, str]
    expires_in: int


class JobCreated(TypedDict):
    job_id: str
    status: str
    created: bool
    links: dict[str, str]


class _JobHead(TypedDict):
    job_id: str
    status: str
    operation: str
    source: NotRequired[str | None]


class JobSummary(_JobHead):
    created_at: NotRequired[str | None]
    completed_at: NotRequired[str | None]


class JobList(TypedDict):
    jobs: list[JobSummary]
    cursor: NotRequired[str | None]


class JobView(_JobHead):
    provider: NotRequired[str | None]
    style: NotRequired[str | None]
    params: dict[str, Any]
    progress: NotRequired[int | None]
    polls: int
    timings: dict[str, Any]
    cost: dict[str, Any]
    error: NotRequired[dict[str, Any] | None]
    results: list[ResultView]
    texts: dict[str, str]
    manifest_url: NotRequired[str | None]
    links: dict[str, str]


class CancelResult(TypedDict):
    job_id: str
    status: str
    execution_stopped: bool
    slot_released: bool
    upstream_cancelled: bool
    note: str


class BatchCreated(TypedDict):
    batch_id: str
    status: str
    created: bool
    total: int
    max_concurrency: int
    resumed_from: NotRequired[str | None]
    links: dict[str, str]


class BatchSummary(TypedDict):
    batch_id: str
    tenant: NotRequired[str]
    status: str
    operation: str
    total: int
    created_at: NotRequired[str | None]
    resumed_from: NotRequired[str | None]


class BatchList(TypedDict):
    batches: list[BatchSummary]
    cursor: NotRequired[str | None]


class BatchView(TypedDict):
    batch_id: str
    status: str
    operation: str
    params: dict[str, Any]
    source: dict[str, str]
    total: int
    counts: dict[str, int]
    done: int
    progress: float
    reused: int
    cost: dict[str, Any]
    max_concurrency: int
    tolerated_failure_percentage: float
    results_key: NotRequired[str | None]
    results_bucket: NotRequired[str | None]
    results_url: NotRequired[str | None]
    error: NotRequired[dict[str, Any] | None]
    paused: NotRequired[bool]
    paused_at: NotRequired[str | None]
    resumed_from: NotRequired[str | None]
    links: dict[str, str]


class BatchPaused(TypedDict):
    batch_id: str
    status: str
    paused: bool
    paused_at: str
    note: str


class BatchStopped(TypedDict):
    batch_id: str
    status: str
    execution_stopped: bool
    jobs_cancelled: int
    note: str


# --- where the API is ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    api_url: str
    api_key: str
    origin: str  # "--api-url", "$PICFLOW_API_URL" or the state file: named in errors


def resolve_endpoint(
    api_url: str | None, api_key: str | None, state_file: Path, env: Mapping[str, str] | None = None
) -> Endpoint:
    env = os.environ if env is None else env
    url = api_url or env.get(settings.API_URL_ENV) or None
    key = api_key or env.get(settings.API_KEY_ENV) or None
    if url is not None:
        origin = "--api-url" if api_url else f"${settings.API_URL_ENV}"
        if key is None:
            state = read_state(state_file)
            if state is not None and state.api_url.rstrip("/") == url.rstrip("/"):
                key = state.api_key
        if key is None:
            raise ConfigError(f"no API key for {url}: pass --api-key or set ${settings.API_KEY_ENV}")
        return Endpoint(url.rstrip("/"), key, origin)
    state = read_state(state_file)
    if state is None:
        raise ConfigError(
            "no jobs API to talk to: pass --api-url and --api-key, set "
            f"${settings.API_URL_ENV} and ${settings.API_KEY_ENV}, or start one with `picflow local up`"
        )
    if not state.running:
        raise ConfigError(
            f"the local stack in {state_file} is not running (pid {state.pid} is gone): "
            "start it with `picflow local up`"
        )
    return Endpoint(state.api_url.rstrip("/"), key or state.api_key, str(state_file))


# --- the client ----------------------------------------------------------------------------


# API Gateway's own refusals of a request without a valid key (or to no route), by response type.
_GATEWAY_KEY_REFUSALS = frozenset({"INVALID_API_KEY", "MISSING_AUTHENTICATION_TOKEN"})
_KEY_HINT = f": check the API key (--api-key, ${settings.API_KEY_ENV}) and the URL"


def _api_error(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("x-amzn-requestid") or response.headers.get("x-amz-apigw-id")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        said = str(err.get("message") or response.reason_phrase)
        if err.get("type") in _GATEWAY_KEY_REFUSALS:
            said += _KEY_HINT
        return ApiError(
            response.status_code,
            str(err.get("type") or "Error"),
            said,
            field=err.get("field"),
            rule=err.get("rule"),
            request_id=request_id,
        )
    # API Gateway's own refusals: {"message": "Forbidden"} for a wrong key, and so on.
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message or response.text or response.reason_phrase).strip().splitlines()
    message = text[0][:200] if text else response.reason_phrase
    if response.status_code == 403 and message in ("Forbidden", "Missing Authentication Token"):
        message += _KEY_HINT
    return ApiError(response.status_code, response.reason_phrase or "Error", message, request_id=request_id)


def _retry_after(response: httpx.Response | None, attempt: int) -> float:
    if response is not None:
        try:
            seconds = float(str(response.headers.get("retry-after", "")))
            return max(0.0, min(seconds, RETRY_CAP_S))
        except ValueError:
            pass
    return min(0.5 * 2.0**attempt, RETRY_CAP_S)


class PicflowClient:
    """The jobs API. ``http`` is the seam: tests pass an ``httpx.Client`` on a MockTransport.

    The API key goes on API requests only, never on the presigned S3 URLs.
    """

    def __init__(self, endpoint: Endpoint, http: httpx.Client | None = None) -> None:
        self.endpoint = endpoint
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=TIMEOUT)
        self._headers = {"x-api-key": endpoint.api_key, "accept": "application/json"}

    def close(self) -> None:
        if self._owns_http:  # an injected client belongs to whoever made it
            self._http.close()

    def __enter__(self) -> PicflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        retry: bool,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, retried when ``retry``; transport errors become TransportError."""
        attempts = ATTEMPTS if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if not last:
                    time.sleep(_retry_after(None, attempt))
                    continue
                raise TransportError(f"cannot reach {_where(url)}: {_reason(exc)}") from exc
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(_retry_after(response, attempt))
                continue
            return response
        raise AssertionError("unreachable")

    def _api(
        self,
        method: str,
        path: str,
        *,
        retry: bool = True,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        url = f"{self.endpoint.api_url}{path}"
        response = self._send(
            method, url, retry=retry, headers={**self._headers, **(headers or {})}, **kwargs
        )
        if response.status_code >= 400:
            raise _api_error(response)
        try:
            return response.json()
        except ValueError as exc:
            raise TransportError(
                f"{method} {path}: the API answered {response.status_code} without JSON"
            ) from exc

    # --- routes ---------------------------------------------------------------------

    def operations(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._api("GET", "/operations")["operations"])

    def create_upload(self, filename: str, content_type: str) -> UploadSlot:
        body = {"filename": filename, "content_type": content_type}
        return cast(UploadSlot, self._api("POST", "/uploads", json=body))

    def put_upload(self, slot: UploadSlot, data: bytes) -> None:
        response = self._send(
            slot.get("method", "PUT"), slot["url"], retry=True, headers=slot["headers"], content=data
        )
        if response.status_code >= 400:
            raise ApiError(
                response.status_code,
                "UploadFailed",
                f"the upload PUT was refused: {response.text[:200].strip()}",
            )

    def create_job(
        self,
        operation: str,
        source: Mapping[str, str],
        *,
        params: Mapping[str, Any] | None = None,
        mode: str = "auto",
        idempotency_key: str | None = None,
    ) -> JobCreated:
        body = {"operation": operation, "params": dict(params or {}), "input": dict(source), "mode": mode}
        # Always keyed, so a retried POST returns the same job instead of starting (and paying) twice.
        headers = {"Idempotency-Key": idempotency_key or f"cli-{uuid.uuid4().hex}"}
        return cast(JobCreated, self._api("POST", "/jobs", json=body, headers=headers))

    def get_job(self, job_id: str) -> JobView:
        return cast(JobView, self._api("GET", f"/jobs/{_path_id(job_id)}"))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        operation: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        query = {"status": status, "operation": operation, "limit": limit, "cursor": cursor}
        params = {k: str(v) for k, v in query.items() if v is not None}
        return cast(JobList, self._api("GET", "/jobs", params=params))

    def cancel_job(self, job_id: str) -> CancelResult:
        return cast(CancelResult, self._api("DELETE", f"/jobs/{_path_id(job_id)}", retry=False))

    def create_batch(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> BatchCreated:
        # Keyed like a job: a retried POST returns the same batch instead of running it twice.
        headers = {"Idempotency-Key": idempotency_key or f"cli-{uuid.uuid4().hex}"}
        return cast(BatchCreated, self._api("POST", "/batches", json=dict(body), headers=headers))

    def list_batches(self, *, limit: int | None = None, cursor: str | None = None) -> BatchList:
        query = {"limit": limit, "cursor": cursor}
        params = {k: str(v) for k, v in query.items() if v is not None}
        return cast(BatchList, self._api("GET", "/batches", params=params))

    def get_batch(self, batch_id: str) -> BatchView:
        return cast(BatchView, self._api("GET", f"/batches/{_path_id(batch_id)}"))

    def stop_batch(self, batch_id: str) -> BatchStopped:
        return cast(BatchStopped, self._api("DELETE", f"/batches/{_path_id(batch_id)}", retry=False))

    def pause_batch(self, batch_id: str) -> BatchPaused:
        # Idempotent at the API (a second pause is the same 200): safe to retry.
        return cast(BatchPaused, self._api("POST", f"/batches/{_path_id(batch_id)}/pause"))

    def resume_batch(self, batch_id: str) -> BatchCreated:
        # Idempotent at the API too: a second resume returns the batch the first one started.
        return cast(BatchCreated, self._api("POST", f"/batches/{_path_id(batch_id)}/resume"))

    def download(self, result: ResultView, dest: Path) -> Path:
        """A result's presigned URL into ``dest``, checked against its size and sha256."""
        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".part")
        try:
            with self._http.stream("GET", result["url"]) as response:
                if response.status_code >= 400:
                    raise ApiError(response.status_code, "DownloadFailed", f"cannot download {result['key']}")
                with tmp.open("wb") as fh:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        fh.write(chunk)
        except httpx.TransportError as exc:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"cannot download {result['key']}: {_reason(exc)}") from exc
        if digest.hexdigest() != result["sha256"]:
            tmp.unlink(missing_ok=True)
            raise TransportError(f"{result['key']}: downloaded bytes do not match the result's sha256")
        tmp.replace(dest)
        return dest


def _path_id(job_id: str) -> str:
    from urllib.parse import quote

    return quote(job_id, safe="")


def _where(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unknown"
    return type(exc).__name__
