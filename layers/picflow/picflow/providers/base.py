"""What every provider client is: the :class:`ProviderClient` protocol, its image input and secrets.

What a client returns (:class:`~picflow.core.tasks.TaskStatus`, ``Submission``, ``ResultRef``) is
in :mod:`picflow.core.tasks`; a provider's facts are its spec (:mod:`picflow.core.catalogue`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    import httpx

    from picflow.core.catalogue import CheckedParams
    from picflow.core.params import Params
    from picflow.core.tasks import Submission, TaskStatus

__all__ = ["ImageInput", "ProviderClient", "Secret"]


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


class ProviderClient(Protocol):
    """What the job code asks of every provider's client (its spec's ``client``).

    ``submit`` makes the one paid call: ``sync`` asks for the finished task in the answer,
    ``callback_url`` for a POST when it ends (only where the spec's styles allow either). ``status``
    reads a task. ``from_config`` builds the client on a pooled ``httpx.Client`` for its base URL,
    with its spec's ``secret_keys`` from the provider secret.
    """

    @classmethod
    def from_config(cls, http: httpx.Client, secrets: Mapping[str, Secret]) -> Self: ...

    def submit(
        self,
        operation: str,
        params: Params | CheckedParams | Mapping[str, Any],
        image: ImageInput,
        *,
        sync: bool = False,
        callback_url: str | None = None,
    ) -> Submission: ...

    def status(self, task_id: str, *, operation: str | None = None) -> TaskStatus: ...
