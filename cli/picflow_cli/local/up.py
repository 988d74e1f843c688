"""``picflow local up`` / ``picflow local down``: the local stack as a foreground process.

``up`` checks its ports, starts mock_upstream as a real server on its own port, then the local
stack (moto server, template.yaml deployed, the API front door) in this process, prints the
endpoints, writes them to the state file and prints a ``ready`` line; it runs until SIGINT,
SIGTERM or ``picflow local down``, then stops everything it started and removes the file.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from picflow_cli.errors import LocalStackError
from picflow_cli.local.state import LocalState, pid_alive, read_state, remove_state, write_state

__all__ = ["READY_LINE", "UpstreamServer", "check_ports", "down", "up"]

READY_LINE = "picflow local: ready"
HOST = "127.0.0.1"
DOWN_TIMEOUT_S = 60.0


def check_ports(ports: Iterable[tuple[str, int]], host: str = HOST) -> None:
    """Each named, non-zero port must be free: one clear error before anything starts.

    (moto's threaded server waits forever when its port is taken, so this is checked first.)
    """
    seen: dict[int, str] = {}
    for flag, port in ports:
        if port != 0 and port in seen:
            raise LocalStackError(f"{flag} and {seen[port]} both ask for port {port}")
        seen[port] = flag
    for port, flag in seen.items():
        if port == 0:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise LocalStackError(
                        f"port {port} ({flag}) is already in use on {host}: stop what uses it "
                        f"or pass another {flag} (0 picks a free one)"
                    ) from None
                raise LocalStackError(f"cannot use port {port} ({flag}) on {host}: {exc.strerror}") from None


class UpstreamServer:
    """mock_upstream (uvicorn) on a thread, on a socket bound here so a taken port is an error
    in this thread rather than a ``sys.exit`` in uvicorn's."""

    def __init__(self, port: int, host: str = HOST) -> None:
        from mock_upstream.app import MockApp
        from mock_upstream.server import make_server

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise LocalStackError(
                f"the mock upstream cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        self.server = make_server(MockApp(), host, port)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="mock-upstream", daemon=True
        )
        self.base_url = f"http://{host}:{self.sock.getsockname()[1]}"

    def start(self, timeout: float = 10.0) -> str:
        self.thread.start()
        if not self.server.ready.wait(timeout):
            raise LocalStackError("the mock upstream did not start in time")
        return self.base_url

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()


@dataclass(frozen=True)
class _Stop:
    event: threading.Event

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()


def up(
    state_file: Path,
    *,
    moto_port: int,
    api_port: int,
    upstream_port: int,
    out: TextIO,
    stop: threading.Event | None = None,
) -> int:
    """Run the local stack until SIGINT/SIGTERM (or ``stop`` is set); returns the exit code."""
    from picflow_cli.local.frontdoor import LOCAL_API_KEY
    from picflow_cli.local.stack import REGION, LocalStack

    existing = read_state(state_file)
    if existing is not None and existing.running:
        raise LocalStackError(
            f"a local stack is already running (pid {existing.pid}, {existing.api_url}); "
            "`picflow local down` stops it"
        )
    check_ports((("--moto-port", moto_port), ("--api-port", api_port), ("--upstream-port", upstream_port)))
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        handler = _Stop(stop)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    print("picflow local: starting the mock upstream and the local stack (template.yaml in moto)…", file=out)
    upstream = UpstreamServer(upstream_port)
    stack: LocalStack | None = None
    try:
        upstream.start()
        stack = LocalStack(upstream.base_url, moto_port=moto_port, api_port=api_port)
        try:
            info = stack.start()
        except OSError as exc:
            raise LocalStackError(f"the local stack could not start: {exc}") from None
        state = LocalState(
            pid=os.getpid(),
            api_url=info.api_url,
            api_key=LOCAL_API_KEY,
            s3_endpoint=info.moto_url,
            input_bucket=info.input_bucket,
            output_bucket=info.output_bucket,
            upstream_url=upstream.base_url,
            region=REGION,
        )
        write_state(state_file, state)
        for label, value in (
            ("API URL", state.api_url),
            ("API key", state.api_key),
            ("S3 endpoint", state.s3_endpoint),
            ("input bucket", state.input_bucket),
            ("output bucket", state.output_bucket),
            ("upstream", state.upstream_url),
            ("state file", str(state_file)),
        ):
            print(f"  {label:<14}{value}", file=out)
        print(
            f"{READY_LINE} (pid {state.pid}); Ctrl-C or `picflow local down` stops it", file=out, flush=True
        )
        stop.wait()
        print("picflow local: stopping…", file=out, flush=True)
    finally:
        remove_state(state_file, os.getpid())
        if stack is not None:
            stack.stop()
        upstream.stop()
    print("picflow local: stopped", file=out, flush=True)
    return 0


def down(state_file: Path, *, out: TextIO, timeout: float = DOWN_TIMEOUT_S) -> int:
    """Signal the ``up`` process named in ``state_file`` and wait for it to exit."""
    state = read_state(state_file)
    if state is None:
        print(f"picflow local: nothing running (no state file at {state_file})", file=out)
        return 0
    if not state.running:
        remove_state(state_file)
        print(f"picflow local: nothing running (pid {state.pid} is gone; removed {state_file})", file=out)
        return 0
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    # Not our child, so no waitpid: poll its liveness (it removes the state file on the way out).
    while pid_alive(state.pid):
        if time.monotonic() > deadline:
            raise LocalStackError(f"pid {state.pid} did not stop within {timeout:.0f} s")
        time.sleep(0.05)
    remove_state(state_file, state.pid)
    print(f"picflow local: stopped (pid {state.pid})", file=out)
    return 0
