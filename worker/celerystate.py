"""Celery's view of a push: the task state, result and events that mirror the job's.

Operators watch Flower and ``AsyncResult``, so Celery must tell what roomcast's record
tells: ``succeeded`` → ``SUCCESS``, ``failed`` → ``FAILURE`` (a :class:`PushFailed` with
the job's error code and message), ``stopped`` → ``REVOKED`` (with the stop's reason), by
whatever path the push was stopped. Imports Celery only: the API uses :func:`mark_revoked`
for a push it stops while queued.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

#: Events that tell monitors a task was revoked carry these fields (as Celery's own do).
_REVOKED_FIELDS: dict[str, Any] = {"terminated": False, "signum": None, "expired": False}


class PushFailed(Exception):
    """A push that ended ``failed``: its Celery ``FAILURE`` result.

    ``AsyncResult(id).result`` is this exception, ``"<Code>: <Message>"``: the job's own
    ``Error``, which never holds a secret. One string argument, so that a client without
    roomcast's code (Celery then rebuilds the exception under a generic class) reads the
    same text.
    """

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.code, _, self.message = error.partition(": ")

    @classmethod
    def of(cls, code: str, message: str) -> PushFailed:
        """The failure of a push whose ``Error`` is ``{"Code": code, "Message": message}``."""
        return cls(f"{code}: {message}")


def mark_revoked(app: Celery, request_id: str, reason: str, hostname: str | None = None) -> None:
    """Record a stopped push as ``REVOKED`` and announce it to monitors (Flower).

    What Celery's worker does for a task it revokes itself: the result store gets
    ``TaskRevokedError(reason)`` and a ``task-revoked`` event goes out.
    """
    app.backend.mark_as_revoked(request_id, reason)
    with app.events.default_dispatcher(hostname=hostname) as dispatcher:
        dispatcher.send("task-revoked", uuid=request_id, **_REVOKED_FIELDS)


def revoked_event_fields() -> dict[str, Any]:
    """The fields of a ``task-revoked`` event for a push that stopped cleanly."""
    return dict(_REVOKED_FIELDS)
