"""What the batch e2e suites share: distinct input images, a batch's end, its results manifest."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any


def images(system: Any, count: int, prefix: str, tint: tuple[int, int] = (80, 160)) -> list[str]:
    """``count`` different images under ``prefix`` (distinct bytes, so the result cache tells
    them apart; another ``tint`` gives another set)."""
    from PIL import Image

    keys = []
    for i in range(count):
        buf = BytesIO()
        Image.new("RGB", (64 + i, 64), (i * 10 % 256, *tint)).save(buf, format="PNG")
        key = f"{prefix}img-{i:03d}.png"
        system.s3.put_object(Bucket=system.info.input_bucket, Key=key, Body=buf.getvalue())
        keys.append(key)
    return keys


def finish(system: Any, api: Any, batch_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The batch's execution once it has ended, and ``GET /batches/{id}`` then."""
    arn = system.info.batch_state_machine_arn.replace(":stateMachine:", ":execution:") + f":{batch_id}"
    execution = system.stack.wait_for_arn(arn, timeout=240)
    view = api.get(f"/batches/{batch_id}")
    assert view.status_code == 200, view.text
    return execution, view.json()


def results(system: Any, view: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines of the batch's results manifest."""
    body = system.output(view["results_key"]).decode()
    return [json.loads(line) for line in body.splitlines() if line]


def public_url(system: Any, key: str) -> str:
    """A URL the local stack's allowlist admits as a public host: a presigned GET of moto."""
    params = {"Bucket": system.info.input_bucket, "Key": key}
    url: str = system.s3.generate_presigned_url("get_object", Params=params)
    return url
