"""statemachine/batch.asl.json: the map variants (key items, URL items, pipeline items, pipeline URL
items) differ only by what they are meant to, and the Source Choice picks one once per batch."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())


def _state_names(machine: dict[str, Any]) -> list[str]:
    """Every state's name, map processors' included."""
    names: list[str] = []
    for name, state in machine["States"].items():
        names.append(name)
        for inner in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if inner is not None:
                names += _state_names(inner)
    return names


def _only_state(processor: dict[str, Any]) -> str:
    [name] = processor["States"]
    assert processor["StartAt"] == name
    return name


def _without_fetch(fetching: dict[str, Any], plain: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``fetching`` with its fetch step taken out, its job state renamed to ``plain``'s (names
    are unique in the whole machine, so each map names its own) and its Label made ``plain``'s;
    and the fetch step, without its Next."""
    fetching = copy.deepcopy(fetching)
    processor = fetching["ItemProcessor"]
    fetch: dict[str, Any] = processor["States"].pop(processor["StartAt"])
    job_name = _only_state({"StartAt": fetch.pop("Next"), "States": processor["States"]})
    assert fetch["Resource"] == "${FetchFunctionArn}"
    assert fetch["ResultPath"] is None  # the item's key is planned; the fetch step only fills it
    plain_job = _only_state(plain["ItemProcessor"])
    processor["StartAt"] = plain_job
    processor["States"] = {plain_job: processor["States"].pop(job_name)}
    fetching["Label"] = plain["Label"]
    return fetching, fetch


def test_state_names_are_unique_in_the_whole_machine() -> None:
    # AWS refuses a definition that repeats a name anywhere, a map's ItemProcessor included.
    names = _state_names(ASL)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_url_items_map_is_the_items_map_with_fetch_before_the_job() -> None:
    items = ASL["States"]["Items"]

    url_items, _ = _without_fetch(ASL["States"]["UrlItems"], items)

    assert url_items == items


def test_pipeline_url_items_map_is_the_pipeline_items_map_with_the_same_fetch_before_the_pipeline() -> None:
    pipeline_items = ASL["States"]["PipelineItems"]

    pipeline_url_items, fetch = _without_fetch(ASL["States"]["PipelineUrlItems"], pipeline_items)

    assert pipeline_url_items == pipeline_items
    assert fetch == _without_fetch(ASL["States"]["UrlItems"], ASL["States"]["Items"])[1]
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
