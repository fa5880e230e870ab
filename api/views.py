"""The HTTP API (v1): validate, enqueue, report, stop. Nothing here touches media."""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from pipeline.errors import InvalidJob
from pipeline.redact import redact_url
from worker.jobs import FINISHED, JobStore, State, now
from worker.rooms import rtmp_room
from worker.settings import Settings
from worker.tasks import push_task

from .errors import ApiError, invalid_job_from
from .models import PushRequest

bp = Blueprint("pushes", __name__)

#: How long a stop call waits for the push to confirm before answering 202.
STOP_CONFIRM_SECONDS = 2.0
#: After this long without confirmation, the stop escalates to revoke(terminate=True).
STOP_ESCALATE_SECONDS = 1.0


def _store() -> JobStore:
    return cast(JobStore, current_app.extensions["roomcast.store"])


def _settings() -> Settings:
    return cast(Settings, current_app.extensions["roomcast.settings"])


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness and Redis reachability."""
    _store().redis.ping()
    return jsonify({"Status": "ok"})


@bp.post("/")
@bp.post("/v1/pushes")
def submit() -> ResponseReturnValue:
    """Validate a push request, record it, enqueue it; answer 202 with its request id."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidJob("the body must be a JSON object", field=None)
    try:
        job = PushRequest.model_validate(body, context={"schemes": _settings().schemes})
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    request_id = str(uuid.uuid4())
    room = _room(job)
    doc: dict[str, Any] = {
        "Mode": job.Mode,
        "SdkAppId": job.SdkAppId,
        "Room": room,
        "UserId": job.UserId,
        "VideoSrc": redact_url(job.VideoSrc),
        "Redis": job.Redis,
        "RedisHost": job.RedisHost,
        "RedisPort": job.RedisPort,
        "RedisTls": job.RedisTls,
        "MaxDuration": job.MaxDuration,
        "CreatedAt": now(),
    }
    secrets = {"UserSig": job.UserSig, "RedisPassword": job.RedisPassword, "VideoSrc": job.VideoSrc}
    _store().create(request_id, doc, secrets)
    push_task.apply_async(args=[request_id], task_id=request_id)
    current_app.logger.info(
        "push %s queued: %s into room %s as %s",
        request_id,
        doc["VideoSrc"],
        room["RtmpRoom"],
        job.UserId,
    )
    response = jsonify({"RequestId": request_id, "Message": "Async run task submitted"})
    response.status_code = 202
    response.headers["X-Request-Id"] = request_id
    response.headers["x-scf-reqid"] = request_id
    response.headers["Location"] = f"/v1/pushes/{request_id}"
    return response


def _room(job: PushRequest) -> dict[str, Any]:
    rtmp = rtmp_room(job.RoomId, job.StrRoomId)
    if job.RoomId is not None:
        return {
            "RoomId": job.RoomId,
            "RtmpRoom": rtmp,
            "Note": f"TRTC's RTMP ingest takes string rooms only: pushed into string room {rtmp!r}",
        }
    return {"StrRoomId": job.StrRoomId, "RtmpRoom": rtmp}


@bp.get("/v1/pushes/<request_id>")
def status(request_id: str) -> ResponseReturnValue:
    """One push's state and progress."""
    job = _store().get(request_id)
    if job is None:
        raise ApiError(404, "NotFound", f"no push with request id {request_id!r}")
    return jsonify(job.as_status())


@bp.get("/v1/pushes")
def listing() -> ResponseReturnValue:
    """Pushes newest first, filtered by State, UserId (+SdkAppId), room and time."""
    args = request.args
    state = None
    if "State" in args:
        try:
            state = State(args["State"])
        except ValueError:
            raise InvalidJob(
                f"State must be one of {', '.join(s.value for s in State)}", field="State"
            ) from None
    limit = _int_arg("Limit", 50, 1, 1000)
    app_id = _int_arg("SdkAppId", 0, 0, 4_294_967_295)
    user = (app_id, args["UserId"]) if "UserId" in args else None
    room = (app_id, args["Room"]) if "Room" in args else None
    if (user or room) and not app_id:
        raise InvalidJob("SdkAppId is required with UserId or Room", field="SdkAppId")
    since = _float_arg("Since")
    until = _float_arg("Until")
    store = _store()
    jobs = store.list(state=state, limit=limit, user=user, room=room, since=since, until=until)
    return jsonify({"Pushes": [j.as_status() for j in jobs], "Stats": store.stats()})


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidJob(f"{name} must be an integer", field=name) from None
    if not low <= value <= high:
        raise InvalidJob(f"{name} must be between {low} and {high}", field=name)
    return value


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidJob(f"{name} must be a Unix time in seconds", field=name) from None


@bp.post("/v1/pushes/<request_id>/stop")
@bp.delete("/v1/pushes/<request_id>")
def stop(request_id: str) -> ResponseReturnValue:
    """Stop a queued or running push (idempotent); 409 for one that already ended."""
    store = _store()
    job = store.get(request_id)
    if job is None:
        raise ApiError(404, "NotFound", f"no push with request id {request_id!r}")
    if job.state is State.STOPPED:
        return jsonify(job.as_status())
    if job.state in FINISHED:
        raise ApiError(
            409,
            "AlreadyFinished",
            f"the push already ended in state {job.state.value}",
            State=job.state.value,
        )
    celery = current_app.extensions["celery"]
    reason = "stopped by request"
    if job.state is State.QUEUED:
        # Revoked tasks are discarded by every worker; the state change makes sure.
        celery.control.revoke(request_id)
        if store.finish(request_id, State.STOPPED, Reason="stopped before it started"):
            current_app.logger.info("push %s stopped while queued", request_id)
            return jsonify(_current(store, request_id))
    store.request_stop(request_id, reason)
    celery.control.revoke(request_id)
    current_app.logger.info("push %s: stop requested", request_id)
    job_state = _wait_finished(store, request_id, STOP_ESCALATE_SECONDS)
    if job_state is None:
        # The pipeline did not confirm through the control channel: have Celery signal the
        # task's process (prefork pool), which the task turns into the same clean stop.
        celery.control.revoke(request_id, terminate=True, signal="SIGUSR1")
        job_state = _wait_finished(store, request_id, STOP_CONFIRM_SECONDS)
    body = _current(store, request_id)
    return Response(
        status=200 if job_state else 202,
        response=current_app.json.dumps(body),
        mimetype="application/json",
    )


def _wait_finished(store: JobStore, request_id: str, seconds: float) -> State | None:
    deadline = time.monotonic() + seconds
    while True:
        job = store.get(request_id)
        if job is not None and job.state in FINISHED:
            return job.state
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def _current(store: JobStore, request_id: str) -> dict[str, Any]:
    job = store.get(request_id)
    return job.as_status() if job is not None else {"RequestId": request_id}
