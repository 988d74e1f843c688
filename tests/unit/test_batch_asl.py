"""statemachine/batch.asl.json: the map variants (key items, URL items, pipeline items, pipeline URL
items) differ only by what they are meant to, and the Source Choice picks one once per batch."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())


def _without_fetch(fetching: dict[str, Any], plain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``fetching`` with its Fetch step taken out (and its Label made ``plain``'s), and the Fetch."""
    fetching = copy.deepcopy(fetching)
    processor = fetching["ItemProcessor"]
    fetch: dict[str, Any] = processor["States"].pop("Fetch")
    assert processor.pop("StartAt") == "Fetch"
    assert fetch["Next"] == plain["ItemProcessor"]["StartAt"]
    assert fetch["ResultPath"] is None  # the item's key is planned; Fetch only fills it
    processor["StartAt"] = plain["ItemProcessor"]["StartAt"]
    fetching["Label"] = plain["Label"]
    return fetching, fetch


def test_url_items_map_is_the_items_map_with_fetch_before_the_job() -> None:
    items = ASL["States"]["Items"]

    url_items, _ = _without_fetch(ASL["States"]["UrlItems"], items)

    assert url_items == items


def test_pipeline_url_items_map_is_the_pipeline_items_map_with_the_same_fetch_before_the_pipeline() -> None:
    pipeline_items = ASL["States"]["PipelineItems"]

    pipeline_url_items, fetch = _without_fetch(ASL["States"]["PipelineUrlItems"], pipeline_items)

    assert pipeline_url_items == pipeline_items
    assert fetch == ASL["States"]["UrlItems"]["ItemProcessor"]["States"]["Fetch"]
    labels = [s["Label"] for s in ASL["States"].values() if s["Type"] == "Map"]
    assert len(set(labels)) == len(labels) == 4  # a map run's name carries its label


def _matches(rule: dict[str, Any], state: dict[str, Any]) -> bool:
    """The few Choice Rule operators the Source Choice uses, on a flat input."""
    if "And" in rule:
        return all(_matches(r, state) for r in rule["And"])
    name = rule["Variable"].removeprefix("$.")
    if "IsPresent" in rule:
        return (name in state) == rule["IsPresent"]
    return state.get(name) == rule["BooleanEquals"]


def _source(state: dict[str, Any]) -> str:
    source = ASL["States"][ASL["StartAt"]]
    assert source["Type"] == "Choice"
    return next((c["Next"] for c in source["Choices"] if _matches(c, state)), source["Default"])


@pytest.mark.parametrize(
    ("state", "map_state"),
    [
        ({"has_urls": False, "pipeline": False}, "Items"),
        ({}, "Items"),  # a batch started before has_urls/pipeline existed
        ({"has_urls": True, "pipeline": False}, "UrlItems"),
        ({"has_urls": False, "pipeline": True}, "PipelineItems"),
        ({"pipeline": True}, "PipelineItems"),
        ({"has_urls": True, "pipeline": True}, "PipelineUrlItems"),
    ],
)
def test_source_picks_a_fetching_map_only_for_a_batch_with_url_items(
    state: dict[str, Any], map_state: str
) -> None:
    assert _source(state) == map_state
