"""The worker's side of control: messages from Redis and Celery's revoke signal."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import redis

from pipeline.control import Control

from .jobs import JobStore, control_channel

log = logging.getLogger(__name__)

REVOKED_REASON = "stopped by request"


class ControlListener(threading.Thread):
    """Hears control messages for one push and keeps its heartbeat going.

    The heartbeat lives here, not in the media loop, so that it says "this worker is
    alive" even while a source read is slow.
    """

    def __init__(
        self, store: JobStore, request_id: str, control: Control, heartbeat: float
    ) -> None:
        super().__init__(name=f"control-{request_id[:8]}", daemon=True)
        self._store = store
        self._request_id = request_id
        self._control = control
        self._heartbeat = heartbeat
        self._done = threading.Event()

    def stop(self) -> None:
        """End the thread (the push is over)."""
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        """Subscribe, pick up a stop sent before we listened, then listen and beat."""
        while not self._done.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                log.warning("control channel lost (%s); retrying", exc)
                self._done.wait(1.0)

    def _listen(self) -> None:
        pubsub = self._store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(control_channel(self._request_id))
            reason = self._store.stop_requested(self._request_id)
            if reason:
                self._control.request_stop(reason)
            next_beat = 0.0
            while not self._done.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    self._store.beat(self._request_id)
                    next_beat = now + self._heartbeat
                message = pubsub.get_message(timeout=min(0.5, self._heartbeat))
                if message is not None:
                    self._handle(message.get("data"))
        finally:
            pubsub.close()

    def _handle(self, data: object) -> None:
        try:
            command = json.loads(data if isinstance(data, str | bytes) else "{}")
        except ValueError:
            log.warning("ignoring a control message that is not JSON")
            return
        if command.get("Command") == "stop":
            log.info("stop requested: %s", command.get("Reason", REVOKED_REASON))
            self._control.request_stop(str(command.get("Reason") or REVOKED_REASON))
        else:
            log.warning("ignoring unknown control command %r", command.get("Command"))


@contextmanager
def revoke_signal_stops(control: Control) -> Iterator[None]:
    """Turn Celery's ``revoke(terminate=True, signal="SIGUSR1")`` into a clean stop.

    In a prefork child SIGUSR1 normally raises ``SoftTimeLimitExceeded`` wherever the task
    happens to be, possibly inside the output's close. Here it only sets the stop flag
    (async-signal-safe), and the pipeline ends the publish itself. Signals can be set only
    from the main thread; in a thread pool the control message alone stops the push.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_revoke(signum: int, frame: FrameType | None) -> None:
        control.request_stop(REVOKED_REASON)

    previous = signal.signal(signal.SIGUSR1, on_revoke)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
