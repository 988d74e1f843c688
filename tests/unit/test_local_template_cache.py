"""picflow_cli.local.template_cache: the kept answer is the SAM transform of template.yaml with the
stack's real parameter values (placeholders in, values put back), and a changed template is read
again."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from picflow_cli.local import template_cache
from picflow_cli.local.stack import _placeholder_code, load_template, repo_root

ROOT = repo_root()


def parameters(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {"TaskPicBaseUrl": url, "TencentEndpoint": url, "HdRedrawBaseUrl": url, "WaitScale": "0"}


class NoPolicies:
    """The policy loader's stand-in: template.yaml names no AWS managed policy by name."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    template = load_template(ROOT / "template.yaml")
    _placeholder_code(template, ROOT)
    return template


def direct(sam: dict[str, Any], values: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from samtranslator.translator.transform import transform

    edited = copy.deepcopy(sam)
    return edited, transform(edited, values, NoPolicies())


def test_a_kept_transform_is_the_transform_with_the_real_values(
    sam: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # GIVEN the first start (a miss) and a second one with another port (a hit)
    first = template_cache.transformed(copy.deepcopy(sam), parameters(40001), NoPolicies, tmp_path)
    kept = list(tmp_path.glob("transformed-*.json"))
    second = template_cache.transformed(copy.deepcopy(sam), parameters(40002), NoPolicies, tmp_path)
    # THEN each is what the transform makes of its own values, the second read from the first's file
    assert first == direct(sam, parameters(40001))
    assert second == direct(sam, parameters(40002))
    assert len(kept) == 1
    assert list(tmp_path.glob("transformed-*.json")) == kept


def test_a_changed_template_is_decoded_again(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    decoded: list[str] = []

    def decode(path: Path) -> dict[str, Any]:
        decoded.append(path.read_text())
        return {"Resources": {"Text": path.read_text()}}

    cache = tmp_path / "cache"
    template.write_text("a: 1\n")
    first = template_cache.decoded(template, decode, cache)
    assert template_cache.decoded(template, decode, cache) == first
    template.write_text("a: 2\n")
    assert template_cache.decoded(template, decode, cache) == {"Resources": {"Text": "a: 2\n"}}
    assert decoded == ["a: 1\n", "a: 2\n"]


def test_the_cache_can_be_turned_off_or_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PICFLOW_LOCAL_CACHE", raising=False)
    assert template_cache.cache_dir(ROOT) == ROOT / ".cache" / "local-stack"
    monkeypatch.setenv("PICFLOW_LOCAL_CACHE", "off")
    assert template_cache.cache_dir(ROOT) is None
    monkeypatch.setenv("PICFLOW_LOCAL_CACHE", str(tmp_path))
    assert template_cache.cache_dir(ROOT) == tmp_path
