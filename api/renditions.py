"""``/v1/renditions``: prepare clips ahead of class, and follow the preparation."""

from __future__ import annotations

import time
import uuid
from typing import cast

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from jobs.errors import AlreadyFinished, NotFound
from jobs.preparations import (
    ENDED,
    ClipPreparation,
    Preparation,
    PreparationStore,
    stop_preparation,
)
from jobs.records import iso
from jobs.redact import redact_url
from jobs.settings import Settings
from jobs.stops import Stop, StopCause
from jobs.store import JobStore, now
from worker.messages import send_preparation

from .errors import invalid_job_from
from .events import event_stream, replay_events
from .keys import check_app, current_key
from .models import PrepareRequest
from .responses import PrepareAccepted
from .views import (
    STOP_CONFIRM_SECONDS,
    check_callback_secret,
    enqueue_or_discard,
    guard_urls,
    json_object,
    tell_celery_revoked,
)

bp = Blueprint("renditions", __name__)


def _preparations() -> PreparationStore:
    return PreparationStore.of(cast(JobStore, current_app.extensions["roomcast.store"]))


def _visible(request_id: str) -> Preparation:
    """The preparation, if the caller's API key may see it; else 404."""
    found = _current(request_id)
    if found is None or not current_key().allows(found.SdkAppId):
        raise NotFound(f"no preparation with request id {request_id!r}")
    return found


def _current(request_id: str) -> Preparation | None:
    """The preparation as it stands, ended first if its worker was lost."""
    store = _preparations()
    found = store.get(request_id)
    if found is not None and store.end_if_lost(request_id, found):
        found = store.get(request_id)
    return found


@bp.post("/v1/renditions")
def prepare() -> ResponseReturnValue:
    """Encode clips once into renditions, so that switchable pushes remux them."""
    try:
        asked = PrepareRequest.model_validate(json_object())
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    check_app(asked.SdkAppId)
    check_callback_secret(asked.CallbackUrl)
    if cast(Settings, current_app.extensions["roomcast.settings"]).block_private_addresses:
        callback = [("CallbackUrl", asked.CallbackUrl)] if asked.CallbackUrl else []
        guard_urls([("Clips", url) for url in asked.Clips] + callback)
    request_id = str(uuid.uuid4())
    preparation = Preparation(
        RequestId=request_id,
        SdkAppId=asked.SdkAppId,
        Format=asked.asked_format(),
        Clips=[ClipPreparation(VideoSrc=redact_url(url)) for url in asked.Clips],
        CreatedAt=iso(now()) or "",
    )
    store = _preparations()
    store.create(preparation, list(asked.Clips), asked.CallbackUrl)
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
    return jsonify(_visible(request_id).model_dump())


@bp.post("/v1/renditions/<request_id>/stop")
@bp.delete("/v1/renditions/<request_id>")
def stop(request_id: str) -> ResponseReturnValue:
    """Stop a queued or running preparation (idempotent); 409 for one that already ended.

    The clip being encoded is abandoned (no half rendition is kept); the ones ready stay.
    """
    seen = _visible(request_id)
    stop = Stop(StopCause.API)
    found = stop_preparation(_preparations(), request_id, stop, seen)
    if found is None:
        raise NotFound(f"no preparation with request id {request_id!r}")
    if found in ("succeeded", "failed"):
        raise AlreadyFinished(found, "preparation")
    if found == "queued":
        tell_celery_revoked(request_id, stop.reason_queued)
    current_app.logger.info("preparation %s: stop asked while %s", request_id, found)
    last = _wait_ended(request_id, STOP_CONFIRM_SECONDS) or seen
    response = jsonify(last.model_dump())
    response.status_code = 200 if last.State in ENDED else 202
    return response


def _wait_ended(request_id: str, seconds: float) -> Preparation | None:
    """The preparation once ended, or as last read when ``seconds`` ran out (None: gone)."""
    deadline = time.monotonic() + seconds
    while True:
        found = _current(request_id)
        if found is None or found.State in ENDED or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


@bp.get("/v1/renditions/<request_id>/events")
def events(request_id: str) -> ResponseReturnValue:
    """Stream the preparation's events (server-sent events) until its final one."""
    _visible(request_id)

    def ended() -> bool:
        found = _current(request_id)
        return found is None or found.State in ENDED

    return event_stream(request_id, ended)


@bp.post("/v1/renditions/<request_id>/events/replay")
def replay(request_id: str) -> ResponseReturnValue:
    """Send the preparation's events to its callback URL again."""
    return replay_events(request_id, _visible(request_id).Callbacks, "preparation")
