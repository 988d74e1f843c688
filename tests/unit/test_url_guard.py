"""The one URL guard for what a provider names (result URLs) and what a caller hands on (URL
params), and the metric every refusal counts in (picflow.net.urls; no sockets: a fake DNS)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from picflow.core.catalogue import SPECS, Provider
from picflow.core.params import LogoParam, ReplaceBackgroundParams
from picflow.net.urls import (
    REFUSED_METRIC,
    UnsafeUrlError,
    check_param_urls,
    check_public_url,
    check_result_url,
)

PUBLIC = "93.184.216.34"
DNS = {
    "wxtechsz.oss-cn-shenzhen.aliyuncs.com": PUBLIC,
    "aiart-1234.cos.ap-guangzhou.myqcloud.com": PUBLIC,
    "cos.ap-guangzhou.myqcloud.com": PUBLIC,
    "api.domain.com": PUBLIC,
    "images.example.com": PUBLIC,
    "rebound.aliyuncs.com": "10.0.0.7",
}
TASKPIC, TENCENT, HDREDRAW = (SPECS[p] for p in (Provider.TASKPIC, Provider.TENCENT, Provider.HDREDRAW))


@pytest.fixture(autouse=True)
def _dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in DNS:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (DNS[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("PICFLOW_URL_ALLOWLIST", "PICFLOW_RESULT_HOSTS", "POWERTOOLS_METRICS_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "picflow")


def refusals(out: str) -> list[str]:
    """The ``where`` of each UnsafeUrlRefused metric (EMF lines) printed."""
    found = []
    for line in out.splitlines():
        if line.startswith("{") and REFUSED_METRIC in line:
            blob = json.loads(line)
            assert blob[REFUSED_METRIC] == [1.0] or blob[REFUSED_METRIC] == 1.0
            found.append(blob["where"])
    return found


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        (TASKPIC, "https://wxtechsz.oss-cn-shenzhen.aliyuncs.com/tasks/output/segmentation/a-image.png"),
        (TENCENT, "https://aiart-1234.cos.ap-guangzhou.myqcloud.com/x.jpg?q-sign-algorithm=sha1"),
        (HDREDRAW, "https://api.domain.com/api/images/xxx/task123/vector"),
    ],
)
def test_check_result_url_seed_documents_hosts_are_the_defaults(spec: Any, url: str) -> None:
    assert check_result_url(url, spec) == url


@pytest.mark.parametrize(
    ("spec", "url", "rule"),
    [
        # another provider's host, a lookalike, the bare wildcard suffix, another port
        (TASKPIC, "https://api.domain.com/api/images/x", "a result host of the provider"),
        (TENCENT, "https://x.cos.ap-guangzhou.myqcloud.com.example.com/", "a result host of the provider"),
        (TENCENT, "https://cos.ap-guangzhou.myqcloud.com/x.jpg", "a result host of the provider"),
        (HDREDRAW, "https://api.domain.com:8443/x", "a result host of the provider"),
        # whatever names them: loopback, metadata, schemes, user-info
        (TASKPIC, "http://127.0.0.1:8080/stolen.png", "a result host of the provider"),
        (HDREDRAW, "http://169.254.169.254/latest/meta-data/", "a result host of the provider"),
        (TASKPIC, "file:///etc/passwd", "http or https"),
        (HDREDRAW, "https://u:p@api.domain.com/x", "no user-info"),
    ],
)
def test_check_result_url_off_the_providers_hosts_refused_and_counted(
    spec: Any, url: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_result_url(url, spec)
    assert caught.value.rule == rule
    assert caught.value.code == "UnsafeUrl"
    assert refusals(capsys.readouterr().out) == ["result"]


def test_check_result_url_listed_host_that_resolves_inside_is_still_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PICFLOW_RESULT_HOSTS", "taskpic=*.aliyuncs.com")
    with pytest.raises(UnsafeUrlError) as caught:
        check_result_url("https://rebound.aliyuncs.com/x.png", TASKPIC)
    assert caught.value.rule == "a public host"
    assert refusals(capsys.readouterr().out) == ["result"]


def test_check_result_url_local_stack_adds_the_mock_and_nothing_else_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the local stack's settings: mock, moto and front door exempt from the address rules,
    # and only the mock a result host
    monkeypatch.setenv("PICFLOW_URL_ALLOWLIST", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")
    monkeypatch.setenv("PICFLOW_RESULT_HOSTS", "taskpic=127.0.0.1:7001,hdredraw=127.0.0.1:7001")
    assert check_result_url("http://127.0.0.1:7001/files/a.png", TASKPIC)
    for url in ("http://127.0.0.1:7002/bucket/key", "http://127.0.0.1:7003/jobs", "http://localhost:7001/a"):
        with pytest.raises(UnsafeUrlError):
            check_result_url(url, TASKPIC)
    with pytest.raises(UnsafeUrlError):
        check_result_url("http://127.0.0.1:7001/files/a.png", TENCENT)  # not listed for Tencent


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (ReplaceBackgroundParams(prompt="x", mask_url="http://169.254.169.254/latest/"), "mask_url"),
        (ReplaceBackgroundParams(prompt="x", mask_url="file:///etc/passwd"), "mask_url"),
        (
            ReplaceBackgroundParams(prompt="x", logo_param=LogoParam(logo_url="http://0x7f.1/logo.png")),
            "logo_param.logo_url",
        ),
    ],
)
def test_check_param_urls_names_the_field_and_counts(
    params: Any, field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UnsafeUrlError) as caught:
        check_param_urls(params)
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    assert refusals(capsys.readouterr().out) == ["params"]


def test_check_param_urls_public_urls_and_unmarked_text_pass(capsys: pytest.CaptureFixture[str]) -> None:
    params = ReplaceBackgroundParams(
        prompt="http://127.0.0.1/ is only text here",
        mask_url="https://images.example.com/mask.png",
        logo_param=LogoParam(logo_url="https://images.example.com/logo.png"),
    )
    assert params.url_params() == [
        ("mask_url", "https://images.example.com/mask.png"),
        ("logo_param.logo_url", "https://images.example.com/logo.png"),
    ]
    check_param_urls(params)
    assert refusals(capsys.readouterr().out) == []


def test_check_public_url_refusal_counts_under_its_where(capsys: pytest.CaptureFixture[str]) -> None:
    for where in ("input", "notify_url", "manifest"):
        with pytest.raises(UnsafeUrlError):
            check_public_url("http://10.0.0.1/x", where=where)
    assert check_public_url("https://images.example.com/a.png")
    assert refusals(capsys.readouterr().out) == ["input", "notify_url", "manifest"]
