"""Types every provider client returns, so the workflow never sees a provider's shapes."""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

from picflow.core.catalogue import Provider, ResultKind
from picflow.core.errors import UpstreamTaskFailedError

__all__ = ["Balance", "ImageInput", "ResultRef", "Secret", "Submission", "TaskState", "TaskStatus"]


class Secret:
    """A credential that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("empty secret")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ImageInput:
    """The source image: a readable binary stream (streamed, never read whole) or a URL."""

    file: IO[bytes] | None = None
    filename: str = "image.png"
    content_type: str = "application/octet-stream"
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.url is None):
            raise ValueError("ImageInput needs exactly one of file or url")

    def known_size(self) -> int | None:
        """Bytes httpx will upload (it rewinds seekable files), or None when unknowable unread."""
        if self.file is None:
            return None
        try:
            if not self.file.seekable():
                return None
            position = self.file.tell()
            end = self.file.seek(0, io.SEEK_END)
            self.file.seek(position)
        except (OSError, ValueError):
            return None
        return end


class TaskState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ResultRef:
    """One result: a remote URL (expires), a local file (decoded inline data) or text."""

    kind: ResultKind
    url: str | None = None
    path: str | None = None
    text: str | None = None
    index: int = 0


@dataclass(frozen=True)
class Balance:
    remaining_count: int | None = None
    remaining_money: float | None = None


@dataclass(frozen=True)
class TaskStatus:
    provider: Provider
    task_id: str
    state: TaskState
    raw_state: str | int | None = None
    progress: int | None = None
    results: tuple[ResultRef, ...] = ()
    detail: str | None = None
    error_code: str | int | None = None
    error_message: str | None = None
    balance: Balance | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def raise_for_failure(self) -> None:
        """Raise :class:`UpstreamTaskFailedError` with the provider's code if the task failed."""
        if self.state is TaskState.FAILED:
            raise UpstreamTaskFailedError(
                self.error_message or self.detail or "upstream task failed",
                provider=self.provider.value,
                code=self.error_code,
            )


@dataclass(frozen=True)
class Submission:
    """What a submit returned: a task to follow, or (sync) the finished status itself."""

    provider: Provider
    task_id: str | None
    status: TaskStatus | None = None
    balance: Balance | None = None
    request_id: str | None = None
