"""The result shape, once: one stored output as every part of picflow reads and writes it.

:class:`StoredResult` is what Collect writes into ``manifest.json``, the job record and the result
cache; :class:`ResultView` is the same output as the jobs API shows it (``GET /jobs/{id}``'s
``results``, in the OpenAPI document) with a presigned URL, and what the CLI reads. TypedDicts:
plain dicts at run time (nothing to import at a cold start); pydantic reads them for the API's
validation and schema (``__pydantic_config__``: no unknown keys, attribute docstrings as
descriptions).
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

__all__ = ["RESULT_LINE_KEYS", "ResultView", "StoredResult"]


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


for _shape in (StoredResult, ResultView):
    setattr(_shape, "__pydantic_config__", {"extra": "forbid", "use_attribute_docstrings": True})  # noqa: B010

# What a batch's results.jsonl keeps of each output.
RESULT_LINE_KEYS = ("kind", "key", "content_type", "size", "sha256")
