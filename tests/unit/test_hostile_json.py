"""0 5xx on hostile input (issue 15, finding 5): picflow.core.jsonlimits, and a batch manifest that
is not UTF-8, or whose line is nested past the limit, is a ParamValidationError (the API's 422), not
a 502 or a 500 (it was a UnicodeDecodeError / RecursionError / ValueError). The API's routes:
tests/unit/test_api.py (test_post_routes_answer_hostile_json_4xx_in_the_error_shape)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from picflow.batch.plan import read_manifest
from picflow.core.errors import ParamValidationError
from picflow.core.jsonlimits import MAX_DEPTH, MAX_NUMBER_DIGITS, check_json_text, loads


def test_strings_may_hold_brackets_and_digits_past_the_limits() -> None:
    text = json.dumps({"prompt": "[" * 500 + "9" * 500, "n": 10 ** (MAX_NUMBER_DIGITS - 1)})
    assert loads(text, field="body")["prompt"].startswith("[[")


def test_the_limits_themselves_are_accepted() -> None:
    check_json_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, field="body")
    with pytest.raises(ParamValidationError):
        check_json_text("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), field="body")


# --- manifests ---------------------------------------------------------------------------------


@pytest.fixture
def bucket(s3: Any) -> Any:
    s3.create_bucket(Bucket="manifests")
    return s3


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("m.jsonl", b'{"key": "a.png"}\n\xff\xfe{"key": "b.png"}\n', "not UTF-8"),
        ("m.jsonl", b'{"key": "a.png"}\n' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"\n", "line 2: "),
        ("m.jsonl", b'{"key": "a.png", "params": {"seed": ' + b"9" * 5000 + b"}}\n", "line 1: "),
        ("m.csv", b'key,params\na.png,"{""seed"": ' + b"9" * 5000 + b'}"\n', "line 2: "),
    ],
    ids=["not-utf8", "line-nested-3000", "number-5000-digits", "csv-params-number"],
)
def test_read_manifest_refuses_hostile_manifests_as_param_errors(
    bucket: Any, name: str, body: bytes, says: str
) -> None:
    bucket.put_object(Bucket="manifests", Key=name, Body=body)
    with pytest.raises(ParamValidationError) as caught:
        read_manifest(bucket, "manifests", name)
    assert caught.value.field == "manifest"
    assert says in caught.value.message
