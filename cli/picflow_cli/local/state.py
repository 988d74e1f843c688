"""The state file ``picflow local up`` writes while it runs: its endpoints and its pid.

Other commands read it to find the local stack; ``picflow local down`` signals the pid. The
file lives exactly as long as the ``up`` process (written once ready, removed on the way out);
one left behind by a killed process is recognised by its dead pid and treated as absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["LocalState", "pid_alive", "read_state", "remove_state", "write_state"]


@dataclass(frozen=True)
class LocalState:
    pid: int
    api_url: str
    api_key: str
    s3_endpoint: str
    input_bucket: str
    output_bucket: str
    upstream_url: str
    region: str

    @property
    def running(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process that looks like ours (a zombie or a reused pid is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else: not ours to judge further
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs (macOS): the signal check is all there is
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and b"picflow" in cmdline


def read_state(path: Path) -> LocalState | None:
    """The state in ``path``, or None when there is none (missing, unreadable or not ours)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return LocalState(**{name: raw[name] for name in LocalState.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_state(path: Path, state: LocalState) -> None:
    """Written whole, then renamed into place, so a reader never sees half a file."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def remove_state(path: Path, pid: int | None = None) -> None:
    """Remove ``path``; with ``pid``, only while it still names that process."""
    if pid is not None:
        current = read_state(path)
        if current is not None and current.pid != pid:
            return
    path.unlink(missing_ok=True)
