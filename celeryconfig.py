"""Celery settings for roomcast, derived from ``ROOMCAST_*`` (jobs/settings.py).

Why these values (docs/celery.md has the long version):

* ``task_acks_late = False``: a push is acknowledged when a worker takes it. A push can
  last hours, longer than the Redis transport's ``visibility_timeout``; with late acks it
  would be redelivered and published twice. A worker that dies mid-push is detected by the
  job's heartbeat instead ("worker lost"), not by redelivery.
* ``worker_prefetch_multiplier = 1`` and ``worker_disable_prefetch = True``: a worker
  takes a push only when it has a free slot. With early acks a reserved push no longer
  counts against the prefetch window, so a full worker kept taking pushes it could not
  start while another worker sat idle: in bench/concurrency.py, 3 of 100 pushes waited 30 s
  for a slot. Run workers with a concurrency that matches the pushes a machine should carry.
* events on, so Flower sees tasks; task messages carry only the request id.
* ``task_default_queue = ROOMCAST_QUEUE`` ("roomcast"): pushes do not mix with another
  Celery app's work on a shared Redis.
* ``task_track_started = False``: the task records STARTED itself once the push really
  starts (worker/tasks.py), so a second delivery of a message never overwrites the state
  of a push that ended (docs/celery.md).
* ``worker_pool``, ``worker_concurrency`` from ``ROOMCAST_WORKER_POOL`` and
  ``ROOMCAST_WORKER_CONCURRENCY``: the measured layout (threads, 25 pushes) for any
  ``celery -A worker worker``, with or without the Procfile. (Celery lets this setting win
  over ``-P prefork`` on the command line: choose the pool with the variable.)
"""

from typing import Any

from jobs.settings import Settings, get_settings


def for_settings(settings: Settings) -> dict[str, Any]:
    """Celery's configuration for ``settings`` (the API builds its client from it too)."""
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": 12 * 3600},
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": settings.job_ttl_seconds,
        "task_default_queue": settings.queue,
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "task_acks_late": False,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "task_track_started": False,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


# `celery -A worker` reads this module's names: the configuration of the environment's
# settings (ROOMCAST_*).
globals().update(for_settings(get_settings()))
