"""statemachine/batch.asl.json: the two maps (key items, URL items) differ only by Fetch."""

from __future__ import annotations

import copy
import json
from pathlib import Path

ASL = json.loads((Path(__file__).resolve().parents[2] / "statemachine" / "batch.asl.json").read_text())


def test_url_items_map_is_the_items_map_with_fetch_before_the_job() -> None:
    items, url_items = ASL["States"]["Items"], copy.deepcopy(ASL["States"]["UrlItems"])
    processor = url_items["ItemProcessor"]

    fetch = processor["States"].pop("Fetch")
    assert processor.pop("StartAt") == "Fetch"
    assert fetch["Next"] == items["ItemProcessor"]["StartAt"]
    assert fetch["ResultPath"] is None  # the item's key is planned; Fetch only fills it
    processor["StartAt"] = items["ItemProcessor"]["StartAt"]
    url_items["Label"] = items["Label"]
    assert url_items == items


def test_only_a_batch_with_url_items_takes_the_fetching_map() -> None:
    source = ASL["States"][ASL["StartAt"]]
    assert source["Type"] == "Choice"
    assert source["Default"] == "Items"
    [choice] = [c for c in source["Choices"] if c["Next"] == "UrlItems"]
    assert {"Variable": "$.has_urls", "IsPresent": True} in choice["And"]
