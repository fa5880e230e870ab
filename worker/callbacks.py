"""Delivers a push's events to its callback URL while it runs (``CallbackUrl``)."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import redis

from jobs.events import FINAL_EVENTS, EventLog, sign

log = logging.getLogger(__name__)


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
