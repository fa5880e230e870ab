"""What happened to a push, in order: kept in a Redis stream, streamed to clients, and
POSTed to the job's callback URL.

Key ``roomcast:events:<id>`` (a Redis stream, trimmed to the last 1000 events, expiring
with the job). Every event is a JSON object with ``Event`` (``running``, ``succeeded``,
``failed``, ``stopped``, ``clip-start``, ``clip-end``, ``switch``, ``pause``, ``resume``,
``seek``…), ``RequestId``, ``At`` (epoch seconds) and event fields. The API serves them as
server-sent events (``GET /v1/pushes/<id>/events``); a job with ``CallbackUrl`` gets each
one POSTed, in order, signed with ``ROOMCAST_CALLBACK_SECRET``
(``X-Roomcast-Signature: sha256=<hex HMAC of the body>``), retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any, cast

import redis

log = logging.getLogger(__name__)

KEEP = 1000
FINAL_EVENTS = frozenset({"succeeded", "failed", "stopped"})


def events_key(request_id: str) -> str:
    """The Redis stream of one job's events."""
    return f"roomcast:events:{request_id}"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for a callback body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class EventLog:
    """Appends and reads one job's events."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def append(self, request_id: str, event: str, **fields: Any) -> None:
        """Record an event (never raises: events must not break a push)."""
        data = {"Event": event, "RequestId": request_id, "At": round(time.time(), 3), **fields}
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(
                events_key(request_id), {"json": json.dumps(data)}, maxlen=KEEP, approximate=True
            )
            pipe.expire(events_key(request_id), self.ttl)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not record event %s: %s", event, exc)

    def read(
        self, request_id: str, after: str = "0", block_ms: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id ``after`` (waiting up to ``block_ms`` for new ones)."""
        answer = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            self.redis.xread({events_key(request_id): after}, count=100, block=block_ms),
        )
        out: list[tuple[str, dict[str, Any]]] = []
        for _, entries in answer or []:
            for entry_id, fields in entries:
                out.append((entry_id.decode(), json.loads(fields[b"json"])))
        return out
