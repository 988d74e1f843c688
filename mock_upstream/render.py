"""Rendering off the event loop: a pool of lower-priority worker processes (cores - 1, at least 1).

Everything whose cost grows with the image (decoding, the "AI" work, encoding the results) runs
in a worker process (worker.py) as a function of mock_upstream.jobs taking bytes and parameters;
the event loop only moves bytes and answers requests, so a 30-second render never delays a
status check. Workers lower their own priority (`os.nice`), so on a busy machine the server
that answers the requests comes first. They are plain subprocesses talking over pipes, not
`multiprocessing`: nothing re-imports the caller's `__main__`, nothing forks a process full of
threads, and a worker can be killed at any moment without leaving a lock held.

The pool tells the app what it is doing, for tests that must synchronise on states, not sleeps:
`started` (a worker has picked a job up and said so), `running` (jobs not delivered yet) and
`delivered_total`. `hold()` keeps finished renders from being delivered until `release()`: a
test can keep a heavy render "in flight" for exactly as long as it needs. `restart()` (on a mock
reset) kills busy workers, so a heavy render left over from one test cannot slow the next.

`workers=0` renders on a thread instead (still off the loop, but sharing the GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from mock_upstream.frames import read_frame, write_frame

T = TypeVar("T")

NICE: Final = 10
JOBS_MODULE: Final = "mock_upstream.jobs"


class RenderError(RuntimeError):
    """A render raised in its worker, or its worker died (killed by a reset, out of memory)."""


def default_workers() -> int:
    """Cores this process may use, minus one for the server (at least one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, cores - 1)


class _Worker:
    """One worker process; `call` blocks (it runs on one of the pool's threads)."""

    def __init__(self, nice: int) -> None:
        env = dict(os.environ)
        # The child must import this very package, wherever it was imported from here.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mock_upstream.worker", str(nice)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.lock = threading.Lock()

    def call(self, job_id: int, name: str, args: tuple[Any, ...], started: Callable[[int], None]) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        with self.lock:
            try:
                write_frame(self.process.stdin, (job_id, name, args))
                kind, value = read_frame(self.process.stdout)
                if kind == "started":
                    started(job_id)
                    kind, value = read_frame(self.process.stdout)
            except (EOFError, OSError, ValueError) as exc:
                raise RenderError(f"render worker {self.process.pid} ended: {exc}") from exc
        if kind == "error":
            raise RenderError(str(value))
        return value

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


class RenderPool:
    """The worker pool and what it is doing; create and use it on the server's event loop."""

    def __init__(self, workers: int | None = None, *, nice: int = NICE) -> None:
        self.workers = default_workers() if workers is None else max(0, workers)
        self.nice = nice
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._all: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._next = 0
        self.running: dict[int, str] = {}  # job -> label, until delivered
        self.started: set[int] = set()
        self.started_total = 0
        self.delivered_total = 0
        self._held = False
        self._release: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(max_workers=max(1, self.workers), thread_name_prefix="mock-render")
        self._idle = asyncio.Queue()
        for _ in range(self.workers):
            worker = _Worker(self.nice)
            self._all.append(worker)
            self._idle.put_nowait(worker)

    async def warm_up(self) -> None:
        """Wait until every worker process runs (has imported Pillow and answered)."""
        self.start()
        if self.workers:
            await asyncio.gather(*(self._call("ping", ()) for _ in range(self.workers)))

    def stop(self) -> None:
        """Kill the workers; the pool starts afresh on its next use."""
        workers, self._all = self._all, []
        for worker in workers:
            worker.kill()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
        self._threads = None
        self._idle = None

    def restart(self) -> None:
        """Forget every job and, if any is still running, kill the workers."""
        if self.running:
            self.stop()
        self.running.clear()
        self.started.clear()
        self.release()
        self._notify()

    # ---- holding ----------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._release is not None:
            self._release.set()
            self._release = None

    # ---- running jobs -----------------------------------------------------------------------
    async def run(self, label: str, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` (a function of mock_upstream.jobs) in a worker; delivered after any hold."""
        if fn.__module__ != JOBS_MODULE:
            raise ValueError(f"render jobs are functions of {JOBS_MODULE}, not {fn.__module__}")
        self._next += 1
        job_id = self._next
        self.running[job_id] = label
        self._notify()
        try:
            result: T
            if self.workers:
                result = await self._call(fn.__name__, args, job_id)
            else:
                self.start()
                assert self._loop is not None
                self._mark_started(job_id)
                result = await self._loop.run_in_executor(self._threads, fn, *args)
            while self._held and job_id in self.running:
                if self._release is None:
                    self._release = asyncio.Event()
                await self._release.wait()
            return result
        finally:
            if self.running.pop(job_id, None) is not None:
                self.delivered_total += 1
            self.started.discard(job_id)
            self._notify()

    async def _call(self, name: str, args: tuple[Any, ...], job_id: int = 0) -> Any:
        self.start()
        idle, loop, threads = self._idle, self._loop, self._threads
        assert idle is not None
        assert loop is not None
        worker = await idle.get()

        def started(job: int) -> None:
            loop.call_soon_threadsafe(self._mark_started, job)

        try:
            return await loop.run_in_executor(threads, worker.call, job_id, name, args, started)
        finally:
            if worker in self._all:
                if not worker.alive:  # died under a job: replace it
                    self._all.remove(worker)
                    worker = _Worker(self.nice)
                    self._all.append(worker)
                idle.put_nowait(worker)

    def _mark_started(self, job_id: int) -> None:
        if job_id in self.running:
            self.started.add(job_id)
            self.started_total += 1
            self._notify()

    # ---- waiting on states ------------------------------------------------------------------
    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (checked at every change); False on timeout."""

        async def until() -> None:
            while not predicate():
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

        try:
            await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            return False
        return True

    def public(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "held": self._held,
            "running": len(self.running),
            "started": len(self.started),
            "started_total": self.started_total,
            "delivered_total": self.delivered_total,
            "labels": sorted(self.running.values()),
        }
