"""The HTTP API (v1): validate, enqueue, report, stop. Nothing here touches media."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import closing
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from redis import RedisError

from jobs.bookmarks import open_bookmark
from jobs.errors import (
    AlreadyFinished,
    InvalidJob,
    NotFound,
    ProgressStoreError,
    PublisherBusy,
    ServiceUnavailable,
    SourceError,
    UnsupportedMediaType,
)
from jobs.records import JobRecord, JobSecrets, ListQuery, PushRoom, PushTarget
from jobs.redact import redact_url
from jobs.rooms import rtmp_room
from jobs.settings import Settings
from jobs.shards import Shard, by_position, merged_status, shard
from jobs.states import FINISHED, State
from jobs.stops import Stop, StopCause
from jobs.store import Job, JobStore, now
from jobs.urlguard import check_source_address, redis_host_url
from jobs.usersig import UserSigError, check, generate
from worker.celerystate import mark_revoked
from worker.messages import enqueue

from .errors import invalid_job_from
from .keys import check_app, current_key, visible_job
from .models import PushRequest, TargetRequest, WhipRequest

bp = Blueprint("pushes", __name__)

#: How long a stop call waits for the push to confirm before answering 202.
STOP_CONFIRM_SECONDS = 2.0


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
    body = json_object()
    try:
        job = PushRequest.model_validate(body, context={"schemes": _settings().schemes})
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    check_app(job.SdkAppId)
    if _settings().block_private_addresses:
        _guard_sources(job)
    if job.Engine == "cloud" and (missing := _settings().cloud_missing()):
        raise InvalidJob(
            "Engine=cloud hands the push to TRTC's cloud ingest through its API, which needs "
            f"{', '.join(missing)} set on the service (API and workers)",
            field="Engine",
        )
    user_sig = user_sig_for(job.SdkAppId, job.UserId, job.UserSig)
    target_sigs = {
        target_id: user_sig_for(job.SdkAppId, t.UserId, t.UserSig, f"Targets[{i}].UserSig")
        for i, (target_id, t) in enumerate(zip(job.target_ids(), job.Targets or [], strict=True))
    }
    request_id = str(uuid.uuid4())
    room = _room(job)
    record = JobRecord(
        Mode=job.Mode,
        SdkAppId=job.SdkAppId,
        Room=room,
        UserId=job.UserId,
        VideoSrc=redact_url(job.VideoSrc),
        Redis=job.Redis,
        RedisHost=job.RedisHost,
        RedisPort=job.RedisPort,
        RedisTls=job.RedisTls,
        MaxDuration=job.MaxDuration,
        Switchable=job.switchable,
        Playlist=[redact_url(clip.VideoSrc) for clip in job.playlist()],
        ClipIds=job.clip_ids(),
        ClipEndingSeconds=job.ClipEndingSeconds,
        StartSeconds=job.StartSeconds,
        IdleTimeoutSeconds=job.IdleTimeoutSeconds,
        Volume=job.Volume,
        Tempo=job.Tempo,
        RepeatNum=job.RepeatNum,
        EnableProgress=job.EnableProgress,
        Output=job.Output.model_dump(exclude_none=True) if job.Output is not None else None,
        Loop=job.Loop,
        CallbackUrl=redact_url(job.CallbackUrl) if job.CallbackUrl else None,
        Engine=job.Engine,
        CreatedAt=now(),
        Whip=_whip_shown(job.Whip),
        **_targets(job),
    )
    secrets = JobSecrets(
        UserSig=user_sig,
        RedisPassword=job.RedisPassword,
        VideoSrc=job.VideoSrc,
        Playlist=[clip.VideoSrc for clip in job.playlist()],
        CallbackUrl=job.CallbackUrl,
        PrivateMapKey=job.PrivateMapKey,
        TargetSigs=target_sigs,
        WhipUrl=job.Whip.Url if isinstance(job.Whip, WhipRequest) else None,
        WhipToken=job.Whip.Token if isinstance(job.Whip, WhipRequest) else None,
    )
    check_callback_secret(job.CallbackUrl)
    size = _settings().fanout_shard_rooms
    record, secrets, shards = shard(
        request_id, record, secrets, size, _resume_groups(record, secrets)
    )
    if shards and record.Switchable:
        raise InvalidJob(
            f"a switchable push (Playlist, Loop, Switchable) publishes to at most {size} rooms "
            "(ROOMCAST_FANOUT_SHARD_ROOMS): its player commands reach one process",
            field="Targets",
        )
    _record(request_id, record, secrets, replace=job.Replace, slots=1 + len(shards))
    _record_shards(request_id, shards)
    _enqueue(request_id, record, shards)
    if shards and _stopped_meanwhile(request_id):
        # Stopped (Replace, a revoke by room) before its shards were recorded: they end too.
        _store().end_shards(request_id, State.STOPPED)
    current_app.logger.info(
        "push %s queued: %s into room %s as %s",
        request_id,
        record.VideoSrc,
        room.RtmpRoom,
        job.UserId,
    )
    response = jsonify({"RequestId": request_id, "Message": "Async run task submitted"})
    response.status_code = 202
    response.headers["X-Request-Id"] = request_id
    response.headers["x-scf-reqid"] = request_id
    response.headers["Location"] = f"/v1/pushes/{request_id}"
    return response


def json_object() -> dict[str, Any]:
    """The request's JSON object body; 415 or 400 saying what is wrong with it."""
    if not request.is_json:
        raise UnsupportedMediaType(
            "the body must be a JSON object sent with 'Content-Type: application/json'"
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidJob("the body must be a JSON object", field=None)
    return body


def check_callback_secret(callback_url: str | None) -> None:
    """400 for a ``CallbackUrl`` the service could not sign its deliveries to."""
    if callback_url and not _settings().callback_secret:
        raise InvalidJob(
            "callbacks are signed: the service needs ROOMCAST_CALLBACK_SECRET to send them",
            field="CallbackUrl",
        )


def guard_urls(sources: list[tuple[str, str]]) -> None:
    """SSRF guard for URLs the workers will open; 400 naming the field of a refused one."""
    for field, url in sources:
        try:
            check_source_address(url, _settings().guard_networks)
        except SourceError as exc:  # a refused address, or a host that does not resolve
            raise InvalidJob(exc.message, field=field) from None


def _guard_sources(job: PushRequest) -> None:
    """SSRF guard (ROOMCAST_BLOCK_PRIVATE_ADDRESSES): refuse sources on internal addresses."""
    sources = [("VideoSrc", job.VideoSrc)] + [("Playlist", c.VideoSrc) for c in job.playlist()]
    if job.CallbackUrl:
        sources.append(("CallbackUrl", job.CallbackUrl))
    if job.RedisHost:
        sources.append(("RedisHost", redis_host_url(job.RedisHost, job.RedisPort)))
    if isinstance(job.Whip, WhipRequest):
        sources.append(("Whip", job.Whip.Url))
    guard_urls(sources)


def _whip_shown(whip: WhipRequest | str | None) -> str | None:
    """The record's ``Whip``: ``trtc``, or a WHIP endpoint's scheme and host."""
    return endpoint_host(whip.Url) if isinstance(whip, WhipRequest) else whip


def endpoint_host(url: str) -> str:
    """What the status shows of a WHIP endpoint: its scheme and host. Some services put the
    stream's key in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _stopped_meanwhile(request_id: str) -> bool:
    job = _store().get(request_id)
    return job is None or job.state.finished


def _record(
    request_id: str, record: JobRecord, secrets: JobSecrets, replace: bool, slots: int = 1
) -> None:
    """Record the job with its publisher lease; with ``replace``, stop the job holding it.

    Raises PublisherBusy (409) when another job publishes as this user in this room.
    """
    store = _store()
    try:
        store.create(request_id, record, secrets, replacing=replace, slots=slots)
        return
    except PublisherBusy as busy:
        if not replace:
            raise
        holder = busy.holder
    current_app.logger.info("push %s replaces push %s", request_id, holder)
    # The stop view's own logic: cancel it if queued, else stop it and wait up to 2 s.
    # Anything else means it ended meanwhile, which frees the lease too.
    stop_push(holder, Stop(StopCause.REPLACED, request_id))
    try:
        store.create(request_id, record, secrets, replacing=True, slots=slots)
    except PublisherBusy as again:
        if again.holder != holder:
            raise
        raise PublisherBusy(
            holder,
            f"the push this one replaces (request {holder}) is still stopping; try again "
            "in a few seconds",
        ) from None


def _resume_groups(record: JobRecord, secrets: JobSecrets) -> list[list[str]]:
    """A fan-out push that resumes (Redis=true, a file): its rooms grouped by where their
    bookmarks are, each group to be read from its own position (jobs/shards.py); no groups
    for any other push (a switchable push keeps no bookmark)."""
    if not record.Redis or record.Targets is None or record.Mode == "live":
        return []
    try:
        with closing(open_bookmark(_settings(), record, secrets)) as bookmark:
            return by_position(bookmark.positions())
    except ProgressStoreError as exc:
        # Not refused here: its worker fails the push with this reason, as any push's (or,
        # if its Redis answers by then, reads every room from the earliest bookmark).
        current_app.logger.warning("bookmarks not read at submit: %s", exc.message)
        return []


def _record_shards(request_id: str, shards: list[Shard]) -> None:
    """Record a split push's further shards (jobs/shards.py); if that fails (one of their
    rooms is another push's, PublisherBusy), the push is discarded with those recorded so
    far."""
    store = _store()
    done: list[str] = []
    try:
        for shard_id, record, secrets in shards:
            store.create(shard_id, record, secrets)
            done.append(shard_id)
    except (RedisError, PublisherBusy):
        for recorded in [request_id, *done]:
            store.discard(recorded)
        raise


def _enqueue(request_id: str, record: JobRecord, shards: list[Shard]) -> None:
    """Send the push's task and its shards' (each a push of its own, for whichever worker
    is free), or remove their records (see :func:`enqueue_or_discard`)."""
    celery = current_app.extensions["celery"]
    jobs = [(request_id, record), *((shard_id, r) for shard_id, r, _ in shards)]

    def send() -> None:
        for job_id, job_record in jobs:
            enqueue(celery, job_id, job_record)

    def discard() -> None:
        for job_id, _ in jobs:
            _store().discard(job_id)

    enqueue_or_discard(f"push {request_id}", send, discard)


def enqueue_or_discard(what: str, send: Callable[[], None], discard: Callable[[], None]) -> None:
    """``send`` a task; if that fails, ``discard`` what was recorded for it, so that nothing
    is left half-written, and answer 503."""
    try:
        send()
    except Exception as exc:
        # kombu wraps a lost broker in its own OperationalError, so no narrower class fits.
        current_app.logger.error("%s could not be enqueued: %s", what, exc)
        try:
            discard()
        except RedisError:
            current_app.logger.exception("%s: could not remove its record", what)
        raise ServiceUnavailable(
            f"the task queue (Redis) is unavailable, so the {what.split()[0]} was not "
            "accepted; try again shortly"
        ) from None


def user_sig_for(app: int, user_id: str, given: str | None, name: str = "UserSig") -> str:
    """The UserSig to publish as ``user_id`` with: ``given``, checked per
    ROOMCAST_USERSIG_CHECK, or generated. ``name`` is the member to blame: ``UserSig``, or a
    target's (``Targets[2].UserSig``, whose Field is ``Targets``).

    Refusing here costs a 400; a bad UserSig found by TRTC costs a worker's time and a
    failed push. Keys come from configuration only and appear in no message.
    """
    settings = _settings()
    key = settings.secret_keys.get(app)
    field = name.partition("[")[0]
    if given is None:
        if key is None:
            raise InvalidJob(
                f"{name} is required (roomcast has no secret key for this SdkAppId to sign one)",
                field=field,
            )
        return generate(app, key, user_id)
    if settings.usersig_check == "off":
        return given
    if settings.usersig_check == "verify" and key is None:
        raise InvalidJob(
            "roomcast has no secret key for this SdkAppId, so its UserSig cannot be verified",
            field="SdkAppId",
        )
    try:
        check(
            given,
            app,
            user_id,
            secret_key=key,
            min_validity=settings.usersig_min_validity_seconds,
        )
    except UserSigError as exc:
        where = "" if name == field else f"{name}: "
        raise InvalidJob(f"{where}{exc}", field=field) from None
    return given


def _targets(job: PushRequest) -> dict[str, Any]:
    """A fan-out push's record field: its rooms besides its own (none when not fan-out)."""
    if job.Targets is None:
        return {}
    targets = [
        PushTarget(TargetId=target_id, Room=target_room(t), UserId=t.UserId)
        for target_id, t in zip(job.target_ids(), job.Targets, strict=True)
    ]
    return {"Targets": targets}


def target_room(target: TargetRequest) -> PushRoom:
    """A fan-out target's room, as the push's own is recorded (Engine=worker)."""
    if target.RoomId is not None:
        return PushRoom(
            RoomId=target.RoomId,
            RtmpRoom=target.rtmp_room,
            Note=(
                "TRTC's RTMP ingest takes string rooms only: pushed into string room "
                f"{target.rtmp_room!r}"
            ),
        )
    return PushRoom(StrRoomId=target.StrRoomId, RtmpRoom=target.rtmp_room)


def _room(job: PushRequest) -> PushRoom:
    rtmp = rtmp_room(job.RoomId, job.StrRoomId)
    if job.RoomId is not None and job.Engine == "cloud":
        # The cloud ingest enters numeric rooms (RoomIdType 1); RtmpRoom stays the room's key.
        return PushRoom(
            RoomId=job.RoomId,
            RtmpRoom=rtmp,
            Note=f"Engine=cloud: TRTC's cloud ingest enters numeric room {job.RoomId}",
        )
    if job.RoomId is not None:
        return PushRoom(
            RoomId=job.RoomId,
            RtmpRoom=rtmp,
            Note=f"TRTC's RTMP ingest takes string rooms only: pushed into string room {rtmp!r}",
        )
    return PushRoom(StrRoomId=job.StrRoomId, RtmpRoom=rtmp)


@bp.get("/v1/pushes/<request_id>")
def status(request_id: str) -> ResponseReturnValue:
    """One push's state and progress."""
    return jsonify(status_of(_store(), visible_job(_store(), request_id)))


def status_of(store: JobStore, job: Job) -> dict[str, Any]:
    """A push's status answer, every shard's rooms in it when it was split."""
    answer = job.as_status()
    if not job.record.Shards:
        return answer
    found = store.read(job.record.Shards)
    shards = [(i, found.get(i)) for i in job.record.Shards]
    if not job.state.finished:  # while it runs: the rooms published to now
        shards = [(i, s) for i, s in shards if s is not None and not s.state.finished]
    return merged_status(answer, [(i, s.as_status() if s else None) for i, s in shards])


@bp.get("/v1/pushes")
def listing() -> ResponseReturnValue:
    """Pushes newest first, filtered by State, UserId (+SdkAppId), room and time."""
    try:
        query = ListQuery.model_validate(request.args.to_dict())
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    store = _store()
    apps = current_key().apps
    if query.SdkAppId:
        check_app(query.SdkAppId)
        apps = frozenset({query.SdkAppId})
    jobs = store.list(
        state=query.State,
        limit=query.Limit,
        user=query.user,
        room=query.room,
        since=query.Since,
        until=query.Until,
        apps=apps,
    )
    # A push's shards are part of it (its status lists their rooms), not pushes of their own.
    pushes = [status_of(store, j) for j in jobs if j.record.ShardOf is None]
    return jsonify({"Pushes": pushes, "Stats": store.stats(apps)})


@bp.post("/v1/pushes/<request_id>/stop")
@bp.delete("/v1/pushes/<request_id>")
def stop(request_id: str) -> ResponseReturnValue:
    """Stop a queued or running push (idempotent); 409 for one that already ended."""
    visible_job(_store(), request_id)
    found, finished = stop_push(request_id, Stop(StopCause.API))
    if found is None:
        raise NotFound(f"no push with request id {request_id!r}")
    if found in FINISHED and found is not State.STOPPED:
        raise AlreadyFinished(found.value)
    body = _current(_store(), request_id)
    return Response(
        status=200 if finished else 202,
        response=current_app.json.dumps(body),
        mimetype="application/json",
    )


def stop_push(request_id: str, stop: Stop) -> tuple[State | None, bool]:
    """Stop a push the way every stop path does (``JobStore.stop``), and wait for it.

    A queued push ends at once: Celery is told too (its workers drop the message, and
    ``AsyncResult`` says ``REVOKED``). A running one is asked, and awaited up to
    :data:`STOP_CONFIRM_SECONDS`. Returns the state the stop found (None: unknown) and
    whether the push has ended.
    """
    store = _store()
    *shards, (_, found) = store.stop_all(request_id, stop).items()
    for shard_id, shard_found in shards:  # jobs/shards.py
        if shard_found is State.QUEUED:
            tell_celery_revoked(shard_id, stop.reason_queued)
    if found is State.QUEUED:
        current_app.logger.info("push %s stopped while queued: %s", request_id, stop.reason)
        tell_celery_revoked(request_id, stop.reason_queued)
        return found, True
    if found is not State.RUNNING:
        return found, found is not None and found in FINISHED
    current_app.logger.info("push %s: stop requested (%s)", request_id, stop.reason)
    return found, _wait_finished(store, request_id, STOP_CONFIRM_SECONDS) is not None


def tell_celery_revoked(request_id: str, reason: str) -> None:
    """A push stopped while queued: workers drop its message, Celery and Flower say REVOKED."""
    celery = current_app.extensions["celery"]
    try:
        # Marked first: a worker's own "revoked" must not land after our reason.
        mark_revoked(celery, request_id, reason)
        celery.control.revoke(request_id)
    except Exception as exc:  # noqa: BLE001 - the stop holds whatever Celery's side says
        # kombu wraps a lost broker in its own OperationalError, so no narrower class fits.
        current_app.logger.warning("push %s: Celery not told of its stop: %s", request_id, exc)


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
    return status_of(store, job) if job is not None else {"RequestId": request_id}
