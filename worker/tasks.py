"""The Celery tasks: one long-running, revocable task per push, and the short deliveries of
its events to its callback URL (``roomcast.deliver``, on the events queue).

The message carries only the request id ("pass the minimal amount of data"): the job
record and its secrets wait in Redis, so Flower, task results and the broker never hold a
UserSig or a password. The task's state mirrors the job's (worker/celerystate.py).
"""

from __future__ import annotations

import json
import time
from typing import Any, NoReturn

from celery import Task, shared_task
from celery.exceptions import Ignore

from jobs.preparations import PreparationStore
from jobs.settings import get_settings
from jobs.states import State
from jobs.store import Job

from .callbacks import Deliverer
from .celerystate import PushFailed, revoked_event_fields
from .messages import DELIVER_TASK, PREPARE_TASK, PUSH_TASK
from .preparer import run_preparation
from .runner import RunEnd, run_push
from .services import get_store


@shared_task(bind=True, name=PUSH_TASK, throws=(PushFailed,))
def push_task(self: Task, request_id: str) -> dict[str, Any]:
    """Push job ``request_id`` into its room until it ends, is stopped or fails."""
    monitor = _Monitor(self, get_settings().task_state_seconds)
    end = run_push(
        get_store(),
        get_settings(),
        request_id,
        worker=self.request.hostname or "",
        on_progress=monitor.progress,
        on_started=monitor.started,
    )
    return _mirror(self, request_id, end)


@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver_task(request_id: str) -> str:
    """Deliver push ``request_id``'s undelivered events to its callback URL, in order.

    Returns how it went (``worker/callbacks.py``'s Outcome), for Flower's task page.
    """
    store = get_store()
    return Deliverer(store.outbox, store.events, get_settings()).deliver(request_id).value


@shared_task(bind=True, name=PREPARE_TASK)
def prepare_task(self: Task, request_id: str) -> str:
    """Encode the clips of preparation ``request_id`` into renditions; returns its final
    state (succeeded: every clip ready; failed: at least one could not be prepared). A
    stopped one ends ``REVOKED``, as a stopped push does."""
    settings, store = get_settings(), get_store()
    preparations = PreparationStore.of(store)
    state = run_preparation(preparations, settings, request_id, counted=store.count)
    if state == "stopped":
        found = preparations.get(request_id)
        _revoked(self, request_id, (found and found.Reason) or "stopped")
    return state


def _mirror(task: Task, request_id: str, end: RunEnd) -> dict[str, Any]:
    """End the task in the Celery state that says what happened to the job.

    ``Ignore`` leaves Celery's state alone where this run is not the job's last word: the
    push was handed back (the next run reports), runs elsewhere, or is unknown.
    """
    if end.state is State.SUCCEEDED:
        return end.as_result(request_id)
    if end.state is State.FAILED:
        error = end.error or {}
        raise PushFailed.of(
            str(error.get("Code") or "InternalError"), str(error.get("Message") or end.reason)
        )
    if end.state is State.STOPPED:
        _revoked(task, request_id, end.reason or "stopped")
    raise Ignore()


def _revoked(task: Task, request_id: str, reason: str) -> NoReturn:
    """End the task ``REVOKED`` with ``reason``, in the result store and for Flower."""
    task.backend.mark_as_revoked(request_id, reason, request=task.request)
    task.send_event("task-revoked", **revoked_event_fields())
    raise Ignore()


class _Monitor:
    """What Flower and ``AsyncResult`` see of a running push.

    The result store gets ``STARTED`` once the push starts (``task_track_started`` is off,
    so that a second delivery of a message, or a push stopped while queued, never
    overwrites the job's real state), then ``PROGRESS`` with :func:`summary`.

    Flower's task page shows events, not the result store. A custom-state event would do,
    but Celery's event state ranks any custom state above ``REVOKED``, so a stopped push
    would stay ``PROGRESS`` in Flower. So the progress rides on a repeated ``task-started``
    event: the same state, the first start time kept, ``result`` the summary.
    """

    def __init__(self, task: Task, every: float) -> None:
        self._task = task
        self._every = every
        self._job: Job | None = None
        self._started_at = 0.0
        self._shown = 0.0

    def started(self, job: Job) -> None:
        """The push runs here now."""
        self._job = job
        self._started_at = time.time()
        self._task.update_state(state="STARTED", meta=summary(job, {}))

    def progress(self, progress: dict[str, Any]) -> None:
        """About once a second; passed on every ``ROOMCAST_TASK_STATE_SECONDS``.

        Less often than the status API: storing a task state costs two Redis round trips
        and a publish, a seventh of a busy worker's time when done every second
        (bench/concurrency.py).
        """
        now = time.monotonic()
        if self._job is None or now - self._shown < self._every:
            return
        self._shown = now
        meta = summary(self._job, progress)
        self._task.update_state(state="PROGRESS", meta=meta)
        self._task.send_event(
            "task-started", started=self._started_at, result=json.dumps(meta, separators=(",", ":"))
        )


def summary(job: Job, progress: dict[str, Any]) -> dict[str, Any]:
    """The push as Celery shows it: where it is, into which room, from which source.

    The source is the record's (signed URLs' secrets masked at submit); nothing here is a
    secret. A push through TRTC's cloud ingest (``Engine=cloud``) shows its time since the
    start as its position, and its ingest task (``Cloud``).
    """
    record = job.record
    summary = {
        "RequestId": job.request_id,
        "Position": progress.get("Position", progress.get("Elapsed")),
        "Duration": progress.get("Duration"),
        "Bitrate": progress.get("Bitrate"),
        "Frames": progress.get("Frames"),
        "SdkAppId": record.SdkAppId,
        "Room": record.Room.RtmpRoom,
        "UserId": record.UserId,
        "Mode": record.Mode,
        "VideoSrc": record.VideoSrc,
    }
    if "Cloud" in progress:
        summary["Cloud"] = progress["Cloud"]
    return summary
