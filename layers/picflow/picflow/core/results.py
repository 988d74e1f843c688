"""The result shape, once: one stored output as every part of picflow reads and writes it.

:class:`StoredResult` is what Collect writes into ``manifest.json``, the job record and the result
cache; :class:`ResultView` is the same output as the jobs API shows it (``GET /jobs/{id}``'s
``results``, in the OpenAPI document) with a presigned URL, and what the CLI reads. TypedDicts:
plain dicts at run time (nothing to import at a cold start); pydantic reads them for the API's
validation and schema (``__pydantic_config__``: no unknown keys, attribute docstrings as
descriptions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

__all__ = ["RESULT_LINE_KEYS", "Notice", "NoticeCost", "ResultView", "StoredResult", "result_view"]


class _ResultFields(TypedDict):
    kind: str
    index: int
    key: str
    content_type: str
    size: int
    sha256: str
    width: NotRequired[int | None]
    height: NotRequired[int | None]


class StoredResult(_ResultFields):
    """One output as stored (manifest.json, the job record, the result cache)."""

    declared_content_type: NotRequired[str | None]
    """The Content-Type the provider declared (the stored one is what the bytes proved)."""


class ResultView(_ResultFields):
    """One output as the API shows it."""

    url: str
    """Presigned GET, valid for expires_in seconds."""
    expires_in: int


class NoticeCost(TypedDict):
    """What the job cost, in its provider's units (0 for a reused result)."""

    units: int | None
    unit: str | None


class Notice(TypedDict):
    """The body of the signed completion POST to a job's ``notify_url``: what its receiver needs
    and nothing of the operator's (no balance, execution, cache key, fingerprint or provider task).
    Headers: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (README: verifying)."""

    job_id: str
    status: str
    """SUCCEEDED, FAILED or CANCELLED."""
    operation: str
    results: list[ResultView]
    """Each output with its sha256 and a presigned GET URL."""
    texts: dict[str, str]
    """Text results (a generated prompt), by kind."""
    error: dict[str, Any] | None
    """Why the job failed: {type, message, ...}, as GET /jobs/{id} shows it."""
    cost: NoticeCost
    completed_at: str | None


def result_view(stored: Mapping[str, Any], *, url: str, expires_in: int) -> ResultView:
    """One stored output as the API and the notice show it, with its presigned ``url``."""
    return {
        "kind": str(stored["kind"]),
        "index": int(stored["index"]),
        "key": str(stored["key"]),
        "content_type": str(stored["content_type"]),
        "size": int(stored["size"]),
        "sha256": str(stored["sha256"]),
        "width": None if stored.get("width") is None else int(stored["width"]),
        "height": None if stored.get("height") is None else int(stored["height"]),
        "url": url,
        "expires_in": expires_in,
    }


for _shape in (StoredResult, ResultView, NoticeCost, Notice):
    setattr(_shape, "__pydantic_config__", {"extra": "forbid", "use_attribute_docstrings": True})  # noqa: B010

# What a batch's results.jsonl keeps of each output.
RESULT_LINE_KEYS = ("kind", "key", "content_type", "size", "sha256")
