"""Pipeline batches: the plan checks each step's params, progress groups an item's three jobs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from picflow.batch.pipeline import PIPELINE, pipeline_step_params
from picflow.batch.plan import plan_items
from picflow.batch.report import group_pipeline, summarise
from picflow.core.errors import ParamValidationError

ROOT = Path(__file__).resolve().parents[2]
BATCH_ASL = json.loads((ROOT / "statemachine" / "batch.asl.json").read_text())
PIPELINE_ASL = json.loads((ROOT / "statemachine" / "pipeline.asl.json").read_text())


def test_plan_pipeline_items_complete_upscale_from_redraws_default() -> None:
    rows = [{"key": "a.png"}, {"key": "b.png", "params": {"upscale": 4}}]

    items = plan_items(PIPELINE, {"prompt": "studio"}, rows, "in", "batch-1")

    assert [i["params"] for i in items] == [
        {"prompt": "studio", "upscale": 1.0},
        {"prompt": "studio", "upscale": 4},
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params.prompt"),  # background needs a prompt
        ({"prompt": ""}, "params.prompt"),
        ({"prompt": "studio", "upscale": 9}, "params.upscale"),  # redraw: 1-8
        ({"prompt": "studio", "color_count": 3}, "params.color_count"),  # not a pipeline param
    ],
)
def test_plan_pipeline_items_refuses_what_a_step_would_refuse_naming_the_field(
    params: dict[str, Any], field: str
) -> None:
    rows = [{"key": "a.png", "line": 2}, {"key": "b.png", "params": params, "line": 3}]

    with pytest.raises(ParamValidationError) as caught:
        plan_items(PIPELINE, {"prompt": "ok"} if params else {}, rows, "in", "batch-1")

    assert caught.value.field == field
    assert caught.value.message.startswith("manifest line 2: " if not params else "manifest line 3: ")


def test_pipeline_step_params_are_what_the_pipeline_asl_sends_each_step() -> None:
    # GIVEN the pipeline's three Task states, in order, and the values the batch gives
    names = ["Cutout", "Background", "Upscale"]
    state = {"prompt": "studio", "upscale": 2}

    # WHEN each step's params are resolved from the ASL ("x.$": "$.x" reads the pipeline input)
    def resolve(params: dict[str, Any]) -> dict[str, Any]:
        return {k.removesuffix(".$"): state[v[2:]] if k.endswith(".$") else v for k, v in params.items()}

    from_asl = [
        (
            PIPELINE_ASL["States"][n]["Parameters"]["Input"]["operation"],
            resolve(PIPELINE_ASL["States"][n]["Parameters"]["Input"]["params"]),
        )
        for n in names
    ]

    # THEN the plan validates exactly what the ASL will send
    assert pipeline_step_params(state) == from_asl


def test_pipeline_children_get_the_batch_id_and_reuse_with_defaults_for_a_direct_start() -> None:
    states = PIPELINE_ASL["States"]
    assert PIPELINE_ASL["StartAt"] == "Defaults"
    assert states["Defaults"]["Result"] == {"batch_id": None, "reuse": True, "tenant": "default"}
    for name in ("Cutout", "Background", "Upscale"):
        child = states[name]["Parameters"]["Input"]
        assert child["batch_id.$"] == "$.pipeline.options.batch_id"
        assert child["reuse.$"] == "$.pipeline.options.reuse"
        # A batch's pipeline jobs are the batch's tenant's (a direct start: the default tenant).
        assert child["tenant.$"] == "$.pipeline.options.tenant"


def test_pipeline_items_map_is_the_items_map_starting_the_pipeline() -> None:
    items, pipeline = BATCH_ASL["States"]["Items"], copy.deepcopy(BATCH_ASL["States"]["PipelineItems"])
    # Each map names its one state (names are unique in the whole machine).
    [(item_name, item_job)] = items["ItemProcessor"]["States"].items()
    [(name, job)] = pipeline["ItemProcessor"]["States"].items()
    assert pipeline["ItemProcessor"]["StartAt"] == name
    assert job["Parameters"]["StateMachineArn"] == "${PipelineStateMachineArn}"
    assert job["Parameters"]["Name.$"] == item_job["Parameters"]["Name.$"]
    assert job["Parameters"]["Input"]["batch_id.$"] == "$.batch_id"
    assert job["Parameters"]["Input"]["reuse.$"] == "$.reuse"

    for key in ("Parameters", "ResultSelector", "Comment"):
        job[key] = item_job[key]
    pipeline["ItemProcessor"] = {
        **pipeline["ItemProcessor"],
        "StartAt": item_name,
        "States": {item_name: job},
    }
    pipeline["Label"] = items["Label"]
    assert pipeline == items
    [choice] = [
        c for c in BATCH_ASL["States"][BATCH_ASL["StartAt"]]["Choices"] if c["Next"] == "PipelineItems"
    ]
    assert {"Variable": "$.pipeline", "BooleanEquals": True} in choice["And"]


def _step(job_id: str, status: str, **more: Any) -> dict[str, Any]:
    return {"job_id": job_id, "status": status, **more}


def test_group_pipeline_one_record_per_item_from_its_three_jobs() -> None:
    paid = {"submitted_at": "t", "cost_units": 1}
    records = [
        # item 0: all three done, the cutout reused, the other two paid
        _step("b-0-cutout", "SUCCEEDED", reused=True, cost_unit="taskpic.call"),
        _step("b-0-background", "SUCCEEDED", cost_unit="taskpic.call", **paid),
        _step("b-0-upscale", "SUCCEEDED", cost_unit="hdredraw.call", manifest={"key": "m0"}, **paid),
        # item 1: the background failed; its error, not a manifest
        _step("b-1-cutout", "SUCCEEDED", cost_unit="taskpic.call", **paid),
        _step("b-1-background", "FAILED", cost_unit="taskpic.call", error={"type": "X"}, **paid),
        # item 2: between steps (cutout done, background not started yet)
        _step("b-2-cutout", "SUCCEEDED", cost_unit="taskpic.call", **paid),
        # item 3: everything reused
        *(_step(f"b-3-{s}", "SUCCEEDED", reused=True) for s in ("cutout", "background", "upscale")),
    ]

    grouped = group_pipeline(records)

    assert sorted(grouped) == ["b-0", "b-1", "b-2", "b-3"]
    assert grouped["b-0"]["status"] == "SUCCEEDED"
    assert grouped["b-0"]["steps"] == ["b-0-cutout", "b-0-background", "b-0-upscale"]
    assert grouped["b-0"]["job_id"] == "b-0-upscale"
    assert grouped["b-0"]["manifest"] == {"key": "m0"}
    assert (grouped["b-0"]["cost_units"], grouped["b-0"]["cost_unit"]) == (2, "hdredraw.call+taskpic.call")
    assert grouped["b-0"]["reused"] is False
    assert (grouped["b-1"]["status"], grouped["b-1"]["error"], grouped["b-1"]["manifest"]) == (
        "FAILED",
        {"type": "X"},
        None,
    )
    assert grouped["b-1"]["cost_units"] == 2
    assert grouped["b-2"]["status"] == "RUNNING"
    assert grouped["b-3"]["reused"] is True
    assert grouped["b-3"]["cost_units"] == 0

    summary = summarise(list(grouped.values()), total=5)
    assert summary["counts"]["SUCCEEDED"] == 2
    assert summary["counts"]["FAILED"] == 1
    assert summary["counts"]["RUNNING"] == 1
    assert summary["counts"]["NOT_STARTED"] == 1
    assert summary["reused"] == 1
    assert summary["cost"]["units"] == 5


def test_batch_state_machine_may_start_wait_for_and_stop_pipelines(
    template_resources: dict[str, Any],
) -> None:
    # moto does not enforce IAM: without these grants a pipeline batch would fail only in AWS.
    props = template_resources["BatchStateMachine"]["Properties"]
    assert props["DefinitionSubstitutions"]["PipelineStateMachineArn"] == {"Ref": "PipelineStateMachine"}
    policies = props["Policies"]
    assert {
        "StepFunctionsExecutionPolicy": {"StateMachineName": {"Fn::GetAtt": ["PipelineStateMachine", "Name"]}}
    } in (policies)
    statements = [s for p in policies if "Statement" in p for s in p["Statement"]]
    pipeline_executions = [
        s for s in statements if "PipelineStateMachine.Name" in json.dumps(s.get("Resource"))
    ]
    assert any(
        {"states:DescribeExecution", "states:StopExecution"} <= set(s["Action"]) for s in pipeline_executions
    )
