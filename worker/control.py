"""The worker's side of control: messages from Redis, Celery's revoke signal, shutdown."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

import redis

from pipeline.control import Control

from .jobs import JobStore, control_channel

log = logging.getLogger(__name__)

REVOKED_REASON = "stopped by request"
#: Commands a switchable push's player understands (pipeline/player.py).
PLAYER_COMMANDS = frozenset({"switch", "queue", "seek", "pause", "resume", "loop", "volume"})
SHUTDOWN_REASON = "worker shutting down"
TAKEN_OVER_REASON = "another worker took this push over"
LEASE_LOST_REASON = "another push took over this UserId in this room (publisher lease lost)"
FENCED_REASON = (
    "this worker lost contact with Redis: it stopped publishing so that another worker can "
    "take the push over without two publishers"
)

#: How long a push has to end its publish by itself once asked to stop, before the stop
#: ends it (a stopped push's publisher leaves within about 60 ms when nothing holds it up).
STOP_GRACE = 0.3

# Set in prefork pool children (Celery's worker_process_init), where SIGTERM belongs to
# billiard, not to Celery's warm-shutdown handler of the main process.
_in_pool_child = False


def mark_pool_child() -> None:
    """Record that this process is a prefork pool child (called at its start)."""
    global _in_pool_child
    _in_pool_child = True


class ControlListener(threading.Thread):
    """Hears control messages for one push and keeps its heartbeat going.

    The heartbeat lives here, not in the media loop, so that it says "this worker is
    alive" even while a source read is slow.

    ``fence_after``: once no heartbeat has reached Redis for this long, the push is stopped
    (:data:`FENCED_REASON`). Set a heartbeat short of the time after which other workers
    take a silent push for lost, it makes sure a worker cut off from Redis has stopped
    publishing before another one starts the same push.
    """

    def __init__(
        self,
        store: JobStore,
        request_id: str,
        control: Control,
        heartbeat: float,
        run_id: str = "",
        fence_after: float | None = None,
    ) -> None:
        super().__init__(name=f"control-{request_id[:8]}", daemon=True)
        self._run_id = run_id
        self._fence_after = fence_after
        self._last_beat = time.monotonic()
        self._store = store
        self._request_id = request_id
        self._control = control
        self._heartbeat = heartbeat
        self._done = threading.Event()
        # The job's log context (request id, secrets to mask), for this thread's lines. Not
        # ``_context``: Python 3.14's Thread runs ``run`` in an attribute of that name.
        self._job_context = contextvars.copy_context()

    def _ask_to_stop(self, reason: str) -> None:
        """Ask the push to stop; end its publish from here if it has not, a moment later.

        The push's thread acts on a stop between two packets, but it may be held up in a
        call a stop does not interrupt: a live source that went silent holds its read for
        up to the read timeout, and the publisher would stay in the room as long.
        """
        self._control.request_stop(reason)
        if not self._done.wait(STOP_GRACE) and self._control.cut_off():
            log.info("the push was still publishing %g s after the stop: publish ended", STOP_GRACE)

    def stop(self) -> None:
        """End the thread (the push is over)."""
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        """Subscribe, pick up a stop sent before we listened, then listen and beat."""
        self._job_context.run(self._run)

    def _run(self) -> None:
        if self._fence_after is not None:
            # Its own thread: a Redis call may hang for its whole socket timeout when the
            # network drops packets, and the fence must not wait for it.
            threading.Thread(
                target=self._job_context.copy().run,
                args=(self._fence,),
                name=f"fence-{self.name}",
                daemon=True,
            ).start()
        while not self._done.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                log.warning("control channel lost (%s); retrying", exc)
                self._done.wait(1.0)

    def _fence(self) -> None:
        """Stop the push once no heartbeat has reached Redis for ``fence_after`` seconds."""
        assert self._fence_after is not None
        while True:
            silent = time.monotonic() - self._last_beat
            if silent >= self._fence_after:
                log.error("no heartbeat reached Redis for %.1f s: stopping the push", silent)
                self._ask_to_stop(FENCED_REASON)
                return
            # Asleep until the silence would reach the limit, not woken every second: a
            # beat landing meanwhile moves the limit on, so this wakes about once per
            # ``fence_after`` while Redis answers (a wake-up per push per second cost CPU).
            if self._done.wait(self._fence_after - silent):
                return

    def _listen(self) -> None:
        pubsub = self._store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(control_channel(self._request_id))
            reason = self._store.stop_requested(self._request_id)
            if reason:
                self._ask_to_stop(reason)
            next_beat = 0.0
            while not self._done.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    held, current = self._store.heartbeat(self._request_id)
                    if not held:
                        # Renewing the lease found another live job holding it: stop publishing.
                        self._ask_to_stop(LEASE_LOST_REASON)
                    self._last_beat = now
                    if self._run_id and current not in (None, self._run_id):
                        # This worker was taken for lost and the push runs elsewhere now.
                        self._ask_to_stop(TAKEN_OVER_REASON)
                    next_beat = now + self._heartbeat
                # A message ends the wait at once; the timeout only paces the heartbeat and
                # the check for the end of the push (each wake-up costs every push CPU).
                message = pubsub.get_message(timeout=min(1.0, self._heartbeat))
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
        name = command.get("Command")
        if name == "stop":
            log.info("stop requested: %s", command.get("Reason", REVOKED_REASON))
            self._ask_to_stop(str(command.get("Reason") or REVOKED_REASON))
        elif name in PLAYER_COMMANDS:
            log.info("command %s received", name)
            self._control.send(command)
        else:
            log.warning("ignoring unknown control command %r", name)


@contextmanager
def signal_stops(control: Control) -> Iterator[None]:
    """Turn the signals that would kill a push mid-packet into clean stops, while it runs.

    * SIGUSR1, Celery's ``revoke(terminate=True, signal="SIGUSR1")``: in a prefork child it
      normally raises ``SoftTimeLimitExceeded`` wherever the task happens to be, possibly
      inside the output's close. Here it only sets the stop flag.
    * SIGTERM in a prefork child: a warm shutdown (a deploy) usually signals the whole process
      group (honcho, systemd), and billiard's handler would raise ``SystemExit`` mid-push:
      no clean close, no final bookmark, and the job reported ``WorkerLost`` later. Here it
      stops the push with ``SHUTDOWN_REASON``. In the main process (solo pool) SIGTERM is
      left to Celery, whose warm shutdown stops the push through ``stop_pushes``.

    The handlers only set the flag (async-signal-safe), and the pipeline ends the publish
    itself. Signals can be set only from the main thread; in a thread pool the control
    message alone stops the push.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_revoke(signum: int, frame: FrameType | None) -> None:
        control.request_stop(REVOKED_REASON)

    def on_shutdown(signum: int, frame: FrameType | None) -> None:
        control.request_stop(SHUTDOWN_REASON)

    previous_usr1 = signal.signal(signal.SIGUSR1, on_revoke)
    previous_term = signal.signal(signal.SIGTERM, on_shutdown) if _in_pool_child else None
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def stop_pushes(redis_url: str, request_ids: Iterable[str], reason: str) -> None:
    """Ask the running pushes ``request_ids`` to stop (a worker's warm shutdown).

    Called from Celery's ``worker_shutting_down``, which runs inside the main process's
    signal handler: a fresh client with short timeouts, so that it never waits on a
    connection pool lock the interrupted code may hold, nor for long on a dead Redis
    (process managers kill the worker a few seconds after SIGTERM). Never raises.
    """
    ids = list(request_ids)
    if not ids:
        return
    client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        # The TTL and lost_after are unused by request_stop.
        store = JobStore(client, ttl=0, lost_after=0)
        for request_id in ids:
            try:
                store.request_stop(request_id, reason)
            except redis.RedisError as exc:
                log.warning("could not ask push %s to stop on shutdown: %s", request_id, exc)
            else:
                log.info("push %s asked to stop: %s", request_id, reason)
    finally:
        client.close()


def start_watchdog(interval: float = 3.0) -> threading.Thread:
    """A thread that looks for lost pushes now and then, so that they get handed back.

    Every worker process runs one, and one at a time looks (``JobStore.take_watch``): the
    others only ask, so the work does not grow with the number of workers.
    """
    from .services import get_store  # noqa: PLC0415 - keeps this module's imports light

    holder = f"{socket.gethostname()}:{os.getpid()}"

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                store = get_store()
                # The lease is taken before the look and asked for again only ``interval``
                # after it, so whoever holds it keeps it and looks every ``interval``.
                if store.take_watch(holder, interval):
                    store.reap_lost()
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any error
                log.warning("watchdog: %s", exc)

    thread = threading.Thread(target=watch, name="roomcast-watchdog", daemon=True)
    thread.start()
    return thread
