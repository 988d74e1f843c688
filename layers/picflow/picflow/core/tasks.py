"""What every provider client returns, so the job code never sees a provider's shapes.

Also the two rules on a task that have one home each: :meth:`TaskStatus.failure` (what "the
upstream task failed" means, for a poll, a sync answer and a callback alike) and
:meth:`TaskStatus.poll_state` (a status as the state machine's ``$.poll``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from picflow.core.catalogue import Provider, ResultKind, TaskState
from picflow.core.errors import UpstreamTaskFailedError
from picflow.core.state import PollState, ResultState

__all__ = ["Balance", "ResultRef", "Submission", "TaskStatus"]


@dataclass(frozen=True)
class ResultRef:
    """One result: a remote URL (expires), a local file (decoded inline data) or text."""

    kind: ResultKind
    url: str | None = None
    path: str | None = None
    text: str | None = None
    index: int = 0

    def to_state(self) -> ResultState:
        return {"kind": self.kind.value, "url": self.url, "text": self.text, "index": self.index}

    @classmethod
    def from_state(cls, raw: Mapping[str, Any]) -> ResultRef:
        return cls(
            kind=ResultKind(raw["kind"]),
            url=raw.get("url"),
            text=raw.get("text"),
            index=int(raw.get("index", 0)),
        )


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

    def failure(self) -> UpstreamTaskFailedError | None:
        """The task's failure as an error carrying the provider's code, or None if it did not fail."""
        if self.state is not TaskState.FAILED:
            return None
        return UpstreamTaskFailedError(
            self.error_message or self.detail or "upstream task failed",
            provider=self.provider.value,
            code=self.error_code,
        )

    def raise_for_failure(self) -> None:
        """Raise :class:`UpstreamTaskFailedError` with the provider's code if the task failed."""
        error = self.failure()
        if error is not None:
            raise error

    def poll_state(self, *, wait_seconds: int, polls: int) -> PollState:
        """This status as ``$.poll``: the results a URL or text each (files never leave the
        invocation that decoded them: a sync answer is collected where it arrived)."""
        return {
            "state": self.state.value,
            "task_id": self.task_id,
            "progress": self.progress,
            "results": [r.to_state() for r in self.results if r.path is None],
            "wait_seconds": wait_seconds,
            "polls": polls,
            "errors": 0,
        }


@dataclass(frozen=True)
class Submission:
    """What a submit returned: a task to follow, or (sync) the finished status itself."""

    provider: Provider
    task_id: str | None
    status: TaskStatus | None = None
    balance: Balance | None = None
    request_id: str | None = None
