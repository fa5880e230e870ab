"""The process's shared clients, created on first use (after a prefork worker forks)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jobs.settings import Settings, get_settings
from jobs.store import Job, JobStore, open_store
from pipeline.rendition_cache import RenditionCache
from pipeline.rendition_store import S3Store

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
    """The rendition cache the settings name (None: renditions are off), with its shared
    store when ``ROOMCAST_RENDITIONS_S3`` names one."""
    if not settings.renditions:
        return None
    return _cache_at(
        str(settings.renditions_path),
        settings.renditions_max_bytes,
        rendition_store(settings),
        settings.renditions_s3_fetch_wait_seconds,
    )


def rendition_store(settings: Settings) -> S3Store | None:
    """The shared rendition store the settings name; None without one."""
    location = settings.renditions_s3_location
    if location is None:
        return None
    bucket, prefix = location
    return _store_at(
        bucket,
        prefix,
        settings.renditions_s3_max_bytes,
        settings.renditions_s3_endpoint,
        settings.renditions_s3_region,
    )


def check_rendition_store(settings: Settings) -> None:
    """Stop a worker at its start when its shared rendition store cannot be used at all
    (boto3, the ``s3`` extra, not installed), rather than leave every push without it.
    Builds no client: one made before a prefork worker forks would be shared."""
    if not (settings.renditions and settings.renditions_s3):
        return
    try:
        import boto3  # noqa: F401, PLC0415 - only to know it is there
    except ImportError:
        raise SystemExit(
            "ROOMCAST_RENDITIONS_S3 is set, but boto3 is not installed: "
            "pip install 'roomcast[s3]' (or unset ROOMCAST_RENDITIONS_S3)"
        ) from None


@lru_cache(maxsize=4)
def _store_at(bucket: str, prefix: str, max_bytes: int, endpoint: str, region: str) -> S3Store:
    return S3Store(bucket, prefix, max_bytes, endpoint_url=endpoint, region=region)


@lru_cache(maxsize=4)
def _cache_at(
    root: str, max_bytes: int, shared: S3Store | None, fetch_wait: float
) -> RenditionCache:
    return RenditionCache(Path(root), max_bytes, shared, fetch_wait)
