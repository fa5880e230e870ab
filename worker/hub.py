"""One control hub per worker process: every push's control messages and heartbeats.

A push is attached to the hub while it runs. The hub hears the push's control channel
(``roomcast:control:<id>``: stop, player commands, and a fan-out push's rooms added or
removed, whose room and UserSig it reads from the job's record and secrets) on the
process's one subscription,
beats for all its pushes in one pipelined round trip every ``heartbeat`` seconds, and
stops a push when something says it must no longer publish:

* a stop message, or a stop flag left before the push listened;
* its publisher lease held by another live job (``StopCause.LEASE_LOST``);
* another run of the job current in Redis: this worker was taken for lost
  (``StopCause.TAKEN_OVER``);
* no heartbeat reaching Redis for ``fence_after`` seconds (``StopCause.FENCED``), so that a
  worker cut off from Redis has stopped publishing before another one takes the push over.

Why one per process, not two threads and a subscription per push: in a threads-pool
worker of 13 pushes, the pushes' control threads (each woken every second, each beating
on its own) took 6% of the worker's CPU, and every push held a Redis connection for its
subscription (10 000 of them in the 10 000-push plan, docs/benchmarks.md). Now a worker
process holds two threads and one subscription whatever the number of its pushes, and
they take 1% of its CPU.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import redis

from jobs.commands import REMOVE_TARGET, from_message, target_change
from jobs.keys import PREFIX
from jobs.settings import Settings
from jobs.stops import Stop, StopCause
from jobs.store import JobStore, control_channel
from pipeline.control import Control
from pipeline.spec import Target

from .control import STOP_GRACE
from .ingest import Ingest

log = logging.getLogger(__name__)

_FENCE_LOG = "no heartbeat reached Redis for %.1f s: stopping the push"


@dataclass(eq=False)
class Attached:
    """One push attached to the hub."""

    request_id: str
    control: Control
    #: The run of the job this push is; another one current in Redis means a takeover.
    run_id: str
    #: The push's log context (request id, secrets to mask), for lines about it.
    context: contextvars.Context
    attached_at: float = field(default_factory=time.monotonic)
    #: Set once the push is over: a stop that finds it set needs no cut-off.
    done: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False

    def run(self, call: Callable[[], object]) -> None:
        """``call()`` in the push's log context (a copy: threads may do this at once)."""
        self.context.copy().run(call)


class ControlHub:
    """Hears and beats for every push of this worker process (see the module docstring).

    ``fence_after``: once no heartbeat has reached Redis for this long, the pushes stop
    (``StopCause.FENCED``); ``None`` never fences. ``ingest``: where a room added to a
    fan-out push is published.
    """

    def __init__(
        self,
        store: JobStore,
        heartbeat: float,
        fence_after: float | None,
        ingest: Ingest | None = None,
    ) -> None:
        self._store = store
        self._ingest = ingest or Ingest("")
        self._heartbeat = heartbeat
        self._fence_after = fence_after
        self._lock = threading.Lock()
        # By request id. Usually one run each; two when a run that was taken for lost is
        # still ending here while the job's next run started in this same process.
        self._pushes: dict[str, list[Attached]] = {}
        self._changed = threading.Event()
        # Attaching a push publishes here, so that the hub subscribes to its channel now
        # rather than at its next heartbeat.
        self._wake_channel = f"{PREFIX}control-hub:{uuid.uuid4().hex}"
        self._last_beat = time.monotonic()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start hearing, beating and (with ``fence_after``) fencing."""
        targets: list[tuple[str, Callable[[], None]]] = [("roomcast-control", self._run)]
        if self._fence_after is not None:
            # Its own thread: a Redis call may hang for its whole socket timeout when the
            # network drops packets, and the fence must not wait for it.
            targets.append(("roomcast-fence", self._fence))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop hearing and beating, and end the threads (a worker process lives with its hub)."""
        self._closed.set()
        self._wake()
        for thread in self._threads:
            thread.join(timeout=5)

    def attach(self, request_id: str, control: Control, run_id: str = "") -> Attached:
        """Hear and beat for this push until :meth:`detach`, in the caller's log context."""
        push = Attached(request_id, control, run_id, contextvars.copy_context())
        with self._lock:
            self._pushes.setdefault(request_id, []).append(push)
        self._wake()
        return push

    def detach(self, push: Attached) -> None:
        """The push is over: no more messages, beats or stops for it.

        Once this returns, the hub no longer touches ``push.control``, which may be closed.
        """
        with self._lock:
            runs = self._pushes.get(push.request_id, [])
            if push in runs:
                runs.remove(push)
            if not runs:
                self._pushes.pop(push.request_id, None)
            push.done.set()
        # Unsubscribed at the hub's next wake-up, within a heartbeat: no Redis call here,
        # where a push cut off from Redis ends (a publish would wait out retries).
        self._changed.set()

    def attached(self) -> list[str]:
        """The request ids of the pushes attached now."""
        with self._lock:
            return list(self._pushes)

    def _runs(self, request_id: str | None = None) -> list[Attached]:
        """The attached runs of one job, or of every job."""
        with self._lock:
            if request_id is not None:
                return list(self._pushes.get(request_id, ()))
            return [push for runs in self._pushes.values() for push in runs]

    def _wake(self) -> None:
        self._changed.set()
        try:
            self._store.redis.publish(self._wake_channel, b"")
        except redis.RedisError:
            pass  # the hub is reconnecting, and subscribes to everything attached then

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                log.warning("control channel lost (%s); retrying", exc)
                self._closed.wait(1.0)
            except Exception:
                # The hub must outlive any bug: without it no push stops on request.
                log.exception("control hub error; restarting it")
                self._closed.wait(1.0)

    def _listen(self) -> None:
        pubsub = self._store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._wake_channel)
            # Channel → request id, for the pushes subscribed to on this connection.
            channels: dict[bytes, str] = {}
            self._changed.set()
            next_beat = 0.0
            while not self._closed.is_set():
                if self._changed.is_set():
                    self._changed.clear()
                    self._subscribe(pubsub, channels)
                now = time.monotonic()
                if now >= next_beat:
                    self._beat()
                    next_beat = now + self._heartbeat
                # Messages, including the wake-up of an attach, end the wait at once.
                message = pubsub.get_message(timeout=max(0.0, next_beat - time.monotonic()))
                if message is not None:
                    request_id = channels.get(message["channel"])
                    if request_id is not None:
                        self._handle(request_id, message.get("data"))
        finally:
            pubsub.close()

    def _subscribe(self, pubsub: redis.client.PubSub, channels: dict[bytes, str]) -> None:
        """Follow the attached pushes; a new one's stop left before it listened is acted on."""
        with self._lock:
            wanted = {control_channel(rid).encode(): rid for rid in self._pushes}
        new = [channel for channel in wanted if channel not in channels]
        gone = [channel for channel in channels if channel not in wanted]
        if gone:
            pubsub.unsubscribe(*gone)  # type: ignore[no-untyped-call]
        if new:
            pubsub.subscribe(*new)
        channels.clear()
        channels.update(wanted)
        # Subscribed first, then the flags: a stop sent in between is heard either way.
        flags = self._store.stop_requests([wanted[channel] for channel in new])
        for request_id, stop in flags.items():
            if stop is not None:
                for push in self._runs(request_id):
                    self._stop(push, stop)

    def _beat(self) -> None:
        """One heartbeat for every attached push, and what each one's answer means."""
        pushes = self._runs()
        if not pushes:
            self._last_beat = time.monotonic()
            return
        beats = self._store.heartbeats(list(dict.fromkeys(p.request_id for p in pushes)))
        self._last_beat = time.monotonic()
        for push in pushes:
            beat = beats.get(push.request_id)
            if beat is None:
                continue  # its record could not be read as a job's (logged by the store)
            if beat.stop:
                # A stop whose message this process missed: redis-py reconnects a dropped
                # subscription by itself, and what was published meanwhile is lost.
                self._stop(push, beat.stop)
            elif not beat.held:
                # Renewing the lease found another live job holding it: stop publishing.
                self._stop(push, Stop(StopCause.LEASE_LOST))
            elif push.run_id and beat.run_id not in (None, push.run_id):
                # This worker was taken for lost and the push runs elsewhere now.
                self._stop(push, Stop(StopCause.TAKEN_OVER))

    def _handle(self, request_id: str, data: object) -> None:
        for push in self._runs(request_id):
            self._handle_one(push, data)

    def _handle_one(self, push: Attached, data: object) -> None:
        try:
            message = json.loads(data if isinstance(data, str | bytes) else "{}")
        except ValueError:
            message = None
        if not isinstance(message, dict):
            push.run(lambda: log.warning("ignoring a control message that is not a JSON object"))
            return
        if message.get("Command") == "stop":
            stop = Stop.from_fields(message)
            push.run(lambda: log.info("stop requested: %s", stop.reason))
            self._stop(push, stop)
            return
        change = target_change(message)
        if change is not None:
            self._change_target(push, *change)
            return
        command = from_message(message)
        if command is None:
            name = message.get("Command")
            push.run(lambda: log.warning("ignoring an unknown or malformed command %r", name))
        elif not push.stopping:
            push.run(lambda: log.info("command %s received", command.name))
            push.control.send(command)

    def _change_target(self, push: Attached, change: str, target_id: str) -> None:
        """Add a room to a fan-out push (read from its record and secrets, where the API
        wrote it), or remove one."""
        if change == REMOVE_TARGET:
            push.run(lambda: log.info("target %s removed", target_id))
            self._to_push(push, lambda: push.control.change_targets(remove=target_id))
            return
        try:
            found = self._store.target(push.request_id, target_id)
        except redis.RedisError as exc:
            failure = str(exc)
            push.run(lambda: log.warning("target %s not added: Redis: %s", target_id, failure))
            return
        if found is None:
            push.run(lambda: log.warning("target %s not added: not in the record", target_id))
            return
        record, target, sig = found
        room = target.Room.RtmpRoom
        url = self._ingest.room_url(record, room, target.UserId, sig)
        push.run(lambda: log.info("target %s added: room %s as %s", target_id, room, target.UserId))
        self._to_push(push, lambda: push.control.change_targets(add=Target(target_id, url)))

    def _to_push(self, push: Attached, call: Callable[[], None]) -> None:
        """``call()``, which touches ``push.control``, unless the push is over or stopping."""
        with self._lock:
            # Under the lock, as a stop is: once detached, the control may be closed.
            if not push.done.is_set() and not push.stopping:
                call()

    def _stop(self, push: Attached, stop: Stop) -> None:
        """Ask the push to stop; end its publish from elsewhere if it has not, a moment later.

        The push's thread acts on a stop between two packets, but it may be held up in a
        call a stop does not interrupt: a live source that went silent holds its read for
        up to the read timeout, and the publisher would stay in the room as long. Each
        stop asked for again (a beat that finds the lease still taken) tries once more.
        """
        with self._lock:
            if push.done.is_set():
                return
            push.stopping = True
            # Under the lock: ``detach`` takes it before the runner closes the control, so
            # this never writes to a descriptor number another connection has reused.
            push.control.request_stop(stop)
        # Waited for on a timer, not here: the hub hears and beats for the other pushes.
        timer = threading.Timer(STOP_GRACE, push.run, args=(lambda: self._cut_off(push),))
        timer.daemon = True
        timer.start()

    @staticmethod
    def _cut_off(push: Attached) -> None:
        if not push.done.is_set() and push.control.cut_off():
            log.info("the push was still publishing %g s after the stop: publish ended", STOP_GRACE)

    def _fence(self) -> None:
        """Stop the pushes once no heartbeat has reached Redis for ``fence_after`` seconds."""
        assert self._fence_after is not None
        while not self._closed.is_set():
            now = time.monotonic()
            wait = self._fence_after
            for push in self._runs():
                if push.stopping:
                    continue
                # A push attached after the last beat has not missed one yet.
                silent = now - max(self._last_beat, push.attached_at)
                if silent >= self._fence_after:
                    push.run(partial(log.error, _FENCE_LOG, silent))
                    self._stop(push, Stop(StopCause.FENCED))
                else:
                    wait = min(wait, self._fence_after - silent)
            # Asleep until the first silence would reach the limit, not woken every
            # second: a beat landing meanwhile moves the limits on.
            self._closed.wait(wait)


_hub: ControlHub | None = None
_hub_pid = 0
_hub_lock = threading.Lock()


def get_hub(store: JobStore, settings: Settings) -> ControlHub:
    """This process's hub, started on first use (in a prefork worker, after the fork).

    It beats every ``heartbeat_seconds`` and fences one heartbeat before other workers may
    take a silent push for lost (``worker_lost_seconds``).
    """
    global _hub, _hub_pid
    with _hub_lock:
        # A forked process inherits the object but not its threads: it needs its own.
        if _hub is None or _hub_pid != os.getpid():
            beat = settings.heartbeat_seconds
            fence_after = max(settings.worker_lost_seconds - beat, beat)
            _hub = ControlHub(store, beat, fence_after, Ingest.of(settings))
            _hub_pid = os.getpid()
            _hub.start()
        return _hub
