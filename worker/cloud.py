"""``Engine=cloud``: TRTC's own cloud ingest pushes the source; roomcast starts, follows, stops it.

TRTC's "online media stream input" (输入在线媒体流) pulls ``StreamUrl`` itself and enters the
room as a robot user. Such a push keeps everything else a push has: the same request, record
and states, the same Celery task (Flower shows it), the stop endpoint and control channel,
the publisher lease, the heartbeat and the hand-back. Only the media work moves to TRTC::

    StartStreamIngest ──TaskId──▶ Progress.Cloud {TaskId, Status, StartedAt, CheckedAt}
    DescribeStreamIngest every ROOMCAST_TRTC_INGEST_POLL_SECONDS
        InProgress: go on.  NotExist (or FailedOperation.TaskNotExist): TRTC ended it → succeeded
    player command (switch, pause, resume, volume, tempo) → UpdateStreamIngest → Progress.Player,
        the worker engine's events, Trtc.Cloud.Update, and the answer on the command's reply key
    stop (the API, revoke, MaxDuration, publisher lease lost) → StopStreamIngest → stopped
    worker shutting down, or another run took the job over: the task is left running, and
    the next run of the job re-attaches to its TaskId instead of starting another

Errors (``jobs/errors.py``): ``TrtcApiError`` when TRTC refuses a call (AuthFailure…,
InvalidParameter…, LimitExceeded…; the message names the action, TRTC's code and message,
its RequestId and a hint), ``TrtcNotConfigured`` when this worker has no Tencent Cloud API
credentials or region. Every call's outcome is also kept in the record's ``Trtc.Cloud``
(``Start``, ``Stop``, the last ``Update``) with TRTC's own error code. A failure after the task
started tries to stop it, so that TRTC never goes on pushing for a push reported failed; a
refused player command fails only itself (the API answers it with TRTC's error).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import redis
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.trtc.v20190722 import models
from tencentcloud.trtc.v20190722.trtc_client import TrtcClient

from jobs.commands import CLOUD_COMMANDS, Command, Pause, Resume, Switch, Tempo, Volume
from jobs.errors import SourceError, TrtcApiError, TrtcNotConfigured
from jobs.records import JobRecord, JobSecrets, epoch, iso
from jobs.redact import redact_url
from jobs.settings import Settings
from jobs.states import State
from jobs.store import Job, JobStore, now
from jobs.urlguard import check_source_address
from pipeline.control import Control

from . import trtc

log = logging.getLogger(__name__)

ProgressHook = Callable[[dict[str, Any]], None]

#: DescribeStreamIngest's documented statuses (models.py of the SDK): the task is running,
#: or it no longer exists (played to its end, stopped, or ended by TRTC).
IN_PROGRESS = "InProgress"
NOT_EXIST = "NotExist"
#: Error codes that say the task is gone: read as NotExist, not as a failure.
TASK_GONE = frozenset({"FailedOperation.TaskNotExist", "FailedOperation.TaskFinished"})
#: Failures worth another try at the next poll (the SDK's own retry list, and TRTC's internal
#: errors): the task may well be running, so the push is not failed for them.
TRANSIENT_PREFIXES = (
    "ClientNetworkError",
    "ServerNetworkError",
    "RequestLimitExceeded",
    "InternalError",
)
#: StartStreamIngest's MaxDuration is in minutes, 1 to 10080 (7 days).
MAX_DURATION_MINUTES = 10080

_HINTS = (
    ("AuthFailure", "check TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY and their permissions"),
    ("UnauthorizedOperation", "these credentials may not use this SdkAppId"),
    ("LimitExceeded", "TRTC's limit of ingest tasks is reached; stop one or raise the quota"),
    ("UnsupportedOperation.TaskLimit", "TRTC's limit of ingest tasks is reached"),
    ("InvalidParameter", "check the room, UserId/UserSig and VideoSrc"),
    ("FailedOperation.RoomNotExist", "check the room"),
    ("FailedOperation.TaskNotExist", "TRTC's ingest task has ended; the push ends with it"),
    ("FailedOperation.TaskFinished", "TRTC's ingest task has ended; the push ends with it"),
)


def hint_for(code: str) -> str | None:
    """What the caller can do about TRTC's error ``code``, where there is something."""
    return next((h for prefix, h in _HINTS if code.startswith(prefix)), None)


def api_error(action: str, outcome: dict[str, Any]) -> TrtcApiError:
    """TRTC's refusal of ``action`` as an error, with a hint where its code has one."""
    return TrtcApiError(action, outcome, hint_for(outcome["Error"]["Code"]))


def time_limit(settings: Settings, record: JobRecord) -> float | None:
    """The push's limit in seconds: its MaxDuration, else the service default (0: none)."""
    return record.MaxDuration or settings.max_duration_seconds or None


def start_request(
    settings: Settings, record: JobRecord, secrets: JobSecrets
) -> models.StartStreamIngestRequest:
    """The StartStreamIngest request of a job (parameter names and types: the SDK's models).

    Unlike the RTMP ingest, the cloud ingest enters numeric rooms too: a ``RoomId`` job goes
    to numeric room ``RoomId`` (RoomIdType 1), a ``StrRoomId`` job to its string room (0).
    ``Loop`` (one clip here) is ``RepeatNum`` -1; a ``RepeatNum`` of -1 is bounded by
    ``MaxDuration`` in minutes, which TRTC applies to endless repeats only; roomcast enforces
    the limit itself in every case. Fields at TRTC's defaults (Volume 100, Tempo 1, RepeatNum
    1) and those not given are not sent.
    """
    room = record.Room
    request = models.StartStreamIngestRequest()
    request.SdkAppId = record.SdkAppId
    if room.StrRoomId:
        request.RoomId, request.RoomIdType = room.StrRoomId, 0
    else:
        request.RoomId, request.RoomIdType = str(room.RoomId), 1
    request.UserId = record.UserId
    request.UserSig = secrets.UserSig
    request.StreamUrl = secrets.VideoSrc
    if secrets.PrivateMapKey:
        request.PrivateMapKey = secrets.PrivateMapKey
    if record.Volume != 100:
        request.Volume = record.Volume
    if record.Tempo != 1:
        request.Tempo = record.Tempo
    if record.StartSeconds:
        request.SeekSecond = int(record.StartSeconds)  # TRTC takes whole seconds
    if record.IdleTimeoutSeconds:
        request.IdleTimeout = record.IdleTimeoutSeconds
    if record.EnableProgress:
        request.EnableProgress = True
    repeat = -1 if record.Loop != "none" else record.RepeatNum
    if repeat != 1:
        request.RepeatNum = repeat
    if repeat == -1:
        limit = time_limit(settings, record)
        if limit is not None:
            request.MaxDuration = min(max(math.ceil(limit / 60), 1), MAX_DURATION_MINUTES)
    return request


@dataclass(frozen=True)
class Ending:
    """How following the task ended: the job's next state and why."""

    state: State
    reason: str
    #: What a stop was requested with (``Control.stop_cause``); None otherwise.
    cause: object | None = None


class CloudIngest:
    """One run's view of a job's TRTC ingest task: start (or re-attach), follow, stop."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        job: Job,
        secrets: JobSecrets,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._rid = job.request_id
        self._job_record = job.record
        self._secrets = secrets
        self._on_progress = on_progress
        # A run after a hand-back finds the task of the previous one in the record.
        cloud = (job.progress or {}).get("Cloud") or {}
        self.task_id: str | None = cloud.get("TaskId")
        self.status: str | None = cloud.get("Status")
        self.started_at = epoch(cloud.get("StartedAt")) or now()
        self._calls: dict[str, Any] = dict((job.record.Trtc or {}).get("Cloud") or {})
        self._api: TrtcClient | None = None
        # What the player commands made of the task (kept in the progress for the next run).
        record = job.record
        first = {
            "Index": 0,
            "VideoSrc": record.VideoSrc,
            "ClipId": next(iter(record.ClipIds), None),
        }
        player = (job.progress or {}).get("Player") or {}
        self._clip: dict[str, Any] = dict(player.get("Clip") or first)
        self._paused = bool(player.get("Paused", False))
        self._volume = player.get("Volume", record.Volume)
        self._tempo = player.get("Tempo", record.Tempo)
        #: Masked in whatever TRTC answers: the job's secrets and the sources switched to.
        self._secret_values = list(secrets.values())
        #: When DescribeStreamIngest is due next (time.monotonic()).
        self._next_check = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the task started."""
        return max(0.0, now() - self.started_at) if self.task_id else 0.0

    @property
    def ended(self) -> bool:
        """Whether TRTC says the task no longer exists."""
        return self.status == NOT_EXIST

    def follow(self, control: Control) -> Ending:
        """Start the task (or re-attach to it) and follow it until it ends or must stop.

        Raises :class:`TrtcApiError` (after trying to stop the task) when TRTC refuses a
        call for good, :class:`TrtcNotConfigured` without credentials.
        """
        missing = self._settings.cloud_missing()
        self._api = trtc.client(self._settings)
        if missing or self._api is None:
            raise TrtcNotConfigured(
                f"Engine=cloud needs {', '.join(missing)} on the workers too (TRTC's API)"
            )
        try:
            return self._follow(control)
        except Exception:
            # Whatever failed (TRTC refusing, an answer the SDK could not read), the push
            # is reported failed: TRTC must not go on pushing for it.
            self.stop()
            raise

    def _follow(self, control: Control) -> Ending:
        if self.task_id is None:
            self._start()
        else:
            log.info("re-attaching to TRTC ingest task %s", self.task_id)
        limit = time_limit(self._settings, self._job_record)
        poll = self._settings.trtc_ingest_poll_seconds
        while True:
            if time.monotonic() >= self._next_check:
                self._describe()
                self._next_check = time.monotonic() + poll
                if self.ended:
                    return Ending(
                        State.SUCCEEDED, "TRTC's ingest task ended (DescribeStreamIngest: NotExist)"
                    )
            for command in control.commands():
                self.apply(command)
            if limit is not None and self.elapsed >= limit:
                return Ending(State.STOPPED, f"time limit reached ({limit:g} s)")
            wait = self._next_check - time.monotonic()
            if limit is not None:
                wait = min(wait, limit - self.elapsed)
            if control.wait(max(wait, 0.0)):
                return Ending(State.STOPPED, control.stop_reason or "stopped", control.stop_cause)

    def apply(self, command: Command) -> None:
        """Do one player command through UpdateStreamIngest, and tell whoever sent it.

        Success updates ``Progress.Player`` and appends the events a worker engine's player
        appends for the same command. Either way the outcome goes into ``Trtc.Cloud.Update``
        and onto the command's reply key, which the API waits on. A refusal never ends the
        push: TRTC's task goes on as it was (one that ended is found by the next query).
        """
        request = self._update_request(command)
        if request is None:
            return
        try:
            response = self._client().UpdateStreamIngest(request)
        except TencentCloudSDKException as exc:
            outcome: dict[str, Any] = {**self._masked(trtc.failure(exc)), "Command": command.name}
            log.warning("TRTC refused %s (UpdateStreamIngest): %s", command.name, outcome)
            if str(exc.get_code()) in TASK_GONE:
                self._next_check = 0.0  # find out at once
        except Exception as exc:  # noqa: BLE001 - the command fails, not the push
            log.exception("UpdateStreamIngest raised")
            outcome = self._internal_error(exc) | {"Command": command.name}
        else:
            outcome = {"Result": "ok", "Command": command.name, "RequestId": response.RequestId}
            log.info("%s done by TRTC (UpdateStreamIngest)", command.name)
            self._applied(command)
            self._report()
        self._record("Update", outcome)
        error = outcome.get("Error")
        hint = hint_for(error["Code"]) if error else None
        self._answer(command, {"Trtc": outcome, "Hint": hint})

    def _update_request(self, command: Command) -> models.UpdateStreamIngestRequest | None:
        """The UpdateStreamIngest request doing ``command``; None (answered) if there is none."""
        request = models.UpdateStreamIngestRequest()
        request.SdkAppId = self._job_record.SdkAppId
        request.TaskId = self.task_id
        match command:
            case Switch(When="now"):
                if self._settings.block_private_addresses:
                    try:  # checked again here, not only by the API: DNS may answer differently
                        check_source_address(command.VideoSrc, self._settings.guard_networks)
                    except SourceError as exc:
                        refusal = {"Code": exc.code, "Message": exc.message, "Field": "VideoSrc"}
                        self._answer(command, {"Refused": refusal})
                        return None
                self._secret_values.append(command.VideoSrc)
                request.StreamUrl = command.VideoSrc
                if self._paused:
                    request.IsPause = False  # a switch resumes, as on a worker
            case Pause():
                request.IsPause = True
            case Resume():
                request.IsPause = False
            case Volume():
                request.Volume = round(command.Volume)  # TRTC takes whole percents
            case Tempo():
                request.Tempo = float(command.Tempo)  # one of TRTC's steps (the API checked)
            case _:
                # The API refuses these for a cloud push; a message from elsewhere is answered.
                log.warning("ignoring %s: TRTC's cloud ingest cannot do it", command.name)
                refusal = {
                    "Code": "CommandNotSupported",
                    "Message": f"Engine=cloud takes {', '.join(sorted(CLOUD_COMMANDS))} only",
                }
                self._answer(command, {"Refused": refusal})
                return None
        return request

    def _applied(self, command: Command) -> None:
        """What TRTC did, as ``Progress.Player`` and as the worker engine's events."""
        match command:
            case Switch():
                to = {"Index": self._clip["Index"] + 1, "VideoSrc": redact_url(command.VideoSrc)}
                to["ClipId"] = command.ClipId
                if self._paused:
                    self._paused = False
                    self._event("resume")
                self._event("clip-ended", How="switched", To=to["VideoSrc"], ToClipId=to["ClipId"])
                self._clip = to
                self._event("clip-started")
            case Pause():
                self._paused = True
                self._event("pause")
            case Resume():
                self._paused = False
                self._event("resume")
            case Volume():
                self._volume = round(command.Volume)
                self._event("volume", Volume=self._volume)
            case Tempo():
                self._tempo = float(command.Tempo)
                self._event("tempo", Tempo=self._tempo)

    def _event(self, name: str, **fields: Any) -> None:
        """An event of the current clip, named and shaped as a worker engine's player's."""
        clip = {"Clip": self._clip["Index"], "ClipId": self._clip["ClipId"]}
        self._store.events.append(
            self._rid, name, **clip, VideoSrc=self._clip["VideoSrc"], **fields
        )

    def _answer(self, command: Command, answer: dict[str, Any]) -> None:
        """Tell the API how ``command`` went, when it waits for that."""
        if command.reply_to is None:
            return
        try:
            self._store.reply(command.reply_to, answer)
        except redis.RedisError as exc:
            log.warning("could not answer %s: %s", command.name, exc)

    def _start(self) -> None:
        request = start_request(self._settings, self._job_record, self._secrets)
        try:
            response = self._client().StartStreamIngest(request)
        except TencentCloudSDKException as exc:
            # A timed-out start is not retried: TRTC may have started the task anyway, and a
            # second one would push the same user twice.
            self._fail("Start", "StartStreamIngest", exc)
        self.task_id = str(response.TaskId)
        self.started_at = now()
        self.status = IN_PROGRESS
        log.info("TRTC ingest task %s started (request %s)", self.task_id, response.RequestId)
        # The TaskId is written at once: a run that follows this one must find it.
        self._report()
        self._record(
            "Start", {"Result": "ok", "TaskId": self.task_id, "RequestId": response.RequestId}
        )

    def _describe(self) -> None:
        request = models.DescribeStreamIngestRequest()
        request.SdkAppId = self._job_record.SdkAppId
        request.TaskId = self.task_id
        try:
            response = self._client().DescribeStreamIngest(request)
        except TencentCloudSDKException as exc:
            code = str(exc.get_code())
            if code in TASK_GONE:
                self.status = NOT_EXIST
            elif code.startswith(TRANSIENT_PREFIXES):
                log.warning("DescribeStreamIngest failed, trying again: %s", code)
                self._report(error=self._masked(trtc.error_of(exc)))
                return
            else:
                self._fail("Describe", "DescribeStreamIngest", exc)
        else:
            self.status = str(response.Status)
        self._report()

    def stop(self) -> None:
        """Stop the task unless TRTC already ended it; the outcome goes into ``Trtc.Cloud``.

        Never raises: the push ends however this goes.
        """
        if self.task_id is None or self.ended or self._api is None:
            return
        request = models.StopStreamIngestRequest()
        request.SdkAppId = self._job_record.SdkAppId
        request.TaskId = self.task_id
        try:
            response = self._api.StopStreamIngest(request)
            outcome: dict[str, Any] = {"Result": "ok", "RequestId": response.RequestId}
            log.info("TRTC ingest task %s stopped", self.task_id)
        except TencentCloudSDKException as exc:
            if str(exc.get_code()) in TASK_GONE:
                outcome = {"Result": "ended", "RequestId": exc.get_request_id() or None}
            else:
                outcome = self._masked(trtc.failure(exc))
                log.warning("TRTC did not stop ingest task %s: %s", self.task_id, outcome)
        except Exception as exc:  # noqa: BLE001 - the push is over; this must not change it
            log.exception("StopStreamIngest raised")
            outcome = self._internal_error(exc)
        self._record("Stop", outcome)

    def _client(self) -> TrtcClient:
        assert self._api is not None, "follow() creates the client"
        return self._api

    def _fail(self, step: str, action: str, exc: TencentCloudSDKException) -> NoReturn:
        """Record a refused call and raise it as a :class:`TrtcApiError`."""
        outcome = self._masked(trtc.failure(exc))
        self._record(step, outcome)
        raise api_error(action, outcome) from None

    def _internal_error(self, exc: Exception) -> dict[str, Any]:
        """The outcome of a call that raised something other than TRTC's answer."""
        error = {"Code": "InternalError", "Message": f"{type(exc).__name__}: {exc}"}
        return self._masked({"Result": "failed", "Error": error})

    def _masked(self, value: dict[str, Any]) -> dict[str, Any]:
        """``value`` with the job's secrets masked: TRTC's messages may quote a parameter."""
        error = value.get("Error", value)
        message = str(error.get("Message", ""))
        for secret in sorted(self._secret_values, key=len, reverse=True):
            message = message.replace(secret, "***")
        if "Message" in error:
            error["Message"] = message
        return value

    def _report(self, error: dict[str, str] | None = None) -> None:
        """The task's state as the job's progress (status API) and the task's meta (Flower)."""
        cloud: dict[str, Any] = {
            "TaskId": self.task_id,
            "Status": self.status,
            "StartedAt": iso(self.started_at),
            "CheckedAt": iso(now()),
        }
        if error is not None:
            cloud["Error"] = error
        data = {
            "Elapsed": round(self.elapsed, 3),
            "RtmpRoom": self._job_record.Room.RtmpRoom,
            "Cloud": cloud,
            "Player": {
                "Clip": self._clip,
                "Paused": self._paused,
                "Volume": self._volume,
                "Tempo": self._tempo,
            },
        }
        try:
            self._store.set_progress(self._rid, data)
            if self._on_progress is not None:
                self._on_progress(data)
        except (redis.RedisError, OSError) as exc:
            # As with the pipeline's progress: Redis restarting must not end the push.
            log.warning("could not record progress (the push goes on): %s", exc)

    def _record(self, step: str, outcome: dict[str, Any]) -> None:
        """Keep a call's outcome in the record's ``Trtc.Cloud``."""
        self._calls[step] = outcome
        try:
            trtc.record(self._store.redis, self._rid, "Cloud", self._calls)
        except redis.RedisError as exc:
            log.warning("could not record TRTC's answer to %s: %s", step, exc)
