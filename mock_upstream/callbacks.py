"""Callback delivery for task/pic tasks that name a `callback_url`.

When a task ends, its poll answer is queued (after the submit or poll response has been sent)
and POSTed as JSON once the mock clock reaches `ended + delay`. Options: `delay` (mock seconds),
`duplicate` (extra copies), `drop` (never sent) or `drop_probability` (seeded), `reorder`
(deliver each batch newest first). In server mode a background worker delivers due callbacks;
tests call `flush()` (`POST /__mock/callbacks/flush`) to deliver them deterministically. Every
attempt lands in the delivery log.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import httpx

WORKER_INTERVAL: Final = 0.02  # real seconds between the worker's looks at the queue


@dataclass
class CallbackConfig:
    delay: float = 0.0
    duplicate: int = 0
    drop: bool = False
    drop_probability: float = 0.0
    reorder: bool = False
    auto: bool = True
    timeout: float = 5.0


CONFIG_FIELDS: Final = frozenset(CallbackConfig.__dataclass_fields__)


@dataclass
class Delivery:
    id: int
    task_id: str
    url: str
    body: dict[str, Any]
    due: float
    copy: int = 0
    outcome: str = "pending"  # pending | delivered | dropped | failed
    http_status: int | None = None
    error: str | None = None
    delivered_at: float | None = None
    order: int | None = None

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallbackHub:
    config: CallbackConfig = field(default_factory=CallbackConfig)
    pending: list[Delivery] = field(default_factory=list)
    log: list[Delivery] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random("callbacks"))
    _lock: asyncio.Lock | None = None
    _next: int = 0
    _sent: int = 0

    def reset(self) -> None:
        self.config = CallbackConfig()
        self.pending.clear()
        self.log.clear()
        self.rng = random.Random("callbacks")
        self._next = self._sent = 0

    def configure(self, data: dict[str, Any]) -> CallbackConfig:
        unknown = set(data) - CONFIG_FIELDS
        if unknown:
            raise ValueError(f"unknown callback settings: {sorted(unknown)}")
        merged = {**asdict(self.config), **data}
        if merged["duplicate"] < 0 or merged["delay"] < 0 or not 0 <= merged["drop_probability"] <= 1:
            raise ValueError("delay and duplicate must be >= 0, drop_probability within 0..1")
        self.config = CallbackConfig(**merged)
        return self.config

    def enqueue(self, task_id: str, url: str, body: dict[str, Any], ended: float) -> None:
        dropped = self.config.drop or (
            self.config.drop_probability > 0 and self.rng.random() < self.config.drop_probability
        )
        for copy in range(1 + self.config.duplicate):
            self._next += 1
            delivery = Delivery(self._next, task_id, url, body, ended + self.config.delay, copy)
            if dropped:
                delivery.outcome = "dropped"
                self.log.append(delivery)
            else:
                self.pending.append(delivery)

    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def flush(self, now: float) -> list[Delivery]:
        """Deliver every callback due at `now`; returns the attempts made."""
        async with self.lock():
            due = [d for d in self.pending if d.due <= now]
            if not due:
                return []
            self.pending = [d for d in self.pending if d.due > now]
            if self.config.reorder:
                due.reverse()
            async with httpx.AsyncClient(timeout=self.config.timeout, trust_env=False) as client:
                for delivery in due:
                    await self._deliver(client, delivery, now)
            return due

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery, now: float) -> None:
        self._sent += 1
        delivery.order = self._sent
        delivery.delivered_at = now
        try:
            response = await client.post(delivery.url, json=delivery.body)
        except httpx.HTTPError as exc:
            delivery.outcome, delivery.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            delivery.http_status = response.status_code
            delivery.outcome = "delivered" if response.is_success else "failed"
        self.log.append(delivery)

    async def worker(self, now: Callable[[], float], sweep: Callable[[], None]) -> None:
        """Server mode: keep ending timed tasks and delivering due callbacks."""
        while True:
            await asyncio.sleep(WORKER_INTERVAL)
            if not self.config.auto:
                continue
            with contextlib.suppress(Exception):  # a bad callback must not stop the worker
                sweep()
                await self.flush(now())
