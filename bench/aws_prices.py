"""AWS list prices the benches price a job with (us-east-1, on-demand, December 2026): one table.

Step Functions Standard bills each state transition; Lambda bills each request and the GB-seconds
of its duration at the function's memory (arm64, as template.yaml deploys). S3 and DynamoDB
requests are left out by every bench that imports this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

USD_PER_STATE_TRANSITION = 0.025 / 1000
USD_PER_LAMBDA_REQUEST = 0.20 / 1_000_000
USD_PER_LAMBDA_GB_S_ARM64 = 0.0000133334


def aws_usd(transitions: int, requests: int, gb_s: float) -> float:
    """Step Functions transitions plus Lambda requests and GB-seconds, in US dollars."""
    return (
        transitions * USD_PER_STATE_TRANSITION
        + requests * USD_PER_LAMBDA_REQUEST
        + gb_s * USD_PER_LAMBDA_GB_S_ARM64
    )


def entered(events: Iterable[Mapping[str, Any]]) -> int:
    """The state transitions billed for these history events: the ``*StateEntered`` ones."""
    return sum(1 for event in events if event["type"].endswith("StateEntered"))


def state_transitions(sfn: Any, execution_arn: str) -> int:
    """The state transitions an execution is billed for (:func:`entered`), read page by page."""
    count = 0
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        count += entered(page["events"])
        if not page.get("nextToken"):
            return count
        kwargs["nextToken"] = page["nextToken"]
