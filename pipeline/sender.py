"""One sending thread per process for all the paced pushes it carries.

A paced push used to wake its own thread for every batch of packets: 25 wake-ups a second
per push, each one a GIL hand-over, and past a few dozen pushes in one process the waiting
for the GIL showed up as frames arriving late (docs/benchmarks.md). Here each push's own
thread reads, retimes (or re-encodes) and muxes about a second ahead, and queues each
packet's FLV bytes with its due time in a :class:`Lane`; one :class:`Sender` thread per
process wakes when the first queued packet falls due, writes everything due within
``batch`` seconds after it for every lane (one write per lane), and sleeps until the next.
Wake-ups per process no longer grow with the number of pushes, and a push's thread wakes
about twice a second.

What must not happen on the shared thread is kept off it: a room that breaks is handed back
to its push's thread (which reconnects, as it always did), and a room that takes longer
than :data:`SLOW_WRITE` to accept a batch is evicted, so that its push paces itself from
then on and the other pushes are not held up behind it. Progress callbacks (Redis writes)
run on the push's thread too.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av

from .pacer import early_allowance
from .progress import Progress, ProgressMeter

log = logging.getLogger(__name__)

#: How far ahead of the room a push reads; its thread wakes when half of it is left.
READ_AHEAD = 1.0
#: A lane whose batch takes longer than this to write is sent from its own thread (long
#: enough not to be a garbage collection or a wait for the GIL on a busy worker).
SLOW_WRITE = 0.2

#: The longest the sender sleeps while it carries lanes, should a wake-up ever be missed.
#: Pokes cover every way a lane gets a packet due sooner than the sender's next wake-up, so
#: this is a safety net: waking at every batch instead cost a lone push more than its
#: packets did (50 wake-ups a second at 20 ms batches, for 30 frames).
LOOK_AGAIN = 0.5

Clock = Callable[[], float]


@dataclass(slots=True)
class Queued:
    """A packet's FLV bytes waiting for their time, with what sending them tells the progress."""

    due: float
    data: bytes
    seconds: float
    position: float | None
    is_video: bool
    #: The FLV timestamps (ms) of the last picture and the last sound in ``data``, and the
    #: player's segment they belong to, where the push takes its queue back at a switch
    #: (pipeline/relay.py ``Relay.cut``).
    picture_ms: int | None = None
    sound_ms: int | None = None
    segment: int = 0


class Lane:
    """One push's packets waiting for the shared sender, and what became of them.

    The push's thread appends to ``entries`` and the sender pops from the front; CPython's
    deque makes both safe without a lock. ``lock`` is held while the sender writes to the
    sink, so that ``close()`` returns only once the sender will not touch the sink again.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        progress: Progress,
        meter: ProgressMeter,
        wake_owner: Callable[[], None],
        clock: Clock = time.monotonic,
    ) -> None:
        self.entries: deque[Queued] = deque()
        self.lock = threading.Lock()
        #: Set by the sender when a write failed: the owner reconnects, then ``resume()``.
        self.error: BaseException | None = None
        #: Set by the sender when the room was slow: the owner sends the rest itself.
        self.evicted = False
        self.closed = False
        self._write = write
        self._progress = progress
        self._meter = meter
        self._wake_owner = wake_owner
        self._clock = clock
        #: The FLV timestamps (ms) of the last picture and the last sound that reached the
        #: room (pushes whose entries note them).
        self.sent_video: int | None = None
        self.sent_audio: int | None = None
        self.sent_segment = 0

    def add(self, queued: Queued) -> bool:
        """Queue a packet (owner's thread); True if the sender must be poked to see it.

        Checked after the append, not before: if the sender emptied the lane in between,
        it found nothing to wait for, and only a poke tells it about this packet. A packet
        behind others is due no sooner than they are, so the sender's next wake-up holds.
        """
        self.entries.append(queued)
        return len(self.entries) == 1

    @property
    def backlog(self) -> float:
        """Seconds until the last queued packet is due (0 when nothing is queued)."""
        try:
            return max(0.0, self.entries[-1].due - self._clock())
        except IndexError:  # the sender sent the last one meanwhile
            return 0.0

    @property
    def held(self) -> bool:
        """Whether the sender skips this lane (failed, evicted or closed)."""
        return self.error is not None or self.evicted or self.closed

    def send_due(self, horizon: float, audio_horizon: float) -> float:
        """Write the packets due before ``horizon``; the next one's due time (or inf).

        Audio due before ``audio_horizon`` (no earlier than ``horizon``) goes along with
        them, but alone never makes a write (see :mod:`pipeline.pacer`). Runs on the
        sender's thread: one write (one GIL hand-over) for the whole batch.
        """
        entries = self.entries
        if self.held:  # before the lock: a write stuck on this lane may hold it
            return math.inf
        with self.lock:
            if self.held:
                return math.inf
            count = 0
            due_now = False
            # Indexing, not iterating: the owner may append meanwhile.
            while count < len(entries):
                entry = entries[count]
                if entry.due > (horizon if entry.is_video else audio_horizon):
                    break
                due_now = due_now or entry.due <= horizon
                count += 1
            if due_now:
                started = self._clock()
                try:
                    self._write(b"".join([entries[i].data for i in range(count)]))
                except (av.error.FFmpegError, OSError) as exc:
                    self.fail(exc)  # nothing popped: the owner resends from the head
                    return math.inf
                for _ in range(count):
                    self.record(entries.popleft(), started)
                if self._clock() - started > SLOW_WRITE:
                    self.evict()
                    return math.inf
            # Under the lock: the owner may take the queue back (cut) at any moment.
            return entries[0].due if entries else math.inf

    def record(self, queued: Queued, now: float) -> None:
        """Count a packet that reached the room."""
        progress = self._progress
        progress.output_time = queued.seconds
        if queued.position is not None:
            progress.position = queued.position
        progress.lag = now - queued.due
        if queued.picture_ms is not None:
            self.sent_video = queued.picture_ms
            self.sent_segment = queued.segment
        if queued.sound_ms is not None:
            self.sent_audio = queued.sound_ms
        self._meter.add(len(queued.data), queued.is_video)

    def cut(self) -> bool:
        """Take back every packet not sent yet (the owner's thread; waits for a write under
        way); whether there were any."""
        with self.lock:
            cut = bool(self.entries)
            self.entries.clear()
            return cut

    def evict(self) -> None:
        """Leave the shared sender for good: the owner sends the rest from its own thread."""
        self.evicted = True
        self._wake_owner()

    def fail(self, exc: BaseException) -> None:
        """Hold the lane and hand ``exc`` to its owner (called on the sender's thread)."""
        self.error = exc
        self._wake_owner()

    def resume(self) -> None:
        """The owner repaired the room connection: the sender takes the lane up again."""
        self.error = None

    def close(self) -> None:
        """Take the lane off the sender; returns once no write of the sender is under way."""
        with self.lock:
            self.closed = True


class Sender:
    """The thread that writes every lane's due packets.

    It wakes when the earliest queued packet falls due and sends, with it, every video packet
    due within ``batch`` seconds (and the audio among them due within
    :data:`~pipeline.pacer.AUDIO_EARLY`): packets go out early by at most that and never late
    while the thread keeps up, and wake-ups are at least ``batch`` apart while packets flow.
    """

    def __init__(self, batch: float, clock: Clock = time.monotonic) -> None:
        self.batch = batch
        self._clock = clock
        self._lanes: list[Lane] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        # Set by poke() so that a wake-up asked for between two waits is not lost.
        self._poked = False
        # The lane being written and since when, for the watchdog; a thread whose
        # generation is no longer current finishes its write and ends.
        self._busy: tuple[Lane, float] | None = None
        self._generation = 0
        # Set while any lane is attached: the watch looks only then. A worker keeps its
        # sender for good, and a watch that woke 5 times a second through every idle hour
        # took a sixth of an idle worker's CPU (docs/benchmarks.md).
        self._carrying = threading.Event()

    def attach(self, lane: Lane) -> None:
        """Start sending ``lane``'s packets (the thread starts with the first lane)."""
        with self._changed:
            self._lanes.append(lane)
            self._carrying.set()
            if self._thread is None:
                self._start_thread()
                threading.Thread(
                    target=self._watch, name="roomcast-sender-watch", daemon=True
                ).start()
            self._poked = True
            self._changed.notify()

    def detach(self, lane: Lane) -> None:
        """Stop sending ``lane`` (closing it first, so no write is under way afterwards)."""
        lane.close()
        with self._changed:
            if lane in self._lanes:
                self._lanes.remove(lane)
            if not self._lanes:
                self._carrying.clear()

    def poke(self) -> None:
        """Wake the thread now: a lane that was empty (or held) has packets due."""
        with self._changed:
            self._poked = True
            self._changed.notify()

    @property
    def lanes(self) -> int:
        """How many pushes this sender carries."""
        return len(self._lanes)

    @property
    def alive(self) -> bool:
        """Whether a sending thread is running."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _start_thread(self) -> None:
        """A new sending thread; any older one ends after its current write."""
        self._generation += 1
        self._thread = threading.Thread(
            target=self._run, args=(self._generation,), name="roomcast-sender", daemon=True
        )
        self._thread.start()

    def _watch(self) -> None:
        """Replace a sending thread stuck in one room's write (or one that died).

        A room that stops reading blocks the write for up to the connection's
        ``rw_timeout``; eviction after the write returns would leave every other push in the
        process without packets until then. So the stuck lane is evicted now and a fresh
        thread carries the others; the stuck one finishes its write and ends.
        """
        while True:
            self._carrying.wait()  # no lane, no write to get stuck in
            time.sleep(SLOW_WRITE)  # a stuck write is caught within twice SLOW_WRITE
            busy = self._busy
            stuck = busy is not None and self._clock() - busy[1] > SLOW_WRITE
            if not stuck and self.alive:
                continue
            with self._changed:
                if busy is not None and stuck and self._busy is busy:
                    log.warning("a room stopped taking data: sending the other pushes anew")
                    busy[0].evict()
                    self._start_thread()
                elif not self.alive:
                    log.error("the sending thread died: starting another")
                    self._start_thread()

    def _run(self, generation: int) -> None:
        next_due = -math.inf  # look at once: a replacement thread has packets waiting
        while generation == self._generation:
            try:
                next_due = self._pass(next_due, generation)
            except Exception:  # noqa: BLE001 - the thread must outlive any one bug
                log.exception("the shared sender failed a pass")
                next_due = self._clock()

    def _pass(self, next_due: float, generation: int) -> float:
        """Sleep until ``next_due`` (or a poke), then send what is due; the next due time."""
        with self._changed:
            idle = LOOK_AGAIN if self._lanes else 3600.0
            timeout = min(next_due - self._clock(), idle)
            if not self._poked and timeout > 0:
                self._changed.wait(timeout)
            self._poked = False
            lanes = list(self._lanes)
        # Wake at the first packet beyond the last horizon: it goes out on time, and whatever
        # falls due within ``batch`` after it goes with it (audio within AUDIO_EARLY).
        now = self._clock()
        horizon = now + self.batch
        audio_horizon = now + early_allowance(self.batch, is_video=False)
        next_due = math.inf
        for lane in lanes:
            if generation != self._generation:
                break  # replaced while stuck in a write: the new thread carries on
            self._busy = busy = (lane, self._clock())
            try:
                next_due = min(next_due, lane.send_due(horizon, audio_horizon))
            except Exception:  # noqa: BLE001 - one push's bug must not stop the rest
                log.exception("sending a push's packets failed: it paces itself from now on")
                lane.evict()
            finally:
                if self._busy is busy:  # not a newer thread's mark
                    self._busy = None
        return next_due


_senders: dict[tuple[int, float], Sender] = {}
_senders_lock = threading.Lock()


def shared_sender(batch: float) -> Sender:
    """This process's sender for ``batch`` (a forked child gets its own)."""
    key = (os.getpid(), batch)
    with _senders_lock:
        sender = _senders.get(key)
        if sender is None:
            sender = _senders[key] = Sender(batch)
        return sender
