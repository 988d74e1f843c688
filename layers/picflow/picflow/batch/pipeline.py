"""The pipeline a batch can run per item instead of one operation (``operation: "pipeline"``).

statemachine/pipeline.asl.json runs three jobs per item, ``<batch id>-<index>-cutout|background|
upscale`` (:data:`PIPELINE_STEPS`), with fixed params plus the batch's ``prompt`` and ``upscale``
(:func:`pipeline_step_params`); the plan checks each step's params with the catalogue before
anything starts, and ``GET /operations`` describes it from the same table (:func:`describe_pipeline`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picflow.core.errors import ParamValidationError

if TYPE_CHECKING:
    pass

__all__ = ["PIPELINE", "PIPELINE_STEPS", "describe_pipeline", "pipeline_step_params"]


# The name a batch gives instead of an operation to run statemachine/pipeline.asl.json per item.
PIPELINE = "pipeline"


# The pipeline's steps in order, as its ASL runs them: job name suffix and operation.
PIPELINE_STEPS = (("cutout", "segmentation"), ("background", "background"), ("upscale", "redraw"))


_PIPELINE_PARAMS = ("prompt", "upscale")


def pipeline_step_params(params: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What each pipeline step's job gets (statemachine/pipeline.asl.json's fixed params plus the
    batch's ``prompt`` and ``upscale``), as (operation, params) in step order."""
    unknown = sorted(set(params) - set(_PIPELINE_PARAMS))
    if unknown:
        raise ParamValidationError(
            f"{PIPELINE}: {unknown[0]} is not a parameter of the pipeline (it takes prompt, upscale)",
            field=unknown[0],
            rule="one of prompt, upscale",
        )
    picked = {k: params[k] for k in _PIPELINE_PARAMS if k in params}
    return [
        ("segmentation", {"format": "png"}),
        ("background", {"batch_size": 1} | ({"prompt": picked["prompt"]} if "prompt" in picked else {})),
        ("redraw", {"upscale": picked["upscale"]} if "upscale" in picked else {}),
    ]


def describe_pipeline() -> dict[str, Any]:
    """The pipeline as ``GET /operations`` lists it beside the operations: its steps with the
    params each is given, and the batch params it takes, each described by the step that uses
    it (so the rules are the catalogue's, not a copy)."""
    from picflow.core.catalogue import describe_operation, get_operation

    bare = pipeline_step_params({})
    steps = [
        {"step": step, "operation": op, "params": fixed}
        for (step, _), (op, fixed) in zip(PIPELINE_STEPS, bare, strict=True)
    ]
    params = []
    for name in _PIPELINE_PARAMS:
        given = pipeline_step_params({name: "x"})
        # The step that takes ``name`` is the one whose params change when it is given.
        op = next(o for (o, with_it), (_, without) in zip(given, bare, strict=True) if with_it != without)
        described = next(p for p in describe_operation(get_operation(op))["params"] if p["name"] == name)
        params.append({**described, "operation": op})
    return {
        "pipeline": PIPELINE,
        "summary": "cutout, then a new background, then upscale/redraw, per item",
        "steps": steps,
        "params": params,
        "runs_in": 'POST /batches with "operation": "pipeline"',
    }
