"""The process's shared clients, created on first use (after a prefork worker forks)."""

from __future__ import annotations

from functools import lru_cache

import redis

from jobs.settings import get_settings
from jobs.store import Job, JobStore

from .messages import enqueue


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The service's Redis (``ROOMCAST_REDIS_URL``), with short timeouts.

    Pushes borrow connections briefly (progress, events), and the process's control hub
    holds one for its subscription. The cap is a ceiling for a threads-pool worker with many
    pushes at once, well past redis-py's default of 100; connections open only when needed.
    """
    return redis.Redis.from_url(
        get_settings().redis_url,
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
        max_connections=MAX_REDIS_CONNECTIONS,
    )


#: Connections one worker process may open to the service's Redis (see get_redis).
MAX_REDIS_CONNECTIONS = 4096


@lru_cache(maxsize=1)
def get_store() -> JobStore:
    """The job records."""
    s = get_settings()
    return JobStore(
        get_redis(),
        ttl=s.job_ttl_seconds,
        lost_after=s.worker_lost_seconds,
        requeue=_requeue,
        max_attempts=s.max_attempts,
    )


def _requeue(job: Job) -> None:
    from . import app  # noqa: PLC0415 - the Celery app's module imports this one

    enqueue(app, job.request_id, job.doc)
