"""Where a live connection's relay starts: at the live stream, not at a server's replay.

When a player connects, the source server may send at once what it holds: the packets
FFmpeg read while it analysed the stream (they start at the keyframe an RTMP server starts a
new player on), or the last GOP that a server with a GOP cache (SRS, by default) replays.
Relayed as they come, those would reach the room as one burst, and a viewer's player would
stay behind the source by as much. What arrives at once is held until a read waits for the
next packet, and only its last :data:`LIVE_STALE` seconds are relayed: a replay of a whole GOP
is skipped (the relay then starts at the next keyframe), while the keyframe a fresh publish
starts with is relayed at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import av

from .routes import packet_time

#: The most seconds of media that a live connection's first burst passes on to the room.
LIVE_STALE = Fraction(1, 2)
#: A read that waits this long for its packet has caught up with the live stream.
LIVE_WAIT = 0.005
#: A source still sending faster than real time after this long is relayed as it comes.
CATCH_UP_LIMIT = 3.0


def from_live_edge(
    packets: Iterator[av.Packet], clock: Callable[[], float] = time.monotonic
) -> Iterator[av.Packet]:
    """``packets`` from where the live stream is now: see the module's docstring."""
    held: list[av.Packet] = []
    began = read_at = clock()
    for packet in packets:
        now = clock()
        if held and (now - read_at > LIVE_WAIT or now - began > CATCH_UP_LIMIT):
            yield from recent(held)
            yield packet
            yield from packets
            return
        held.append(packet)
        read_at = now  # the next read starts here
    yield from held  # the connection ended while still catching up


def recent(held: list[av.Packet]) -> list[av.Packet]:
    """The packets at most :data:`LIVE_STALE` seconds older than the newest one."""
    times = [packet_time(p) for p in held]
    known = [t for t in times if t is not None]
    if not known:
        return held
    edge = max(known) - LIVE_STALE
    return [p for p, t in zip(held, times, strict=True) if t is None or t >= edge]
