"""``POST /uploads``: a presigned PUT for an input image (or a batch manifest)."""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router

from picflow.api.common import UPLOAD_URL_TTL, responses, tenant_of
from picflow.api.errors import ApiError
from picflow.api.models import UploadRequest, UploadResponse
from picflow.aws.services import services
from picflow.core import config
from picflow.core.names import upload_key

if TYPE_CHECKING:
    pass

__all__ = ["create_upload"]

router = Router()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated


_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_filename(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_FILENAME.sub("_", base).lstrip("._")[:100]
    if not cleaned:
        raise ApiError(
            422,
            "RequestValidationError",
            "filename has no usable characters",
            field="filename",
            rule="letters, digits, . _ -",
        )
    return cleaned


@router.post(
    "/uploads",
    summary="Presigned PUT for an input image",
    responses=responses(201, "Upload URL created", 400, 415),
    tags=["uploads"],
)
def create_upload(body: UploadRequest) -> Response[UploadResponse]:
    upload_id = uuid.uuid4().hex
    # Under the caller's root (tenants/<id>/uploads/...): only its own jobs and batches may name it.
    key = upload_key(upload_id, _safe_filename(body.filename), tenant_of(router.current_event))
    url = services().presigner.generate_presigned_url(
        "put_object",
        Params={"Bucket": config.env(config.INPUT_BUCKET), "Key": key, "ContentType": body.content_type},
        ExpiresIn=UPLOAD_URL_TTL,
    )
    out = UploadResponse(
        upload_id=upload_id,
        key=key,
        url=url,
        headers={"Content-Type": body.content_type},
        expires_in=UPLOAD_URL_TTL,
    )
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=out)
