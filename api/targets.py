"""A fan-out push's rooms while it runs: add one, remove one.

``POST /v1/pushes/<id>/targets`` (body: one ``TargetRequest``) and
``DELETE /v1/pushes/<id>/targets/<TargetId>``. The API writes the change into the push's
record, and a new room's UserSig into its secrets, in one step (``JobStore.add_target``,
``remove_target``), then tells the push over its control channel with the TargetId alone:
the worker reads the room and its UserSig from Redis, so no UserSig travels over pub/sub.
Answers: 202 (sent), 400 (bad body, field named; a TargetId in use; a room this UserId
publishes into already), 404 (unknown push or target), 409 (not running, not started with
``Targets``, the last room left, nobody listening).
"""

from __future__ import annotations

import contextlib
from typing import cast

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from jobs.commands import ADD_TARGET, REMOVE_TARGET, target_message
from jobs.errors import InvalidJob, NotFanout, NotListening, NotRunning, RoomcastError
from jobs.states import State
from jobs.store import Job, JobStore

from .errors import invalid_job_from
from .keys import visible_job
from .models import MAX_TARGETS, TargetRequest
from .player import deliver
from .views import json_object, target_room, user_sig_for

bp = Blueprint("targets", __name__)


@bp.post("/v1/pushes/<request_id>/targets")
def add(request_id: str) -> ResponseReturnValue:
    """Add a room to a running fan-out push; it joins at the next keyframe."""
    store = _store()
    job = _fanout(store, request_id)
    try:
        target = TargetRequest.model_validate(json_object())
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    if len(job.record.Targets or []) >= MAX_TARGETS:
        raise InvalidJob(f"a push has at most {MAX_TARGETS} rooms besides its own", field="Targets")
    app = job.record.SdkAppId
    sig = user_sig_for(app, target.UserId, target.UserSig)
    target_id = store.add_target(
        request_id, target.TargetId, target_room(target), target.UserId, sig
    )
    if not deliver(store, request_id, target_message(ADD_TARGET, target_id)):
        # Not in the record either, or the push's next run would publish there. (A push
        # that ended meanwhile keeps it: it runs no more.)
        with contextlib.suppress(RoomcastError):
            store.remove_target(request_id, target_id)
        raise NotListening("the push is not listening (its worker may be gone)")
    current_app.logger.info("push %s: target %s added", request_id, target_id)
    return _sent(request_id, target_id)


@bp.delete("/v1/pushes/<request_id>/targets/<target_id>")
def remove(request_id: str, target_id: str) -> ResponseReturnValue:
    """Remove a room from a running fan-out push; its publisher leaves the room."""
    store = _store()
    _fanout(store, request_id)
    store.remove_target(request_id, target_id)
    if not deliver(store, request_id, target_message(REMOVE_TARGET, target_id)):
        raise NotListening(
            "the push is not listening (its worker may be gone); the target is out of its "
            "record, so the push does not publish there if it runs again"
        )
    current_app.logger.info("push %s: target %s removed", request_id, target_id)
    return _sent(request_id, target_id)


def _store() -> JobStore:
    return cast(JobStore, current_app.extensions["roomcast.store"])


def _fanout(store: JobStore, request_id: str) -> Job:
    """The push, if its rooms may change now: 404 unknown, 409 not running or not fan-out.
    (Checked again, in the same step as the change, by the store.)"""
    job = visible_job(store, request_id)
    if job.state is not State.RUNNING:
        raise NotRunning(f"the push is {job.state.value}: its targets change while it runs")
    if job.record.Targets is None:
        raise NotFanout()
    return job


def _sent(request_id: str, target_id: str) -> ResponseReturnValue:
    response = jsonify({"RequestId": request_id, "TargetId": target_id})
    response.status_code = 202
    return response
