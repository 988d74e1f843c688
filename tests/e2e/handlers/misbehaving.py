"""Handlers that do what picflow's must not: the local stack must stop them as Lambda would.

Loaded by the local runtime from this directory (tests/e2e/test_strict_lambda.py), never imported
by the tests themselves.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path
from typing import Any

import boto3

# One per execution environment: invocations that ran in the same process see each other's here.
SEEN: list[str] = []


def sleepy(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event["seconds"]))  # the behaviour under test: running past the Timeout
    return {"slept": event["seconds"]}


def rendezvous(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns only once the other invocation (``other``) has started too: two processes, or a
    timeout. Without ``other``, at once."""
    SEEN.append(event["id"])
    if event.get("other") is not None:
        _meet(Path(event["folder"]), event["id"], event["other"])
    return {"pid": os.getpid(), "seen": list(SEEN)}


def _meet(folder: Path, me: str, other: str) -> None:
    """Each side writes a byte into the other's FIFO and waits on its own (select, 20 s).

    On Linux, O_RDWR opens a FIFO without waiting for a peer. Each side opens its own FIFO before
    it writes, and holds both open until it has read: a FIFO keeps its bytes while an end is
    open, so a byte written before the other side waits is still there when it does."""
    for name in (me, other):
        with contextlib.suppress(FileExistsError):
            os.mkfifo(folder / f"meet-{name}")
    mine = os.open(folder / f"meet-{me}", os.O_RDWR)
    theirs = os.open(folder / f"meet-{other}", os.O_RDWR)
    try:
        os.write(theirs, b".")
        ready, _, _ = select.select([mine], [], [], 20)
        if not ready:
            raise TimeoutError("the other invocation never started")
        os.read(mine, 1)
    finally:
        os.close(mine)
        os.close(theirs)


def environment(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {key: os.environ.get(key) for key in event["keys"]}


def crash(event: dict[str, Any], context: Any) -> None:
    os._exit(3)


def allocate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    block = bytearray(int(event["mb"]) * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not just reserved
    return {"allocated_mb": len(block) // (1024 * 1024)}


def put_job(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A DynamoDB write the function's role may or may not allow (the item fits both tables' keys)."""
    boto3.client("dynamodb").put_item(
        TableName=event["table"], Item={"job_id": {"S": "probe"}, "name": {"S": "probe"}}
    )
    return {"written": True}
