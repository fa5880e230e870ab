"""The shared sender: when packets go out, and what happens to a lane whose room misbehaves.

These drive :mod:`pipeline.sender` with a recording write function in place of a room
connection; the pushes through a real room are in test_push_e2e, test_room_restart and
bench/concurrency.py.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pipeline.pacer import AUDIO_EARLY
from pipeline.progress import Progress, ProgressMeter
from pipeline.sender import SLOW_WRITE, Lane, Queued, Sender

BATCH = 0.04


class Room:
    """Records when each packet was written; can fail or stall on its n-th write."""

    def __init__(
        self, fail_at: int | None = None, stall_at: int | None = None, stall: float = 0.0
    ) -> None:
        self.sent: list[tuple[float, float]] = []  # (due, written at)
        self.writes = 0
        self.fail_at = fail_at
        self.stall_at = stall_at
        self.stall = stall or SLOW_WRITE * 2

    def write(self, data: bytes) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            self.fail_at = None
            raise OSError(32, "Broken pipe")
        if self.writes == self.stall_at:
            time.sleep(self.stall)
        now = time.monotonic()
        # Each test packet's bytes are its due time.
        self.sent += [(due, now) for (due,) in struct.iter_unpack("d", data)]


@pytest.fixture
def sender() -> Iterator[Sender]:
    yield Sender(BATCH)


def lane_for(room: Room, owner_woken: threading.Event | None = None) -> Lane:
    progress = Progress()
    wake: Callable[[], None] = (owner_woken or threading.Event()).set
    return Lane(room.write, progress, ProgressMeter(progress, None), wake)


def packet(due: float, seconds: float, is_video: bool = True) -> Queued:
    """A queued packet whose bytes are its due time (what Room records)."""
    return Queued(due, struct.pack("d", due), seconds, None, is_video)


def queue(lane: Lane, sender: Sender, count: int, fps: float = 30.0) -> float:
    """Queue ``count`` packets from now at ``fps``; the due time of the last one."""
    start = time.monotonic() + 0.05
    due = start
    for n in range(count):
        due = start + n / fps
        lane.entries.append(packet(due, n / fps))
    sender.poke()
    return due


@contextmanager
def counting_passes(lane: Lane) -> Iterator[list[float]]:
    """Record when the sender looks at ``lane`` (each of its passes) while inside."""
    passes: list[float] = []
    original = Lane.send_due

    def counting(self: Lane, horizon: float, audio_horizon: float) -> float:
        if self is lane:
            passes.append(time.monotonic())
        return original(self, horizon, audio_horizon)

    Lane.send_due = counting  # type: ignore[method-assign]
    try:
        yield passes
    finally:
        Lane.send_due = original  # type: ignore[method-assign]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_sender_writes_each_packet_no_later_than_due_and_at_most_one_batch_early(
    sender: Sender,
) -> None:
    room = Room()
    lane = lane_for(room)
    sender.attach(lane)
    queue(lane, sender, 30)
    wait_until(lambda: len(room.sent) == 30)
    early = [due - at for due, at in room.sent]
    assert max(early) <= BATCH + 0.001
    # Late only by the scheduler's own wake-up delay (20 ms seen with the suite's four
    # processes on two cores), never by a batch or more.
    assert min(early) > -BATCH


def test_a_packet_asks_for_a_poke_only_when_it_lands_in_an_empty_lane() -> None:
    # Checked after the append: if the sender emptied the lane meanwhile, it is asleep with
    # nothing to wait for and must be told; behind other packets it already has a wake-up.
    lane = lane_for(Room())
    queued = packet(0.0, 0.0)
    assert lane.add(queued) is True
    assert lane.add(queued) is False
    lane.entries.clear()
    assert lane.add(queued) is True


def test_sender_sleeps_until_the_next_packet_is_due_not_once_per_batch(sender: Sender) -> None:
    room = Room()
    lane = lane_for(room)
    sender.attach(lane)
    with counting_passes(lane) as passes:
        queue(lane, sender, 4, fps=4)  # a packet every 250 ms
        wait_until(lambda: len(room.sent) == 4)
    # A pass per packet, one per poke and one of the safety net's, where waking at every
    # batch would take 19.
    assert len(passes) <= 8


def test_sender_counts_sent_packets_into_the_pushs_progress(sender: Sender) -> None:
    room = Room()
    lane = lane_for(room)
    sender.attach(lane)
    queue(lane, sender, 10)
    wait_until(lambda: len(room.sent) == 10)
    wait_until(lambda: lane._progress.packets == 10)
    assert lane._progress.frames == 10
    assert lane._progress.bytes == 10 * 8
    assert lane._progress.output_time == pytest.approx(9 / 30)


def test_sender_wakes_about_once_per_batch_however_many_lanes_it_carries(
    sender: Sender,
) -> None:
    rooms = [Room() for _ in range(50)]
    lanes = [lane_for(room) for room in rooms]
    for lane in lanes:
        sender.attach(lane)
    with counting_passes(lanes[0]) as wakes:
        # Two seconds at 30 fps each, the lanes slightly offset.
        last = max(queue(lane, sender, 60) for lane, room in zip(lanes, rooms, strict=True))
        wait_until(lambda: all(len(room.sent) == 60 for room in rooms))
    # The steady second (the pokes of queueing are over): 50 lanes × 30 packets, which
    # per-packet waking would send with 1500 wake-ups.
    steady = [t for t in wakes if last - 1.0 <= t < last]
    assert len(steady) <= 1.0 / BATCH + 2


def test_sound_rides_with_the_picture_and_never_makes_a_write_of_its_own() -> None:
    sender = Sender(0.02)  # shorter than a frame interval: a write per frame
    room = Room()
    lane = lane_for(room)
    sender.attach(lane)
    # One second of 30 fps video and 48 kHz AAC, in decoding order.
    start = time.monotonic() + 0.05
    video = [(n / 30, True) for n in range(30)]
    audio = [(n * 1024 / 48000, False) for n in range(47)]
    for seconds, is_video in sorted(video + audio):
        lane.entries.append(packet(start + seconds, seconds, is_video))
    sender.poke()
    wait_until(lambda: len(room.sent) == len(video) + len(audio))
    assert room.writes <= len(video)  # a write per frame at most, the sound inside them
    early = {due: due - at for due, at in room.sent}
    assert all(early[start + s] <= 0.02 + 0.001 for s, _ in video)
    assert all(early[start + s] <= AUDIO_EARLY + 0.001 for s, _ in audio)


def failed_lane(sender: Sender) -> tuple[Room, Lane]:
    """A lane of 10 packets whose room fails the third write; returns once it has."""
    room = Room(fail_at=3)
    woken = threading.Event()
    lane = lane_for(room, woken)
    sender.attach(lane)
    queue(lane, sender, 10)
    assert woken.wait(2)
    return room, lane


def test_a_failed_write_holds_the_lane_and_wakes_its_owner(sender: Sender) -> None:
    room, lane = failed_lane(sender)
    assert isinstance(lane.error, OSError)
    sent = len(room.sent)
    time.sleep(0.4)
    assert len(room.sent) == sent  # nothing more until the owner repaired the connection
    assert sent + len(lane.entries) == 10  # the failed batch is kept, from its first packet


def test_a_resumed_lane_sends_the_rest(sender: Sender) -> None:
    room, lane = failed_lane(sender)
    lane.resume()
    sender.poke()
    wait_until(lambda: len(room.sent) == 10)


def stalled_next_to_fast(sender: Sender, stall: float, count: int) -> tuple[Room, Lane, Room]:
    """A lane whose room stalls on its second write, next to a healthy one; returns once
    the stalled lane's owner was woken."""
    slow, fast = Room(stall_at=2, stall=stall), Room()
    woken = threading.Event()
    slow_lane, fast_lane = lane_for(slow, woken), lane_for(fast)
    sender.attach(slow_lane)
    sender.attach(fast_lane)
    queue(slow_lane, sender, count)
    queue(fast_lane, sender, count)
    assert woken.wait(2)
    return slow, slow_lane, fast


def test_a_slow_room_is_evicted_and_does_not_hold_up_the_other_lanes(sender: Sender) -> None:
    slow, slow_lane, fast = stalled_next_to_fast(sender, SLOW_WRITE * 2, 30)
    assert slow_lane.evicted
    wait_until(lambda: len(fast.sent) == 30)
    assert len(slow.sent) < 30
    # Packets due during the stall were late; once the slow lane is out, all keep time.
    assert all(at - due < 0.015 for due, at in fast.sent[-15:])


def test_a_room_that_stops_taking_data_does_not_stop_the_others(sender: Sender) -> None:
    # The write blocks (a room that stopped reading, until the connection's timeout):
    # another thread takes over the other lanes long before it returns.
    _, stuck_lane, fast = stalled_next_to_fast(sender, 3.0, 60)
    assert stuck_lane.evicted  # while its write is still blocked
    wait_until(lambda: len(fast.sent) == 60)
    assert max(at - due for due, at in fast.sent) < 4 * SLOW_WRITE


def test_a_detached_lane_is_never_written_again(sender: Sender) -> None:
    room = Room()
    lane = lane_for(room)
    sender.attach(lane)
    queue(lane, sender, 30)
    wait_until(lambda: len(room.sent) >= 3)
    sender.detach(lane)
    written = len(room.sent)
    time.sleep(0.3)
    assert len(room.sent) == written
    assert sender.lanes == 0


def thread_wakes(thread: threading.Thread) -> int:
    """How many times ``thread`` has gone to sleep and woken (Linux's count)."""
    status = f"/proc/self/task/{thread.native_id}/status"
    with open(status) as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith("voluntary_"))


def test_the_senders_watch_sleeps_through_the_time_it_carries_no_push(sender: Sender) -> None:
    before = set(threading.enumerate())
    lane = lane_for(Room())
    sender.attach(lane)
    (watch,) = [t for t in set(threading.enumerate()) - before if t.name.endswith("-watch")]
    wakes = thread_wakes(watch)
    time.sleep(4 * SLOW_WRITE)
    assert thread_wakes(watch) - wakes >= 3  # carrying a lane: it looks every SLOW_WRITE

    sender.detach(lane)
    time.sleep(2 * SLOW_WRITE)  # the look under way ends
    wakes = thread_wakes(watch)
    time.sleep(5 * SLOW_WRITE)
    assert thread_wakes(watch) == wakes
