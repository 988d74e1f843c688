"""The mock in a process of its own (`python -m mock_upstream`), for a caller that runs much else.

In the caller's process (`server.ThreadedServer`) the mock's requests, callbacks and imports share
that process's one GIL: in `make demo` that was ~17 % of the busy time of the process that also runs
moto. Here it runs beside it, on another core, and starts while the caller does other work:
`start()` returns at once, `base_url` waits for the address the mock prints once it listens (its
render workers are up by then). This module imports nothing of the mock's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["MockProcess"]


class MockProcess:
    """`python -m mock_upstream --port 0 ARGS...`; `base_url` once it listens, `stop()` ends it."""

    def __init__(self, *args: str) -> None:
        self.args = ["--port", "0", "--log-level", "warning", *args]
        self.process: subprocess.Popen[str] | None = None
        self._url = ""

    def start(self) -> MockProcess:
        env = dict(os.environ)
        # The child must import this very package, wherever it was imported from here.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mock_upstream", *self.args], stdout=subprocess.PIPE, text=True, env=env
        )
        return self

    @property
    def base_url(self) -> str:
        """The mock's address, once it listens (the line it prints then)."""
        if not self._url:
            assert self.process is not None, "start() first"
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            found = re.search(r"http://\S+", line)
            if not found:
                self.stop()
                raise RuntimeError(f"mock_upstream did not start: {line!r}")
            self._url = found.group(0)
        return self._url

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()  # uvicorn shuts down (and stops its render workers) on SIGTERM
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> MockProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
