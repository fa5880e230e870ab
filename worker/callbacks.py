"""Delivers a push's events to its callback URL: the work of the ``roomcast.deliver`` task.

One deliverer at a time per push (a lock in Redis) sends the events after the push's cursor
in order, one POST each, and moves the cursor past each one the receiver answered with a
2xx. A failed attempt schedules the next through the outbox (1, 2, 4… seconds, at most
``ROOMCAST_CALLBACK_RETRY_MAX_SECONDS``) and ends the task: no worker thread sleeps on a
receiver that is down. ``jobs/outbox.py`` describes the outbox.

Each POST follows Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` is the
event's ``Id``, ``webhook-timestamp`` the time of the attempt, ``webhook-signature``
``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, so receivers verify with that project's
libraries (docs/api.md, "Callbacks"). ``X-Roomcast-Signature`` (HMAC of the body alone) is
still sent for receivers written against earlier versions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from standardwebhooks import Webhook

from jobs.errors import RoomcastError
from jobs.events import EventLog
from jobs.outbox import LOCK_LOST, Outbox, Target, retry_delay
from jobs.redact import redact_url
from jobs.settings import Settings
from jobs.urlguard import check_source_address

log = logging.getLogger(__name__)

#: Events sent per read of the stream (the deliverer reads again until none is left).
BATCH = 50
#: A deliverer's lock outlives one attempt by this much, and is renewed before each.
LOCK_MARGIN_SECONDS = 10.0
#: Bytes of a receiver's answer read (and ignored): enough to let it finish writing.
ANSWER_BYTES = 4096


class Outcome(StrEnum):
    """How one run of the delivery task ended."""

    DELIVERED = "delivered"  # every event so far acknowledged
    RETRYING = "retrying"  # an attempt failed; the outbox schedules the next
    GAVE_UP = "gave-up"  # failing for too long, or the URL is refused
    WAITING = "waiting"  # a retry is scheduled for later: nothing to do now
    BUSY = "busy"  # another deliverer holds the push
    GONE = "gone"  # the job (or its URL) expired


class Signer:
    """Signs callback bodies: Standard Webhooks headers, and the older body-only HMAC."""

    def __init__(self, secret: str) -> None:
        # A whsec_ key is base64 as the convention has it; any other is used as its bytes.
        self._webhook = Webhook(secret if secret.startswith("whsec_") else secret.encode())
        self._secret = secret.encode()

    def headers(self, event_id: str, body: bytes, at: datetime) -> dict[str, str]:
        """The signature headers of one attempt to deliver ``body``."""
        legacy = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        return {
            "webhook-id": event_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": self._webhook.sign(event_id, at, body),
            "X-Roomcast-Signature": f"sha256={legacy}",
        }


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an acknowledgement: following one could lead the
    delivery to an address the URL check never saw."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> str | None:
    """POST one event; None if the receiver acknowledged it (2xx), else why not.

    The reason never repeats the URL, which may carry a token.
    """
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "roomcast", **headers},
        method="POST",
    )
    try:
        with _opener.open(request, timeout=timeout) as answer:
            answer.read(ANSWER_BYTES)
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        return f"could not connect: {exc.reason}"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return f"connection failed: {exc}"
    return None if 200 <= status < 300 else f"HTTP {status}"


Poster = Callable[[str, bytes, dict[str, str], float], "str | None"]


class Deliverer:
    """Sends the undelivered events of one push at a time (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        events: EventLog,
        settings: Settings,
        send: Poster = post,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._events = events
        self._settings = settings
        self._signer = Signer(settings.callback_secret)
        self._send = send
        self._clock = clock

    def deliver(self, request_id: str) -> Outcome:
        """Deliver what push ``request_id`` has not delivered yet, as far as it goes."""
        token = uuid.uuid4().hex
        hold = self._settings.callback_timeout_seconds + LOCK_MARGIN_SECONDS
        if not self._outbox.lock(request_id, token, hold):
            return Outcome.BUSY
        try:
            return self._deliver(request_id, token, hold)
        finally:
            self._outbox.unlock(request_id, token)

    def _deliver(self, request_id: str, token: str, hold: float) -> Outcome:
        while True:
            target = self._outbox.target(request_id)
            if target is None or target.gave_up:
                self._outbox.settle(request_id, token)
                return Outcome.GONE if target is None else Outcome.GAVE_UP
            if target.next_at > self._clock():
                return Outcome.WAITING
            batch = self._events.between(request_id, target.sent, BATCH)
            if not batch:
                if target.sent < target.seq:
                    # Trimmed from the stream (over 1000 events behind): nothing to send.
                    log.warning("events %d-%d are gone", target.sent + 1, target.seq)
                    moved = self._outbox.delivered(request_id, token, target.sent, target.seq)
                    if moved < 0:
                        return _refused(moved)
                    continue
                if self._outbox.settle(request_id, token):
                    return Outcome.DELIVERED
                continue  # an event came meanwhile
            cursor = target.sent
            for seq, body in batch:
                if not self._outbox.hold(request_id, token, hold):
                    return Outcome.BUSY  # stalled past the lock: another deliverer took over
                error = self._attempt(request_id, target, seq, body)
                if error is not None:
                    return self._failed(request_id, token, target, seq, error)
                moved = self._outbox.delivered(request_id, token, cursor, seq)
                if moved < 0:
                    return _refused(moved)
                if moved == 0:
                    break  # a replay moved the cursor back: start again from there
                cursor = seq

    def _attempt(self, request_id: str, target: Target, seq: int, body: bytes) -> str | None:
        if self._settings.block_private_addresses:
            try:
                # Checked at submit, and again now: DNS may answer differently by now.
                check_source_address(target.url, self._settings.guard_networks)
            except RoomcastError as exc:
                return exc.message
        event_id = f"{request_id}.{seq}"
        at = datetime.fromtimestamp(self._clock(), UTC)
        headers = self._signer.headers(event_id, body, at)
        return self._send(target.url, body, headers, self._settings.callback_timeout_seconds)

    def _failed(self, request_id: str, token: str, target: Target, seq: int, error: str) -> Outcome:
        now = self._clock()
        settings = self._settings
        failing = now - (target.failing_since or now)
        where = redact_url(target.url)
        if failing >= settings.callback_give_up_seconds:
            if (refused := self._outbox.failed(request_id, token, error, now, None)) < 0:
                return _refused(refused)
            log.error(
                "callback to %s: gave up on event %d after %.0f s of failures (%s); "
                "POST /v1/pushes/%s/events/replay sends the events again",
                *(where, seq, failing, error, request_id),
            )
            return Outcome.GAVE_UP
        delay = retry_delay(target.failures + 1, settings.callback_retry_max_seconds)
        failures = self._outbox.failed(request_id, token, error, now, now + delay)
        if failures < 0:
            return _refused(failures)
        log.warning(
            "callback to %s: event %d not delivered (%s); attempt %d, next in %.1f s",
            *(where, seq, error, failures, delay),
        )
        return Outcome.RETRYING


def _refused(answer: int) -> Outcome:
    """The outcome of a write the outbox refused: the lock was lost, or the job is gone."""
    return Outcome.BUSY if answer == LOCK_LOST else Outcome.GONE
