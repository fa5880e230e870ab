"""The Celery task: one long-running, revocable task per push.

The message carries only the request id ("pass the minimal amount of data"): the job
record and its secrets wait in Redis, so Flower, task results and the broker never hold a
UserSig or a password.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task, shared_task

from .runner import run_push
from .services import get_store
from .settings import get_settings

PUSH_TASK = "roomcast.push"


@shared_task(bind=True, name=PUSH_TASK)
def push_task(self: Task, request_id: str) -> dict[str, Any]:
    """Push job ``request_id`` into its room until it ends, is stopped or fails."""

    settings = get_settings()
    shown = 0.0

    def show_progress(progress: dict[str, Any]) -> None:
        # Flower and AsyncResult see the live progress as the task's meta. Less often than
        # the status API: storing a task state costs two Redis round trips and a publish,
        # a seventh of a busy worker's time when done every second (bench/concurrency.py).
        nonlocal shown
        now = time.monotonic()
        if now - shown >= settings.task_state_seconds:
            shown = now
            self.update_state(state="PROGRESS", meta=progress)

    return run_push(
        get_store(),
        settings,
        request_id,
        worker=self.request.hostname or "",
        on_progress=show_progress,
    )
