"""The process's shared clients, created on first use (after a prefork worker forks)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jobs.settings import Settings, get_settings
from jobs.store import Job, JobStore, open_store
from pipeline.rendition_cache import RenditionCache

from .messages import enqueue, send_delivery

#: Connections one worker process may open to the service's Redis. Pushes borrow
#: connections briefly (progress, events), and the process's control hub holds one for its
#: subscription: a ceiling for a threads-pool worker with many pushes at once, well past
#: redis-py's default of 100; connections open only when needed.
MAX_REDIS_CONNECTIONS = 4096


@lru_cache(maxsize=1)
def get_store() -> JobStore:
    """This worker process's job records (``ROOMCAST_REDIS_URL``); hand-backs re-enqueue."""
    return open_store(
        get_settings(),
        requeue=_requeue,
        max_connections=MAX_REDIS_CONNECTIONS,
        deliver=_deliver,
    )


def _deliver(request_id: str) -> None:
    from . import app  # noqa: PLC0415 - the Celery app's module imports this one

    send_delivery(app, get_settings().events_queue, request_id)


def _requeue(job: Job) -> None:
    from . import app  # noqa: PLC0415 - the Celery app's module imports this one

    enqueue(app, job.request_id, job.record)


def rendition_cache(settings: Settings) -> RenditionCache | None:
    """The rendition cache the settings name (None: renditions are off)."""
    if not settings.renditions:
        return None
    return _cache_at(str(settings.renditions_path), settings.renditions_max_bytes)


@lru_cache(maxsize=4)
def _cache_at(root: str, max_bytes: int) -> RenditionCache:
    return RenditionCache(Path(root), max_bytes)
