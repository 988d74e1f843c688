"""``GET /operations``: the catalogue, and the pipeline a batch can run."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from picflow.api.common import responses
from picflow.api.models import OperationList
from picflow.core.catalogue import (
    describe_catalogue,
)

__all__ = ["list_operations"]

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated


@router.get(
    "/operations",
    summary="The operation catalogue",
    responses=responses(200, "Every operation"),
    tags=["operations"],
)
def list_operations() -> OperationList:
    from picflow.batch.pipeline import describe_pipeline  # only this route describes it

    return OperationList(operations=describe_catalogue(), pipelines=[describe_pipeline()])
