"""What a push task does: wire one job to the pipeline and report how it goes.

Like a web view, it maps a request (a job id) to calls and exceptions to states:
``queued → running → succeeded | failed | stopped``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from pipeline import Control, Outcome, Progress, PushSpec, push
from pipeline.errors import RoomcastError

from . import trtc
from .cloud import CloudIngest
from .control import (
    FENCED_REASON,
    SHUTDOWN_REASON,
    TAKEN_OVER_REASON,
    signal_stops,
)
from .events import CallbackSender
from .hub import get_hub
from .jobs import Job, JobStore, State, now
from .logs import job_context
from .netguard import check_source_addresses
from .progress_store import Bookmark, RedisTarget, bookmark_key
from .rooms import push_url
from .settings import Settings

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]


def run_push(
    store: JobStore,
    settings: Settings,
    request_id: str,
    worker: str = "",
    on_progress: ProgressHook | None = None,
) -> dict[str, Any]:
    """Run job ``request_id`` to its end; return a result without secrets."""
    job = store.get(request_id)
    if job is None:
        log.warning("job %s is unknown or expired; nothing to do", request_id)
        return {"RequestId": request_id, "State": "unknown"}
    secrets = store.secrets(request_id) or {}
    with job_context(request_id, secret_values(secrets)):
        if job.state is not State.QUEUED:
            log.info("not starting: the job is already %s", job.state.value)
            return {"RequestId": request_id, "State": job.state.value}
        run_id = uuid.uuid4().hex
        moved, was = store.transition(
            request_id,
            (State.QUEUED,),
            State.RUNNING,
            StartedAt=now(),
            Worker=worker,
            RunId=run_id,
        )
        if not moved:
            log.info("not starting: the job became %s", was.value if was else "unknown")
            return {"RequestId": request_id, "State": was.value if was else "unknown"}
        # A shutdown stop may land after the previous run handed the job back: not for us.
        store.clear_stop(request_id, SHUTDOWN_REASON)
        store.beat(request_id)
        log.info("push started on %s", worker or "this worker")
        state, position = _run(store, settings, job, secrets, on_progress, run_id)
        return {"RequestId": request_id, "State": state.value, "Position": position}


def _run(
    store: JobStore,
    settings: Settings,
    job: Job,
    secrets: dict[str, Any],
    on_progress: ProgressHook | None,
    run_id: str = "",
) -> tuple[State, float]:
    rid = job.request_id
    doc = job.doc
    control = Control()
    hub = get_hub(store, settings)
    attached = hub.attach(rid, control, run_id)
    callbacks = _start_callbacks(store, settings, rid, secrets)
    presence = trtc.watch_presence(store, settings, rid, doc)
    bookmark: Bookmark | None = None
    last = Progress()

    def report(progress: Progress, final: bool = False) -> None:
        nonlocal last
        last = progress
        data = progress.as_dict()
        data["RtmpRoom"] = doc["Room"]["RtmpRoom"]
        if bookmark is not None:
            if final:
                bookmark.stop_writer()
                bookmark.save(rid, progress.position, progress.duration)
            else:
                bookmark.save_soon(rid, progress.position, progress.duration)
            data["ProgressSaving"] = bookmark.failing or "ok"
        try:
            store.set_progress(rid, data)
            if on_progress is not None and not final:
                on_progress(data)
        except (redis.RedisError, OSError) as exc:
            # The service's Redis restarting must not end the push: status catches up later.
            log.warning("could not record progress (the push goes on): %s", exc)

    try:
        with signal_stops(control):
            # Defence in depth: never publish while another live job holds this publisher.
            store.claim_publisher(rid)
            if settings.block_private_addresses:
                # Checked again here, not only at submit: DNS may answer differently now.
                check_source_addresses([secrets["VideoSrc"], *(secrets.get("Playlist") or [])])
            if doc.get("Engine") == "cloud":
                return _run_cloud(store, settings, job, secrets, control, on_progress)
            # A push handed back by a lost or stopping worker continues where it was.
            start = float(doc.get("ResumeFrom") or 0.0)
            if start:
                log.info("continuing a handed-back push from %.3f s", start)
            if doc.get("Redis"):
                bookmark = _open_bookmark(settings, doc, secrets)
                # A live source always starts from now: its record is only written.
                saved = bookmark.load() if doc.get("Mode") != "live" else None
                if saved is not None:
                    start = saved
                    log.info("resuming from the saved position %.3f s", saved)
            spec = _spec(settings, doc, secrets, start)
            result = push(
                spec,
                control,
                on_progress=report,
                on_connected=report,
                on_event=lambda name, fields: store.events.append(rid, name, **fields),
            )
            report(result.progress, final=True)
            if result.outcome is Outcome.COMPLETED:
                if bookmark is not None:
                    bookmark.delete()
                log.info("push succeeded: %s at %.1f s", result.reason, result.progress.position)
                _finish(store, rid, State.SUCCEEDED, Reason=result.reason)
                return State.SUCCEEDED, result.progress.position
            if result.reason in (TAKEN_OVER_REASON, FENCED_REASON):
                # The job runs elsewhere now (a newer RunId), or will once a worker that
                # reaches Redis finds it silent: its record is not ours to end.
                log.info("stopped at %.1f s: %s", result.progress.position, result.reason)
                return State.RUNNING, result.progress.position
            if result.reason == SHUTDOWN_REASON and _hand_back(store, rid):
                log.info(
                    "handed back at %.1f s: another worker continues", result.progress.position
                )
                return State.QUEUED, result.progress.position
            log.info("push stopped: %s at %.1f s", result.reason, result.progress.position)
            trtc_fields = trtc.on_stop(settings, doc, presence)
            _finish(store, rid, State.STOPPED, Reason=result.reason, **trtc_fields)
            return State.STOPPED, result.progress.position
    except RoomcastError as exc:
        log.error("push failed: %s: %s", exc.code, exc.message)
        if bookmark is not None and last.position > 0:
            bookmark.stop_writer()
            bookmark.save(rid, last.position, last.duration)
        _finish(store, rid, State.FAILED, Error=exc.as_dict(), Reason=exc.message)
        return State.FAILED, last.position
    except Exception as exc:
        log.exception("push failed with an internal error")
        error = {
            "Code": "InternalError",
            "Message": f"internal error ({type(exc).__name__}); the worker log has details",
        }
        _finish(store, rid, State.FAILED, Error=error, Reason=error["Message"])
        return State.FAILED, last.position
    finally:
        if presence is not None:
            presence.stop()
        hub.detach(attached)
        control.close()
        if callbacks is not None:
            callbacks.finish()
        if bookmark is not None:
            bookmark.close()


def _run_cloud(
    store: JobStore,
    settings: Settings,
    job: Job,
    secrets: dict[str, Any],
    control: Control,
    on_progress: ProgressHook | None,
) -> tuple[State, float]:
    """Engine=cloud: follow TRTC's ingest task (worker/cloud.py) instead of pushing media."""
    rid = job.request_id
    ingest = CloudIngest(store, settings, job, secrets, on_progress)
    end = ingest.follow(control)
    # In these two cases TRTC goes on pushing, and the run that continues the job (another
    # worker's, or the one that took it over) re-attaches to the task: not ours to stop.
    if end.reason in (TAKEN_OVER_REASON, FENCED_REASON):
        log.info("another run follows TRTC ingest task %s now", ingest.task_id)
        return State.RUNNING, ingest.elapsed
    if end.reason == SHUTDOWN_REASON and _hand_back(store, rid):
        log.info("handed back: another worker follows TRTC ingest task %s", ingest.task_id)
        return State.QUEUED, ingest.elapsed
    if end.state is State.STOPPED:
        ingest.stop()
    log.info("cloud push %s: %s", end.state.value, end.reason)
    _finish(store, rid, end.state, Reason=end.reason)
    return end.state, ingest.elapsed


def _hand_back(store: JobStore, rid: str) -> bool:
    """This worker is shutting down: queue the push again for another one."""
    try:
        job = store.get(rid)
        return job is not None and store.hand_back(job, "worker shut down: handed back")
    except redis.RedisError as exc:
        log.warning("could not hand the push back: %s", exc)
        return False


def _start_callbacks(
    store: JobStore, settings: Settings, rid: str, secrets: dict[str, Any]
) -> CallbackSender | None:
    url = secrets.get("CallbackUrl")
    if not url:
        return None
    sender = CallbackSender(store.events, rid, url, settings.callback_secret)
    sender.start()
    return sender


def _open_bookmark(settings: Settings, doc: dict[str, Any], secrets: dict[str, Any]) -> Bookmark:
    if doc.get("RedisHost"):
        target = RedisTarget(
            doc["RedisHost"],
            doc.get("RedisPort") or 6379,
            secrets.get("RedisPassword"),
            tls=bool(doc.get("RedisTls")),
        )
    else:
        target = RedisTarget.from_url(settings.redis_url)
    key = bookmark_key(doc["SdkAppId"], doc["Room"]["RtmpRoom"], secrets["VideoSrc"])
    bookmark = Bookmark(
        target,
        key,
        settings.progress_ttl_seconds,
        secrets["VideoSrc"],
        tls_ca_file=settings.redis_tls_ca_file,
    )
    bookmark.check()
    return bookmark


def _spec(
    settings: Settings, doc: dict[str, Any], secrets: dict[str, Any], start: float
) -> PushSpec:
    user_sig = secrets["UserSig"]
    target = push_url(
        settings.rtmp_base, doc["Room"]["RtmpRoom"], doc["SdkAppId"], doc["UserId"], user_sig
    )
    limit = doc.get("MaxDuration") or settings.max_duration_seconds or None
    return PushSpec(
        source=secrets["VideoSrc"],
        target=target,
        live=doc.get("Mode") == "live",
        start_position=start,
        max_duration=limit,
        profile=settings.output_profile(),
        timeouts=settings.timeouts(),
        pace_lead=settings.pace_lead_seconds,
        pace_batch=settings.pace_batch_seconds,
        shared_sender=settings.shared_sender,
        rtmp_client=settings.rtmp_client,
        live_grace=settings.live_grace_seconds,
        secrets=secret_values(secrets),
        switchable=bool(doc.get("Switchable")),
        playlist=tuple(secrets.get("Playlist") or ()),
        loop=doc.get("Loop") or "none",
    )


def secret_values(secrets: dict[str, Any]) -> tuple[str, ...]:
    """Every secret string of a job (lists such as the Playlist flattened), for masking."""
    values: list[str] = []
    for value in secrets.values():
        items = value if isinstance(value, list) else [value]
        values += [str(v) for v in items if v]
    return tuple(values)


#: How long the final state of a push is retried while the service's Redis is away.
FINISH_RETRY_SECONDS = 120.0


def _finish(store: JobStore, rid: str, state: State, **fields: Any) -> None:
    """Record the end of a push, waiting out a Redis restart rather than losing it."""
    deadline = time.monotonic() + FINISH_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            store.finish(rid, state, **fields)
            return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                log.error("could not record the end of the push (%s): %s", state.value, exc)
                return
            log.warning("recording the end of the push failed, retrying: %s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
