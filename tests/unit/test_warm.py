"""picflow.core.warm: what a Lambda keeps for the container is frozen out of the cyclic GC's way."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from picflow.core import warm


@pytest.fixture
def gc_state() -> Iterator[None]:
    enabled, threshold, freezing = gc.isenabled(), gc.get_threshold(), warm._freezing
    yield
    gc.set_threshold(*threshold)
    warm._freezing = freezing
    (gc.enable if enabled else gc.disable)()


def test_long_lived_in_a_lambda_builds_with_the_gc_paused_then_freezes_it(
    gc_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "_freezing", True)
    gc.enable()
    frozen = gc.get_freeze_count()

    with warm.long_lived():
        assert not gc.isenabled()
        built = [[i] for i in range(100)]  # a container's worth of tracked objects

    assert gc.isenabled()
    assert gc.get_freeze_count() >= frozen + len(built)
    assert gc.get_count()[0] < 100  # its allocations set off no young collection later


def test_long_lived_during_init_leaves_the_gc_off_for_init_done(
    gc_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "_freezing", True)
    gc.disable()

    with warm.long_lived():
        pass

    assert not gc.isenabled()


def test_long_lived_outside_a_lambda_changes_nothing(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm, "_freezing", False)
    gc.enable()
    frozen = gc.get_freeze_count()

    with warm.long_lived():
        assert gc.isenabled()
        [[i] for i in range(100)]

    assert gc.get_freeze_count() == frozen


def test_init_done_freezes_only_in_a_lambda(gc_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    warm.init_done()
    assert warm._freezing is False
    assert gc.isenabled()

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "picflow-api")
    warm.init_done()
    assert warm._freezing is True
