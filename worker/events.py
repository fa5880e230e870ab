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
import threading
import time
import urllib.error
import urllib.request
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


class CallbackSender(threading.Thread):
    """POSTs a job's events to its callback URL in order, retrying each with backoff.

    Runs beside the push; after the push ends it keeps delivering until the final event
    is delivered or given up, within ``drain_seconds``.
    """

    def __init__(
        self,
        log_: EventLog,
        request_id: str,
        url: str,
        secret: str,
        attempts: int = 6,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(name=f"callbacks-{request_id[:8]}", daemon=True)
        self._log = log_
        self._request_id = request_id
        self._url = url
        self._secret = secret
        self._attempts = attempts
        self._timeout = timeout
        self._ending = threading.Event()
        self.delivered = 0
        self.failed = 0

    def finish(self, drain_seconds: float = 15.0) -> None:
        """The push is over: deliver what is left, then stop."""
        self._ending.set()
        self.join(timeout=drain_seconds)

    def run(self) -> None:
        """Deliver every event in order, until the final one."""
        after = "0"
        while True:
            try:
                batch = self._log.read(self._request_id, after, block_ms=500)
            except redis.RedisError as exc:
                log.warning("reading events for callbacks failed: %s", exc)
                time.sleep(1)
                continue
            for entry_id, event in batch:
                self._deliver(event)
                after = entry_id
                if event.get("Event") in FINAL_EVENTS:
                    return
            if not batch and self._ending.is_set():
                return

    def _deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps(event).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Roomcast-Signature": sign(self._secret, body),
            "X-Roomcast-Event": str(event.get("Event")),
        }
        delay = 0.5
        for attempt in range(1, self._attempts + 1):
            request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as resp:
                    if 200 <= resp.status < 300:
                        self.delivered += 1
                        return
            except (urllib.error.URLError, OSError) as exc:
                log.info("callback %s attempt %d failed: %s", event.get("Event"), attempt, exc)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        self.failed += 1
        log.warning("callback %s given up after %d attempts", event.get("Event"), self._attempts)
