"""Handlers that do what picflow's must not: the local stack must stop them as Lambda would.

Loaded by the local runtime from this directory (tests/e2e/test_strict_lambda.py), never imported
by the tests themselves.
"""

from __future__ import annotations

import os
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
    """Returns only once the other invocation has started too: two processes, or a timeout."""
    SEEN.append(event["id"])
    folder = Path(event["folder"])
    (folder / f"started-{event['id']}").touch()
    deadline = time.monotonic() + 20
    while not (folder / f"started-{event['other']}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the other invocation never started")
        time.sleep(0.01)
    return {"pid": os.getpid(), "seen": list(SEEN)}


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
