"""roomcast's Celery app: ``celery -A worker worker`` runs push tasks.

Configuration comes from ``celeryconfig.py``, which reads ``ROOMCAST_*`` settings.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from .logs import configure_logging
from .settings import get_settings

app = Celery("roomcast")
app.config_from_object("celeryconfig")
app.autodiscover_tasks(["worker"], related_name="tasks", force=True)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our format (request id on every line, secrets masked) instead of Celery's.
    s = get_settings()
    configure_logging(s.log_level, s.log_json)


__all__ = ["app"]
