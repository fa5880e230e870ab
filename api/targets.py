"""A fan-out push's rooms while it runs: add one, remove one.

``POST /v1/pushes/<id>/targets`` (body: one ``TargetRequest``) and
``DELETE /v1/pushes/<id>/targets/<TargetId>``. The API writes the change into the push's
record, and a new room's UserSig into its secrets, in one step (``JobStore.add_target``,
``remove_target``), then tells the push over its control channel with the TargetId alone:
the worker reads the room and its UserSig from Redis, so no UserSig travels over pub/sub.
A push that waits for a worker (queued, or handed back by one that stopped) takes the
change into its record alone, which its next run reads. Answers: 202 (sent), 400 (bad body,
field named; a TargetId in use; a room this UserId publishes into already), 404 (unknown
push or target), 409 (ended, not started with ``Targets``, the last room left, nobody
listening).
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from jobs.commands import ADD_TARGET, REMOVE_TARGET, target_message
from jobs.errors import InvalidJob, NotFanout, NotListening, NotRunning, RoomcastError
from jobs.shards import MAX_ROOMS, MAX_SHARD_ROOMS, rooms_of
from jobs.states import State
from jobs.stops import Stop, StopCause
from jobs.store import Job, JobStore

from .errors import invalid_job_from
from .keys import visible_job
from .models import TargetRequest
from .player import deliver
from .views import json_object, target_room, user_sig_for

bp = Blueprint("targets", __name__)


@bp.post("/v1/pushes/<request_id>/targets")
def add(request_id: str) -> ResponseReturnValue:
    """Add a room to a fan-out push that runs (it joins at the next keyframe) or waits to. A
    push split into shards takes it into its running shard with the fewest rooms."""
    store = _store()
    job = _fanout(store, request_id)
    try:
        target = TargetRequest.model_validate(json_object())
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    shards = _live_shards(store, job)
    # The running shard with the fewest rooms: it joins now. (A push whose every shard
    # waits for a worker takes it into the emptiest, for when it runs.)
    running = [shard for shard in shards if shard.state is State.RUNNING] or shards
    into = min(running, key=lambda shard: rooms_of(shard.record))
    if sum(rooms_of(shard.record) for shard in shards) >= MAX_ROOMS:
        raise InvalidJob(f"a push publishes to at most {MAX_ROOMS} rooms", field="Targets")
    if rooms_of(into.record) >= MAX_SHARD_ROOMS:
        raise InvalidJob(
            f"each of this push's shards publishes to {MAX_SHARD_ROOMS} rooms, the most one "
            "takes while it runs: start a push with more rooms instead",
            field="Targets",
        )
    target_id = target.TargetId
    if job.record.Shards:
        # The store checks the TargetId and the room within one shard; across them, here.
        target_id = _free_id(shards, target)
    app = job.record.SdkAppId
    sig = user_sig_for(app, target.UserId, target.UserSig)
    shard_id = into.request_id
    target_id = store.add_target(shard_id, target_id, target_room(target), target.UserId, sig)
    if not _told(store, shard_id, target_message(ADD_TARGET, target_id)):
        # Not in the record either, or the push's next run would publish there. (A push
        # that ended meanwhile keeps it: it runs no more.)
        with contextlib.suppress(RoomcastError):
            store.remove_target(shard_id, target_id)
        raise NotListening("the push is not listening (its worker may be gone)")
    current_app.logger.info("push %s: target %s added", shard_id, target_id)
    return _sent(request_id, target_id)


@bp.delete("/v1/pushes/<request_id>/targets/<target_id>")
def remove(request_id: str, target_id: str) -> ResponseReturnValue:
    """Remove a room from a fan-out push that runs (its publisher leaves the room) or waits
    to. The last room of a shard other than the push itself ends that shard."""
    store = _store()
    job = _fanout(store, request_id)
    holder = _holder(store, job, target_id)
    if holder is not job and rooms_of(holder.record) == 1:
        store.stop(holder.request_id, Stop(StopCause.API))
        current_app.logger.info("push %s: its last room %s removed", holder.request_id, target_id)
        return _sent(request_id, target_id)
    store.remove_target(holder.request_id, target_id)
    if not _told(store, holder.request_id, target_message(REMOVE_TARGET, target_id)):
        raise NotListening(
            "the push is not listening (its worker may be gone); the target is out of its "
            "record, so the push does not publish there if it runs again"
        )
    current_app.logger.info("push %s: target %s removed", holder.request_id, target_id)
    return _sent(request_id, target_id)


def _told(store: JobStore, request_id: str, message: dict[str, Any]) -> bool:
    """Whether the push heard of its changed record, or need not: one waiting for a worker
    (queued, or handed back) reads the record once it is marked running (worker/runner.py),
    so a change made before that is never missed, and none waits for a listener here."""
    job = store.get(request_id)
    if job is not None and job.state is State.QUEUED:
        return True
    return deliver(store, request_id, message)


def _live_shards(store: JobStore, job: Job) -> list[Job]:
    """The push and its shards (jobs/shards.py) that run or wait to."""
    shards = store.read(job.record.Shards or []).values()
    return [job, *(s for s in shards if not s.state.finished)]


def _holder(store: JobStore, job: Job, target_id: str) -> Job:
    """The shard publishing to ``target_id``: the push itself unless one of its others
    (the push itself, too, for a room nobody publishes to: the store answers 404)."""
    for shard in _live_shards(store, job):
        if any(t.TargetId == target_id for t in shard.record.targets() or ()):
            return shard
    return job


def _free_id(shards: list[Job], target: TargetRequest) -> str:
    """``target``'s TargetId (or the first free ``t<n>``), refused when another shard uses
    it or publishes as its UserId into its room."""
    rooms = [t for shard in shards for t in shard.record.targets() or ()]
    room = target_room(target).RtmpRoom
    for other in rooms:
        if other.Room.RtmpRoom == room and other.UserId == target.UserId:
            raise InvalidJob(
                f"target {other.TargetId!r} already publishes as UserId {target.UserId!r} "
                f"into room {room!r}: TRTC lets one user publish once per room",
                field="UserId",
            )
    used = {t.TargetId for t in rooms}
    if target.TargetId is not None:
        if target.TargetId in used:
            raise InvalidJob(
                f"TargetId {target.TargetId!r} is taken in this push: give another",
                field="TargetId",
            )
        return target.TargetId
    return next(f"t{n}" for n in range(1, len(used) + 2) if f"t{n}" not in used)


def _store() -> JobStore:
    return cast(JobStore, current_app.extensions["roomcast.store"])


def _fanout(store: JobStore, request_id: str) -> Job:
    """The push, if its rooms may change now: 404 unknown, 409 ended or not fan-out.
    (Checked again, in the same step as the change, by the store.)"""
    job = visible_job(store, request_id)
    if job.state.finished:
        raise NotRunning(
            f"the push is {job.state.value}: its targets change while it runs or waits to"
        )
    if job.record.Targets is None:
        raise NotFanout()
    return job


def _sent(request_id: str, target_id: str) -> ResponseReturnValue:
    response = jsonify({"RequestId": request_id, "TargetId": target_id})
    response.status_code = 202
    return response
