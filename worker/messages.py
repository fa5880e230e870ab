"""A push's Celery message: its task name, its queue, and the stamps that name it.

The message carries the request id only (it is also the task id, so ``revoke`` and
``AsyncResult`` take the id the client knows). It goes to the ``ROOMCAST_QUEUE`` queue
(``task_default_queue``), so that a Redis shared with another Celery app does not mix work.

Each message is stamped with what the push is, so that one call of Celery's
``revoke_by_stamped_headers`` stops every push of an app, a room or a user::

    app.control.revoke_by_stamped_headers({"room": "1400000000:demo"})

| stamp | value |
|---|---|
| ``sdkappid`` | ``"<SdkAppId>"`` |
| ``room`` | ``"<SdkAppId>:<RtmpRoom>"`` |
| ``userid`` | ``"<SdkAppId>:<UserId>"`` |

Imports Celery only: the API enqueues through it without loading the task's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery
from celery.utils.functional import maybe_list

from jobs.records import JobRecord

#: The push task's registered name (worker/tasks.py).
PUSH_TASK = "roomcast.push"
#: The task that encodes a preparation's clips into renditions (worker/tasks.py).
PREPARE_TASK = "roomcast.prepare"
#: The callback delivery task's (worker/tasks.py): one push's undelivered events.
DELIVER_TASK = "roomcast.deliver"


def stamps(record: JobRecord) -> dict[str, str]:
    """The stamped headers of a push's message, from its job record."""
    app = record.SdkAppId
    return {
        "sdkappid": str(app),
        "room": f"{app}:{record.Room.RtmpRoom}",
        "userid": f"{app}:{record.UserId}",
    }


def matches(record: JobRecord, headers: Mapping[str, Any]) -> bool:
    """Whether a push's stamps match any of ``headers`` (as Celery's worker matches them)."""
    own = stamps(record)
    return any(
        header in own and own[header] in {str(v) for v in maybe_list(values) or []}
        for header, values in headers.items()
    )


def scopes(headers: Mapping[str, Any]) -> list[tuple[str, tuple[int, str]]] | None:
    """The rooms and users that stamped ``headers`` name, as ``("room" | "user", (SdkAppId,
    name))``; None when they name something else (an app: every live push must be read)."""
    found: list[tuple[str, tuple[int, str]]] = []
    for header, values in headers.items():
        kind = {"room": "room", "userid": "user"}.get(header)
        if kind is None:
            return None
        for value in maybe_list(values) or []:
            app, sep, name = str(value).partition(":")
            if not sep or not app.isdigit():
                return None
            found.append((kind, (int(app), name)))
    return found


def enqueue(app: Celery, request_id: str, record: JobRecord) -> None:
    """Send the push task for job ``request_id`` (its ``record`` is already stored)."""
    own = stamps(record)
    app.send_task(
        PUSH_TASK, args=[request_id], task_id=request_id, stamped_headers=list(own), **own
    )


def send_preparation(app: Celery, request_id: str) -> None:
    """Send the task that prepares the renditions of preparation ``request_id``."""
    app.send_task(PREPARE_TASK, args=[request_id], task_id=request_id)


def send_delivery(app: Celery, queue: str, request_id: str) -> None:
    """Send the delivery task of push ``request_id``'s callback events to ``queue``
    (``Settings.events_queue``, served apart from the long push tasks)."""
    app.send_task(DELIVER_TASK, args=[request_id], queue=queue, ignore_result=True)


def parse_headers(headers: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    """Stamped headers as Celery's command line gives them (``["k=v", …]``) or as a dict."""
    if isinstance(headers, Mapping):
        return dict(headers)
    return dict(str(h).split("=", 1) for h in headers if "=" in str(h))
