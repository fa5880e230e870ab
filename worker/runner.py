"""What a push task does: wire one job to the pipeline and report how it goes.

Like a web view, it maps a request (a job id) to calls and exceptions to states:
``queued → running → succeeded | failed | stopped``. How the run ended comes back as a
:class:`RunEnd`, which the Celery task mirrors in Celery's own task state.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import redis

from jobs.bookmarks import Bookmark, RoomKeys, open_bookmark, room_keys
from jobs.errors import InternalError, RoomcastError
from jobs.logs import job_context
from jobs.records import MAIN_TARGET, JobRecord, JobSecrets, PushTarget
from jobs.redact import redact_text
from jobs.settings import Settings
from jobs.states import State
from jobs.stops import NOT_THIS_RUN, Stop, StopCause
from jobs.store import Job, JobStore, now
from jobs.urlguard import check_source_address, check_source_addresses
from pipeline import Clip, Control, Outcome, OutputProfile, Progress, PushSpec, Timeouts, push
from pipeline.spec import Target
from pipeline.whip import whip_url

from . import trtc
from .cloud import CloudIngest
from .control import signal_stops
from .egress import egress_proxy
from .hub import get_hub
from .ingest import Ingest
from .services import rendition_cache

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]
StartedHook = Callable[[Job], None]

#: How long a push stopped by a signal waits for the cause Celery's main process records.
SIGNAL_CAUSE_WAIT = 1.0


@dataclass(frozen=True)
class RunEnd:
    """How one run of a job ended: what the Celery task reports.

    ``state`` is the job's state after this run: a finished one, ``QUEUED`` when it was
    handed back, ``RUNNING`` when another run owns it now, None for an unknown job.
    ``started`` is False when this run found the job already past ``queued`` (a second
    delivery of its message, or a push stopped while queued) and did nothing.
    """

    state: State | None
    position: float = 0.0
    reason: str | None = None
    error: dict[str, str] | None = None
    started: bool = True

    def as_result(self, request_id: str) -> dict[str, Any]:
        """The task's result (no secret): what ``AsyncResult.result`` holds on SUCCESS."""
        state = self.state.value if self.state is not None else "unknown"
        return {"RequestId": request_id, "State": state, "Position": self.position}


def run_push(
    store: JobStore,
    settings: Settings,
    request_id: str,
    worker: str = "",
    on_progress: ProgressHook | None = None,
    on_started: StartedHook | None = None,
) -> RunEnd:
    """Run job ``request_id`` to its end; ``on_started`` is called once it runs here."""
    job = store.get(request_id)
    if job is None:
        log.warning("job %s is unknown or expired; nothing to do", request_id)
        return RunEnd(None, started=False)
    secrets = store.secrets(request_id)
    with job_context(request_id, secrets.values() if secrets is not None else ()):
        if job.state is not State.QUEUED:
            log.info("not starting: the job is already %s", job.state.value)
            return _as_found(job)
        if secrets is None:
            gone = InternalError("the push's secrets are gone from Redis: it cannot start")
            log.error("not starting: %s", gone.message)
            _finish(store, request_id, State.FAILED, Error=gone.as_dict(), Reason=gone.message)
            return RunEnd(State.FAILED, 0.0, gone.message, gone.as_dict())
        if worker and store.stopping(worker) and store.requeue(job):
            # Taken in the moment between a shutdown and the end of consuming (perhaps
            # the very push the shutdown handed back): another worker runs it.
            log.info("not starting: this worker is shutting down; back to the queue")
            return RunEnd(State.QUEUED, started=False)
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
            found = store.get(request_id)
            return _as_found(found) if found is not None else RunEnd(None, started=False)
        # A fan-out's rooms may have changed while it waited (api/targets.py), up to the
        # moment it started: it publishes where its record says now.
        job = store.get(request_id) or job
        secrets = store.secrets(request_id) or secrets
        # A shutdown stop may land after the previous run handed the job back: not for us.
        store.clear_stop(request_id, StopCause.SHUTDOWN)
        store.beat(request_id)
        log.info("push started on %s", worker or "this worker")
        if on_started is not None:
            on_started(job)
        return _run(store, settings, job, secrets, on_progress, run_id)


def _as_found(job: Job) -> RunEnd:
    """A run that did not start the job reports the job as it is."""
    return RunEnd(
        job.state,
        position=float((job.progress or {}).get("Position") or 0.0),
        reason=job.record.Reason,
        error=job.record.Error.model_dump() if job.record.Error else None,
        started=False,
    )


def _run(
    store: JobStore,
    settings: Settings,
    job: Job,
    secrets: JobSecrets,
    on_progress: ProgressHook | None,
    run_id: str = "",
) -> RunEnd:
    rid = job.request_id
    record = job.record
    # A command wakes the push (a cloud push's driver, a pipeline waiting for a packet's time).
    control = Control()
    hub = get_hub(store, settings)
    attached = hub.attach(rid, control, run_id)
    presence = trtc.watch_presence(store, settings, rid, record)
    bookmark: Bookmark | None = None
    last = Progress()

    def report(progress: Progress, final: bool = False) -> None:
        nonlocal last
        last = progress
        data = progress.as_dict()
        data["RtmpRoom"] = record.Room.RtmpRoom
        if bookmark is not None:
            rooms = _watching(progress)
            if final:
                bookmark.stop_writer()
                bookmark.save(rid, progress.position, progress.duration, rooms)
            else:
                bookmark.save_soon(rid, progress.position, progress.duration, rooms)
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
                check_source_addresses(
                    [secrets.VideoSrc, *secrets.Playlist, *filter(None, [secrets.WhipUrl])],
                    settings.guard_networks,
                )
            if record.Engine == "cloud":
                return _run_cloud(store, settings, job, secrets, control, on_progress)
            # A push handed back by a lost or stopping worker continues where it was.
            start = float(record.ResumeFrom or 0.0)
            if start:
                log.info("continuing a handed-back push from %.3f s", start)
            if record.Redis:
                added = partial(_added_room, store, settings, rid, secrets.VideoSrc)
                bookmark = open_bookmark(settings, record, secrets, resolve=added)
                # A live source always starts from now: its record is only written.
                saved = bookmark.load() if record.Mode != "live" else None
                if saved is not None:
                    start = saved
                    log.info("resuming from the saved position %.3f s", saved)
            if not start and record.StartSeconds:
                start = float(record.StartSeconds)
                log.info("starting %.3f s into the source (StartSeconds)", start)
            spec = _spec(settings, record, secrets, start)
            result = push(
                spec,
                control,
                on_progress=report,
                on_connected=report,
                on_event=partial(_record_event, store, rid, spec.secrets, record.ShardOf),
            )
            report(result.progress, final=True)
            _count_renditions(store, result.progress)
            position = result.progress.position
            if result.outcome is Outcome.COMPLETED:
                if bookmark is not None:
                    bookmark.delete(_watching(result.progress))
                log.info("push succeeded: %s at %.1f s", result.reason, position)
                _finish(store, rid, State.SUCCEEDED, Reason=result.reason)
                return RunEnd(State.SUCCEEDED, position, result.reason)
            stop = stop_of(store, rid, result.cause)
            if stop is not None and stop.cause in NOT_THIS_RUN:
                # The job runs elsewhere now (a newer RunId), or will once a worker that
                # reaches Redis finds it silent: its record is not ours to end.
                log.info("stopped at %.1f s: %s", position, stop.reason)
                return RunEnd(State.RUNNING, position, stop.reason)
            if stop is not None and stop.cause is StopCause.SHUTDOWN and _hand_back(store, rid):
                log.info("handed back at %.1f s: another worker continues", position)
                return RunEnd(State.QUEUED, position, stop.reason)
            reason = stop.reason if stop is not None else result.reason
            log.info("push stopped: %s at %.1f s", reason, position)
            trtc_fields = trtc.on_stop(settings, record, presence)
            _finish(store, rid, State.STOPPED, Reason=reason, **_cause_field(stop), **trtc_fields)
            return RunEnd(State.STOPPED, position, reason)
    except RoomcastError as exc:
        log.error("push failed: %s: %s", exc.code, exc.message)
        if bookmark is not None and last.position > 0:
            bookmark.stop_writer()
            bookmark.save(rid, last.position, last.duration, _watching(last))
        _finish(store, rid, State.FAILED, Error=exc.as_dict(), Reason=exc.message)
        return RunEnd(State.FAILED, last.position, exc.message, exc.as_dict())
    except Exception as exc:
        log.exception("push failed with an internal error")
        bug = InternalError(f"internal error ({type(exc).__name__}); the worker log has details")
        _finish(store, rid, State.FAILED, Error=bug.as_dict(), Reason=bug.message)
        return RunEnd(State.FAILED, last.position, bug.message, bug.as_dict())
    finally:
        if presence is not None:
            presence.stop()
        hub.detach(attached)
        control.close()
        if bookmark is not None:
            bookmark.close()


def _run_cloud(
    store: JobStore,
    settings: Settings,
    job: Job,
    secrets: JobSecrets,
    control: Control,
    on_progress: ProgressHook | None,
) -> RunEnd:
    """Engine=cloud: follow TRTC's ingest task (worker/cloud.py) instead of pushing media."""
    rid = job.request_id
    ingest = CloudIngest(store, settings, job, secrets, on_progress)
    end = ingest.follow(control)
    stop = stop_of(store, rid, end.cause)
    # In these two cases TRTC goes on pushing, and the run that continues the job (another
    # worker's, or the one that took it over) re-attaches to the task: not ours to stop.
    if stop is not None and stop.cause in NOT_THIS_RUN:
        log.info("another run follows TRTC ingest task %s now", ingest.task_id)
        return RunEnd(State.RUNNING, ingest.elapsed, stop.reason)
    if stop is not None and stop.cause is StopCause.SHUTDOWN and _hand_back(store, rid):
        log.info("handed back: another worker follows TRTC ingest task %s", ingest.task_id)
        return RunEnd(State.QUEUED, ingest.elapsed, stop.reason)
    if end.state is State.STOPPED:
        ingest.stop()
    reason = stop.reason if stop is not None else end.reason
    log.info("cloud push %s: %s", end.state.value, reason)
    _finish(store, rid, end.state, Reason=reason, **_cause_field(stop))
    return RunEnd(end.state, ingest.elapsed, reason)


def _count_renditions(store: JobStore, progress: Progress) -> None:
    """Add what a push found in the rendition cache to the service's counters (/metrics)."""
    found = progress.renditions
    if found is None:
        return
    try:
        store.count(
            rendition_hits=found["Hits"],
            rendition_misses=found["Misses"] + found["Uncached"],
            renditions_written=found["Written"],
        )
    except (redis.RedisError, OSError) as exc:
        log.warning("could not count the push's renditions: %s", exc)


def stop_of(store: JobStore, request_id: str, cause: object | None) -> Stop | None:
    """The stop that ended a push, from what its ``Control`` was asked; None: no stop
    (the push completed or reached its time limit).

    A push handed back would run again, so a stop that says "shutdown" or "signal" is
    checked against what Redis recorded: a stop a person or a script asked for meanwhile
    wins (``JobStore.request_stop``). A signal (:func:`worker.control.signal_stops`) only
    says that the process was asked to end: Celery's main process records what it meant
    before or as it signals (a terminate's stop, a shutdown's), so that is waited for, up
    to :data:`SIGNAL_CAUSE_WAIT`. A SIGTERM with nothing recorded is a shutdown: the push is
    handed back rather than lost.
    """
    if not isinstance(cause, Stop):
        return None
    if cause.cause not in (StopCause.SHUTDOWN, StopCause.SIGNAL):
        return cause
    deadline = time.monotonic() + (SIGNAL_CAUSE_WAIT if cause.cause is StopCause.SIGNAL else 0)
    while True:
        try:
            recorded = store.stop_requested(request_id)
        except redis.RedisError:
            recorded = None
        if recorded is not None and recorded.cause is not StopCause.SIGNAL:
            if recorded != cause:
                log.info("stopped (%s), and recorded: %s", cause.reason, recorded.reason)
            return recorded
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if cause.cause is StopCause.SIGNAL and cause.detail == "SIGTERM":
        return Stop(StopCause.SHUTDOWN)
    return cause


def _record_event(
    store: JobStore,
    rid: str,
    secrets: tuple[str, ...],
    shard_of: str | None,
    name: str,
    fields: dict[str, Any],
) -> None:
    """A pipeline's event (clip started, switch…, a fan-out room's target-failed…) joins the
    push's events; a shard's rooms' events join those of the push it is a part of. A room's
    are masked once more: its error may quote its push URL, whose query values are masked
    even for a UserSig ``secrets`` lacks (a room added later)."""
    if name.startswith("target-"):
        fields = {
            k: redact_text(v, secrets) if isinstance(v, str) else v for k, v in fields.items()
        }
        rid = shard_of or rid
    store.events.append(rid, name, **fields)


def _cause_field(stop: Stop | None) -> dict[str, str]:
    """The record's ``StopCause`` field for a push that ``stop`` ended (none for a limit)."""
    return {} if stop is None else {"StopCause": stop.cause.value}


def _hand_back(store: JobStore, rid: str) -> bool:
    """This worker is shutting down: queue the push again for another one."""
    try:
        job = store.get(rid)
        return job is not None and store.hand_back(job, "worker shut down: handed back")
    except redis.RedisError as exc:
        log.warning("could not hand the push back: %s", exc)
        return False


def _watching(progress: Progress) -> list[str] | None:
    """The rooms whose bookmarks follow the push: a fan-out's rooms that are live (one that
    failed, fell behind or was removed keeps the position its viewers last saw); None,
    the push's own room, for a push that is not fan-out."""
    if progress.targets is None:
        return None
    return [room for room, figures in progress.targets.items() if figures["State"] == "live"]


def _added_room(
    store: JobStore, settings: Settings, request_id: str, video_src: str, target_id: str
) -> RoomKeys | None:
    """The bookmark keys of a room added to a fan-out push while it runs."""
    try:
        found = store.target(request_id, target_id)
    except redis.RedisError as exc:
        log.warning("could not read room %s of the push (tried again): %s", target_id, exc)
        return None
    if found is None:
        return None
    record, target, _ = found
    return room_keys(settings, record.SdkAppId, target.Room.RtmpRoom, video_src)


def _spec(settings: Settings, record: JobRecord, secrets: JobSecrets, start: float) -> PushSpec:
    target = (
        whip_url(secrets.WhipUrl, secrets.WhipToken)
        if secrets.WhipUrl
        else Ingest.of(settings).room_url(
            record, record.Room.RtmpRoom, record.UserId, secrets.UserSig
        )
    )
    targets = _targets(settings, record, secrets, target)
    limit = record.MaxDuration or settings.max_duration_seconds or None
    # One id per clip, or none at all (no clip was given one).
    clip_ids = record.ClipIds or [None] * (1 + len(secrets.Playlist))
    return PushSpec(
        source=secrets.VideoSrc,
        target=targets[0].url if targets else target,
        targets=targets,
        live=record.Mode == "live",
        start_position=start,
        max_duration=limit,
        profile=output_profile(settings, record.Output),
        timeouts=_timeouts(settings, record),
        pace_lead=settings.pace_lead_seconds,
        pace_batch=settings.pace_batch_seconds,
        shared_sender=settings.shared_sender,
        rtmp_client=settings.rtmp_client,
        rtmp_chunk_size=settings.rtmp_chunk_size,
        fanout_pictures_per_send=settings.fanout_pictures_per_send,
        live_grace=record.IdleTimeoutSeconds or settings.live_grace_seconds,
        secrets=secrets.values(),
        switchable=record.Switchable,
        clip_id=clip_ids[0] if clip_ids else None,
        playlist=tuple(
            Clip(url, id) for url, id in zip(secrets.Playlist, clip_ids[1:], strict=False)
        ),
        loop=record.Loop,
        repeat=record.RepeatNum,
        volume=record.Volume,
        tempo=record.Tempo,
        progress_sei=record.EnableProgress,
        url_guard=(
            partial(check_source_address, allow=settings.guard_networks)
            if settings.block_private_addresses
            else None
        ),
        http_proxy=(
            egress_proxy(settings.guard_networks) if settings.block_private_addresses else None
        ),
        clip_ending=(
            settings.clip_ending_seconds
            if record.ClipEndingSeconds is None
            else record.ClipEndingSeconds
        ),
        rendition_cache=rendition_cache(settings) if record.Mode == "vod" else None,
    )


def _targets(
    settings: Settings, record: JobRecord, secrets: JobSecrets, main: str
) -> tuple[Target, ...]:
    """A fan-out push's rooms as its record holds them now, its own (URL ``main``) first
    unless removed; none for a push that is not fan-out."""
    if record.Targets is None:
        return ()
    own = () if record.MainRemoved else (Target(MAIN_TARGET, main),)
    return own + tuple(
        Target(target.TargetId, _target_url(settings, record, target, secrets.TargetSigs))
        for target in record.Targets
    )


def _target_url(
    settings: Settings, record: JobRecord, target: PushTarget, sigs: dict[str, str]
) -> str:
    """The push URL of one of a fan-out push's rooms (its UserSig from ``sigs``)."""
    sig = sigs.get(target.TargetId)
    if sig is None:
        raise InternalError(f"the UserSig of target {target.TargetId!r} is gone from Redis")
    return Ingest.of(settings).room_url(record, target.Room.RtmpRoom, target.UserId, sig)


def _timeouts(settings: Settings, record: JobRecord) -> Timeouts:
    """The service's network timeouts; a push's own idle timeout caps the live read's, so
    that a silent source is noticed within it."""
    limits = timeouts(settings)
    if record.IdleTimeoutSeconds:
        idle = float(record.IdleTimeoutSeconds)
        limits = replace(limits, live_read=min(limits.live_read, idle))
    return limits


def output_profile(settings: Settings, asked: dict[str, Any] | None = None) -> OutputProfile:
    """The pipeline's output settings; ``asked``: a push's own ``Output``, within them."""
    asked = asked or {}

    def at_most(name: str, limit: float) -> Any:
        return min(asked[name], limit) if name in asked else limit

    gop = asked.get("GopSeconds")
    return OutputProfile(
        max_width=at_most("Width", settings.max_width),
        max_height=at_most("Height", settings.max_height),
        max_fps=at_most("Fps", settings.max_fps),
        video_bitrate=asked.get("VideoBitrate", settings.video_bitrate),
        audio_bitrate=asked.get("AudioBitrate", settings.audio_bitrate),
        gop_seconds=gop if gop is not None else settings.gop_seconds,
        max_remux_gop_seconds=(
            min(gop, settings.max_remux_gop_seconds)
            if gop is not None
            else settings.max_remux_gop_seconds
        ),
        x264_preset=settings.x264_preset,
        max_remux_video_bitrate=asked.get("VideoBitrate"),
        max_remux_audio_bitrate=asked.get("AudioBitrate"),
    )


def timeouts(settings: Settings) -> Timeouts:
    """The pipeline's network time limits."""
    return Timeouts(
        source_open=settings.source_timeout_seconds,
        source_read=settings.source_timeout_seconds,
        room_open=settings.room_timeout_seconds,
        room_reconnect=settings.room_reconnect_seconds,
        live_read=settings.live_read_timeout_seconds,
    )


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
