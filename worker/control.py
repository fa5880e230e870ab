"""The worker's side of control: messages from Redis, Celery's revoke signal, shutdown."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

import redis

from jobs.events import CLAIM_SECONDS
from jobs.settings import get_settings
from jobs.stops import Stop, StopCause
from jobs.store import JobStore
from pipeline.control import Control

from .messages import send_delivery

log = logging.getLogger(__name__)


#: How long a push has to end its publish by itself once asked to stop, before the stop
#: ends it (a stopped push's publisher leaves within about 60 ms when nothing holds it up).
STOP_GRACE = 0.3
#: Pushes whose delivery one sweep of the outbox sends at most (the rest at the next).
SWEEP_LIMIT = 1000

# Set in prefork pool children (Celery's worker_process_init), where SIGTERM belongs to
# billiard, not to Celery's warm-shutdown handler of the main process.
_in_pool_child = False


def mark_pool_child() -> None:
    """Record that this process is a prefork pool child (called at its start)."""
    global _in_pool_child
    _in_pool_child = True


@contextmanager
def signal_stops(control: Control) -> Iterator[None]:
    """Turn the signals that would kill a push mid-packet into clean stops, while it runs.

    * SIGUSR1 (Celery's soft time limit, or ``revoke(terminate=True, signal="SIGUSR1")``):
      in a prefork child it normally raises ``SoftTimeLimitExceeded`` wherever the task
      happens to be, possibly inside the output's close.
    * SIGTERM in a prefork child: a warm shutdown (a deploy) usually signals the whole process
      group (honcho, systemd), and billiard's handler would raise ``SystemExit`` mid-push:
      no clean close, no final bookmark, and the job reported ``WorkerLost`` later. In the
      main process (threads pool) SIGTERM is left to Celery, whose warm shutdown stops the
      pushes through ``stop_pushes``.

    The handlers only set the stop flag with ``StopCause.SIGNAL`` (async-signal-safe); the
    pipeline ends the publish itself, and the runner reads from Redis what the signal meant
    (:func:`worker.runner.stop_of`): the same SIGTERM is a deploy or Flower's
    Terminate, and only what the main process recorded tells them apart. Signals can be set
    only from the main thread; in a threads pool the control message alone stops the push.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        control.request_stop(Stop(StopCause.SIGNAL, signal.Signals(signum).name))

    previous_usr1 = signal.signal(signal.SIGUSR1, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal) if _in_pool_child else None
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def stop_pushes(redis_url: str, worker: str, request_ids: Iterable[str], stop: Stop) -> None:
    """A warm shutdown of Celery worker ``worker``: mark it stopping, and ask its running
    pushes ``request_ids`` to stop (they hand themselves back).

    Called from Celery's ``worker_shutting_down``, which runs inside the main process's
    signal handler: a fresh client with short timeouts, so that it never waits on a
    connection pool lock the interrupted code may hold, nor for long on a dead Redis
    (process managers kill the worker a few seconds after SIGTERM). Never raises.
    """
    client = redis.Redis.from_url(redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        # The TTL and lost_after are unused here.
        store = JobStore(client, ttl=0, lost_after=0)
        try:
            store.mark_stopping(worker)
        except redis.RedisError as exc:
            log.warning("could not mark this worker as shutting down: %s", exc)
        for request_id in request_ids:
            try:
                store.request_stop(request_id, stop)
            except redis.RedisError as exc:
                log.warning("could not ask push %s to stop on shutdown: %s", request_id, exc)
            else:
                log.info("push %s asked to stop: %s", request_id, stop.reason)
    finally:
        client.close()


def start_watchdog(interval: float = 3.0) -> threading.Thread:
    """A thread that looks for lost pushes now and then, so that they get handed back.

    Every worker process runs one, and one at a time looks (``JobStore.take_watch``): the
    others only ask, so the work does not grow with the number of workers.
    """
    from .services import get_store  # noqa: PLC0415 - keeps this module's imports light

    def look(holder: str) -> None:
        store = get_store()
        # The lease is taken before the look and asked for again only ``interval``
        # after it, so whoever holds it keeps it and looks every ``interval``.
        if store.take_watch(holder, interval):
            store.reap_lost()

    return _every(interval, "roomcast-watchdog", look)


def start_outbox_sweeper(
    interval: float = 1.0, claim_seconds: float = CLAIM_SECONDS
) -> threading.Thread:
    """A thread that sends the delivery task of every push whose turn has come in the
    callback outbox: a retry after its backoff, or a delivery whose task was lost.

    Like the watchdog, every worker process runs one and one at a time sweeps.
    """
    from . import app  # noqa: PLC0415 - the Celery app's module imports this one
    from .services import get_store  # noqa: PLC0415

    queue = get_settings().events_queue

    def sweep(holder: str) -> None:
        outbox = get_store().outbox
        if outbox.take_sweep(holder, interval):
            for request_id in outbox.due(time.time(), SWEEP_LIMIT, claim_seconds):
                send_delivery(app, queue, request_id)

    return _every(interval, "roomcast-outbox", sweep)


def _every(interval: float, name: str, work: Callable[[str], None]) -> threading.Thread:
    """Run ``work(holder)`` every ``interval`` seconds in a daemon thread, whatever it raises
    (``holder`` names this process for the leases that take turns between processes)."""
    holder = f"{socket.gethostname()}:{os.getpid()}"

    def loop() -> None:
        while True:
            time.sleep(interval)
            try:
                work(holder)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any error
                log.warning("%s: %s", name, exc)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
