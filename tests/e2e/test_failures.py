"""Every failure class ends in a recorded FAILED job carrying the provider's code and message.

Bad input fails before any money is spent: the mock's journal proves no upstream call.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def _failed(system, key):
    execution, job = system.run(key)
    assert execution["status"] == "FAILED"
    assert job["status"] == "FAILED"
    assert execution["error"] == job["error"]["type"]
    return job["error"]


def test_out_of_range_param_fails_before_any_upstream_call(system, sample):
    key = system.upload("redraw/in/i.png", sample["image.png"], {"upscale": 9})
    error = _failed(system, key)
    assert error["type"] == "ParamValidationError"
    assert error["field"] == "upscale"
    assert system.mock.count() == 0


def test_unknown_operation_prefix_fails_clearly(system, sample):
    key = system.upload("cartoonify/in/i.png", sample["image.png"], {})
    error = _failed(system, key)
    assert error["type"] == "ParamValidationError"
    assert "cartoonify" in error["message"]
    assert system.mock.count() == 0


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "not empty"),
        (b"GIF89a but not really", "a decodable image"),
        (b"<html>hello</html>", "a decodable image"),
    ],
)
def test_non_image_upload_fails_before_any_upstream_call(system, data, rule):
    key = system.upload("face_enhance/in/x.png", data, {})
    error = _failed(system, key)
    assert (error["type"], error["field"], error["rule"]) == ("ParamValidationError", "image", rule)
    assert system.mock.count() == 0


def test_truncated_png_fails_before_any_upstream_call(system, sample):
    key = system.upload("face_enhance/in/t.png", sample["image.png"][:600], {})
    error = _failed(system, key)
    assert error["field"] == "image"
    assert system.mock.count() == 0


def test_malformed_params_metadata_fails_clearly(system, sample):
    key = f"redraw/bad/{'x'}.png"
    system.s3.put_object(
        Bucket=system.info.input_bucket, Key=key, Body=sample["image.png"], Metadata={"params": "[1, 2"}
    )
    error = _failed(system, key)
    assert (error["type"], error["field"]) == ("ParamValidationError", "params")
    assert system.mock.count() == 0


def test_refused_credentials_fail_fast_as_auth_error(system, sample):
    system.mock.set_account("default", user_key="rotated-elsewhere")
    key = system.upload("remove_watermark/in/i.png", sample["image.png"], {})
    error = _failed(system, key)
    assert (error["type"], error["code"], error["message"]) == ("AuthError", "AccountNotFound", "账户不存在")
    assert system.mock.count(route="/api/submit_remove_watermark_task") == 1  # not retried


def test_exhausted_balance_fails_as_quota_error(system, sample):
    system.mock.set_account("default", hd_remaining_count=0, hd_remaining_money=0)
    key = system.upload("remove_watermark/in/i.png", sample["image.png"], {})
    error = _failed(system, key)
    assert (error["type"], error["message"]) == ("QuotaExhaustedError", "账户剩余次数不足")


def test_taskpic_failed_state_is_recorded_with_its_code(system, sample):
    system.mock.set_scenario(next=1, outcome="failure", code=-7)
    key = system.upload("segmentation/in/p.jpg", sample["product.jpg"], {}, mode="poll")
    error = _failed(system, key)
    assert (error["type"], error["code"]) == ("UpstreamTaskFailedError", -7)
    assert system.mock.count(paid=True) == 1


def test_taskpic_failure_by_callback_is_recorded_with_its_code(system, sample):
    system.mock.set_scenario(next=1, outcome="failure", code=-8)
    key = system.upload("idphoto/in/p.png", sample["portrait.png"], {"size": "300x400"})
    error = _failed(system, key)
    assert (error["type"], error["code"]) == ("UpstreamTaskFailedError", -8)


def test_hd_failed_task_is_recorded(system, sample):
    system.mock.set_scenario(next=1, outcome="failure", message="GPU fell over")
    key = system.upload("face_enhance/in/p.png", sample["portrait.png"], {})
    error = _failed(system, key)
    assert error["type"] == "UpstreamTaskFailedError"


def test_tencent_moderation_refusal_is_recorded_with_its_code(system, sample):
    system.mock.inject_fault(
        "provider_error", action="ReplaceBackground", code="OperationDenied.ImageIllegalDetected"
    )
    key = system.upload("replace_background/in/p.jpg", sample["product.jpg"], {"prompt": "a beach"})
    error = _failed(system, key)
    assert (error["type"], error["code"]) == (
        "UpstreamTaskFailedError",
        "OperationDenied.ImageIllegalDetected",
    )
    assert error["request_id"]


def test_transient_submit_errors_are_retried_and_paid_once(system, sample):
    system.mock.inject_fault("http_status", route="/api/submit_task", status=503, times=2)
    key = system.upload("redraw/in/i.png", sample["image.png"], {})
    execution, _ = system.run(key)
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert system.mock.count(route="/api/submit_task") == 3
    assert system.mock.count(route="/api/submit_task", paid=True) == 1


@pytest.mark.slow
def test_expired_result_url_fails_as_result_unavailable(system, sample):
    system.mock.inject_fault("http_status", route="/files/*", status=403, times=None)
    key = system.upload("remove_diamonds/in/i.png", sample["image.png"], {})
    error = _failed(system, key)
    assert (error["type"], error["code"]) == ("ResultUnavailableError", 403)
