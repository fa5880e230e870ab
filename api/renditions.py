"""``/v1/renditions``: prepare clips ahead of class, and follow the preparation."""

from __future__ import annotations

import uuid
from typing import cast

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from jobs.errors import NotFound
from jobs.preparations import ClipPreparation, Preparation, PreparationStore
from jobs.records import iso
from jobs.redact import redact_url
from jobs.settings import Settings
from jobs.store import JobStore, now
from worker.messages import send_preparation

from .errors import invalid_job_from
from .keys import check_app, current_key
from .models import PrepareRequest
from .responses import PrepareAccepted
from .views import enqueue_or_discard, guard_urls, json_object

bp = Blueprint("renditions", __name__)


def _preparations() -> PreparationStore:
    store = cast(JobStore, current_app.extensions["roomcast.store"])
    settings = cast(Settings, current_app.extensions["roomcast.settings"])
    return PreparationStore(store.redis, settings.job_ttl_seconds)


@bp.post("/v1/renditions")
def prepare() -> ResponseReturnValue:
    """Encode clips once into renditions, so that switchable pushes remux them."""
    try:
        asked = PrepareRequest.model_validate(json_object())
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    check_app(asked.SdkAppId)
    if cast(Settings, current_app.extensions["roomcast.settings"]).block_private_addresses:
        guard_urls([("Clips", url) for url in asked.Clips])
    request_id = str(uuid.uuid4())
    preparation = Preparation(
        RequestId=request_id,
        SdkAppId=asked.SdkAppId,
        Format=asked.asked_format(),
        Clips=[ClipPreparation(VideoSrc=redact_url(url)) for url in asked.Clips],
        CreatedAt=iso(now()) or "",
    )
    store = _preparations()
    store.create(preparation, list(asked.Clips))
    enqueue_or_discard(
        f"preparation {request_id}",
        lambda: send_preparation(current_app.extensions["celery"], request_id),
        lambda: store.discard(request_id),
    )
    current_app.logger.info("preparation %s queued: %d clips", request_id, len(asked.Clips))
    answer = PrepareAccepted(RequestId=request_id, Message="Renditions are being prepared")
    response = jsonify(answer.model_dump())
    response.status_code = 202
    response.headers["Location"] = f"/v1/renditions/{request_id}"
    return response


@bp.get("/v1/renditions/<request_id>")
def preparation(request_id: str) -> ResponseReturnValue:
    """A preparation: each clip's state, progress and rendition length."""
    found = _preparations().get(request_id)
    if found is None or not current_key().allows(found.SdkAppId):
        raise NotFound(f"no preparation with request id {request_id!r}")
    return jsonify(found.model_dump())
