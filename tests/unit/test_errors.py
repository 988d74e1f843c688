"""picflow.core.errors: the class names are the Step Functions contract, so they are pinned here."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from picflow.core import errors
from picflow.core.errors import (
    ConcurrencyLimitedError,
    InvalidRequestError,
    ParamValidationError,
    PicflowError,
    RateLimitedError,
    TransientError,
)
from picflow.job.check import TaskDone

ROOT = Path(__file__).resolve().parents[2]
STATE_MACHINES = sorted((ROOT / "statemachine").glob("*.asl.json"))
# Error names Step Functions and Lambda raise (Runtime.ExitError: a crashed process): not ours to define.
SERVICE_PREFIXES = ("States.", "Lambda.", "StepFunctions.", "Runtime.")
# Not errors: Check's "the task is done" signal, caught straight to Collect (picflow.job.check).
SIGNALS = {TaskDone.__name__}

# class name -> its direct parent's name; renaming or re-parenting one breaks Retry/Catch.
HIERARCHY = {
    "PicflowError": "Exception",
    "InvalidRequestError": "PicflowError",
    "ParamValidationError": "InvalidRequestError",
    "AuthError": "PicflowError",
    "QuotaExhaustedError": "PicflowError",
    "RateLimitedError": "PicflowError",
    "ConcurrencyLimitedError": "RateLimitedError",
    "TransientError": "PicflowError",
    "OutcomeUnknownError": "PicflowError",
    "UpstreamTaskFailedError": "PicflowError",
    "ResultUnavailableError": "PicflowError",
    "DeadlineExceededError": "PicflowError",
    "InternalError": "PicflowError",
}
RETRYABLE = {"RateLimitedError", "ConcurrencyLimitedError", "TransientError"}


def _error_names(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = set(node.get("ErrorEquals", []))
        for value in node.values():
            found |= _error_names(value)
        return found
    if isinstance(node, list):
        return set().union(*(_error_names(v) for v in node)) if node else set()
    return set()


def _defined_classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if cls.__module__ == errors.__name__
    }


def test_errors_module_defines_exactly_the_pinned_classes() -> None:
    assert set(_defined_classes()) == set(HIERARCHY)
    assert set(errors.__all__) == set(HIERARCHY)


@pytest.mark.parametrize(("name", "parent"), sorted(HIERARCHY.items()))
def test_error_class_has_its_pinned_parent(name: str, parent: str) -> None:
    cls = getattr(errors, name)
    assert cls.__bases__[0].__name__ == parent
    assert name.endswith("Error")


@pytest.mark.parametrize("name", sorted(HIERARCHY))
def test_error_class_retryable_flag_matches_its_kind(name: str) -> None:
    assert getattr(errors, name).retryable is (name in RETRYABLE)


def test_state_machines_exist_to_check() -> None:
    assert any(p.name == "job.asl.json" for p in STATE_MACHINES)


@pytest.mark.parametrize("path", STATE_MACHINES, ids=lambda p: p.name)
def test_asl_error_equals_names_only_real_error_classes(path: Path) -> None:
    # A misspelt name in ErrorEquals never matches, and nothing says so: this test does.
    names = _error_names(json.loads(path.read_text()))
    ours = {n for n in names if not n.startswith(SERVICE_PREFIXES)}
    unknown = ours - set(_defined_classes()) - SIGNALS
    assert not unknown, f"{path.name} names errors picflow does not define: {sorted(unknown)}"


def test_job_asl_retries_the_retryable_errors() -> None:
    names = _error_names(json.loads((ROOT / "statemachine" / "job.asl.json").read_text()))
    assert {"TransientError", "RateLimitedError"} <= names


def test_error_names_helper_finds_nested_error_equals() -> None:
    # Guards the guard: the walker must see Retry and Catch at any depth.
    asl = {"States": {"A": {"Retry": [{"ErrorEquals": ["X"]}], "Iterator": {"States": {
        "B": {"Catch": [{"ErrorEquals": ["Y", "States.ALL"]}]}}}}}}  # fmt: skip
    assert _error_names(asl) == {"X", "Y", "States.ALL"}


def test_to_dict_has_the_recorded_shape() -> None:
    error = TransientError(
        "server error 503", provider="hdredraw", code=503, http_status=503, request_id="r-1"
    )
    assert error.to_dict() == {
        "type": "TransientError",
        "message": "server error 503",
        "provider": "hdredraw",
        "code": 503,
        "http_status": 503,
        "request_id": "r-1",
        "retryable": True,
    }
    assert json.loads(json.dumps(error.to_dict())) == error.to_dict()


def test_to_dict_of_subclass_carries_the_subclass_name() -> None:
    assert ConcurrencyLimitedError("busy", code="JobNumExceed").to_dict()["type"] == "ConcurrencyLimitedError"


def test_param_validation_error_to_dict_adds_field_rule_operation() -> None:
    error = ParamValidationError("batch_size too big", field="batch_size", rule="≤ 4", operation="background")
    out = error.to_dict()
    assert out["type"] == "ParamValidationError"
    assert (out["field"], out["rule"], out["operation"]) == ("batch_size", "≤ 4", "background")
    assert out["code"] == "ParamValidation"
    assert out["retryable"] is False
    assert isinstance(error, InvalidRequestError)


def test_str_lists_provider_code_status_and_request_id() -> None:
    error = RateLimitedError("rate limited", provider="taskpic", code=429, http_status=429, request_id="abc")
    assert str(error) == "rate limited provider=taskpic code=429 http_status=429 request_id=abc"
    assert error.retry_after is None


def test_str_of_bare_error_is_its_message() -> None:
    assert str(PicflowError("plain")) == "plain"


@pytest.mark.parametrize("name", sorted(HIERARCHY))
def test_error_str_repr_and_dict_do_not_render_a_secret_bearing_cause(name: str) -> None:
    # GIVEN a low-level failure whose text holds a credential (an httpx error quoting its URL)
    secret = "sk-live-SECRET-0123456789"
    cause = httpx.ConnectError(f"cannot reach https://api.example/check?user_key={secret}")
    cls = getattr(errors, name)
    kwargs: dict[str, Any] = {"field": "image", "rule": "readable"} if cls is ParamValidationError else {
        "provider": "hdredraw", "code": "ConnectFailed", "request_id": "req-9"}  # fmt: skip
    # WHEN picflow translates it the way http.send does: its own message, chained `from` the cause
    with pytest.raises(cls) as info:
        raise cls("could not connect: ConnectError", **kwargs) from cause
    error = info.value
    assert error.__cause__ is cause
    # THEN the error's own renderings never show the cause's text
    rendered = [str(error), repr(error), json.dumps(error.to_dict()), *map(str, error.args)]
    assert [text for text in rendered if secret in text] == []
    assert repr(error).startswith(f"{name}(")


def test_error_messages_drop_url_queries_that_could_carry_signatures() -> None:
    from picflow.core.errors import UpstreamTaskFailedError

    url = "http://127.0.0.1:9/in/a.png?X-Amz-Signature=abc&X-Amz-Security-Token=tok"
    error = UpstreamTaskFailedError(f"source download failed: {url}", code=-3)
    assert "X-Amz" not in str(error)
    assert "tok" not in error.to_dict()["message"]
    assert "http://127.0.0.1:9/in/a.png" in error.message
