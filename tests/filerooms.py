"""Pushes into file rooms on a virtual clock, and what they sent, decoded.

``push_to_files()`` runs the real pipeline (``pipeline.pushing``) with a
:class:`~pipeline.fileroom.RoomFiles` for the room and a
:class:`~pipeline.clock.VirtualClock` for time: a 10 s clip pushes in the time its media
work takes, with the timestamps it would have had in a room. Commands (switch, pause…) and
a stop are scheduled at seconds of the push's time. What each publish wrote is read back
with PyAV: packets, decoded pictures (with the frame and clip numbers of
``tests.media.make_numbered_clip``) and sound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import av

from jobs.commands import Command
from jobs.errors import RoomcastError
from pipeline import (
    Control,
    Outcome,
    OutputProfile,
    Progress,
    PushResult,
    PushSpec,
    Timeouts,
    push,
)
from pipeline.clock import WALL_CLOCK, Clock, VirtualClock
from pipeline.fileroom import RoomFiles
from pipeline.identity import source_identity
from pipeline.rendition_cache import RenditionCache
from pipeline.renditions import format_of, prepare
from pipeline.source import open_source

from .media import read_clip_id, read_frame_number

#: The room URL a file-room push is given (nothing connects to it).
TARGET = "rtmp://file.room/push/test?sdkappid=1&userid=u&usersig=s"


@dataclass
class Frame:
    """A decoded picture of a publish: its time and what ``make_numbered_clip`` drew."""

    pts: float
    clip: int
    number: int
    width: int
    height: int


@dataclass
class Publish:
    """What one publish wrote, as a viewer would read it."""

    path: Path
    codecs: dict[str, str] = field(default_factory=dict)
    #: (kind, pts, dts, keyframe) of every packet, in the file's order.
    packets: list[tuple[str, float, float, bool]] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    sample_rate: int | None = None
    channels: int | None = None

    def times(self, kind: str) -> list[float]:
        """Decoding timestamps of one stream type, in order."""
        return [dts for k, _, dts, _ in self.packets if k == kind]

    def media_seconds(self, kind: str = "video") -> float:
        """The span of presentation times of one stream type."""
        pts = [p for k, p, _, _ in self.packets if k == kind]
        return max(pts) - min(pts) if pts else 0.0

    def has_b_frames(self) -> bool:
        """Whether the video needs reordering: pts differs from dts, or goes back."""
        last = float("-inf")
        for kind, pts, dts, _ in self.packets:
            if kind != "video":
                continue
            if abs(pts - dts) > 1e-6 or pts < last:
                return True
            last = pts
        return False


@dataclass
class Sent:
    """A push into file rooms: how it ended and what each publish wrote."""

    result: PushResult | None
    error: RoomcastError | None
    publishes: list[Publish]
    events: list[tuple[str, dict[str, Any]]]
    progress: list[Progress]
    #: Seconds of real time the push took, and of the virtual clock's.
    took: float
    elapsed: float

    @property
    def publish(self) -> Publish:
        """The only publish (fails if there were none or several)."""
        assert len(self.publishes) == 1, [p.path.name for p in self.publishes]
        return self.publishes[0]

    @property
    def completed(self) -> bool:
        """Whether the push ran to its end."""
        return self.result is not None and self.result.outcome is Outcome.COMPLETED

    @property
    def final(self) -> Progress:
        """The last progress of the push (its result's, or the last report of a failure)."""
        if self.result is not None:
            return self.result.progress
        return self.progress[-1] if self.progress else Progress()

    def event_names(self) -> list[str]:
        """The player's events, in order."""
        return [name for name, _ in self.events]


def spec_for(source: str, **fields: Any) -> PushSpec:
    """A push of ``source`` with the worker's defaults and short network time limits."""
    spec = PushSpec(source=source, target=TARGET, timeouts=Timeouts(source_open=5, source_read=5))
    return replace(spec, **fields)


def push_to_files(
    directory: Path,
    spec: PushSpec,
    commands: Iterable[tuple[float, Command]] = (),
    stop_at: float | None = None,
    decode: bool = True,
    real_time: bool = False,
) -> Sent:
    """Run ``spec`` into file rooms in ``directory`` on a virtual clock.

    ``commands``: (seconds of the push's time, player command) pairs, delivered as a
    worker delivers them (``Control.send``); ``stop_at``: when to ask it to stop.
    ``real_time``: on the wall clock instead, paced by the process's shared sender as a
    worker's push is (the commands then come at those seconds of real time).
    """
    room, control = RoomFiles(directory), Control()
    clock: Clock = WALL_CLOCK if real_time else VirtualClock()
    timers: list[threading.Timer] = []
    actions = [(at, partial(control.send, command)) for at, command in commands]
    if stop_at is not None:
        actions.append((stop_at, partial(control.request_stop, "stopped by the test")))
    for at, action in actions:
        if isinstance(clock, VirtualClock):
            clock.at(at, action)
        else:
            timers.append(threading.Timer(at, action))
    events: list[tuple[str, dict[str, Any]]] = []
    progress: list[Progress] = []
    result: PushResult | None = None
    error: RoomcastError | None = None
    began = time.monotonic()
    for timer in timers:
        timer.start()
    with control:
        try:
            result = push(
                spec,
                control,
                on_progress=progress.append,
                on_event=lambda name, fields: events.append((name, fields)),
                connect=room.connect,
                clock=clock,
            )
        except RoomcastError as exc:
            error = exc
    took = time.monotonic() - began
    for timer in timers:
        timer.cancel()
    publishes = [read_publish(path, decode) for path in room.files]
    elapsed = clock.elapsed if isinstance(clock, VirtualClock) else took
    return Sent(result, error, publishes, events, progress, took, elapsed)


def read_publish(path: Path, decode: bool = True) -> Publish:
    """Read one publish's FLV back; ``decode`` also decodes its pictures and sound."""
    seen = Publish(path)
    if path.stat().st_size == 0:
        return seen
    with av.open(str(path)) as container:
        for stream in container.streams:
            seen.codecs[stream.type] = stream.codec_context.name
            if stream.type == "audio":
                seen.sample_rate = stream.codec_context.sample_rate
                seen.channels = stream.codec_context.channels
        for packet in container.demux():
            if packet.dts is None or packet.size == 0:
                continue
            tb = packet.time_base
            kind = packet.stream.type
            seen.packets.append(
                (kind, float(packet.pts * tb), float(packet.dts * tb), packet.is_keyframe)
            )
            if decode and kind == "video":
                for frame in packet.decode():
                    seen.frames.append(
                        Frame(
                            float(frame.pts * frame.time_base),
                            read_clip_id(frame),
                            read_frame_number(frame),
                            frame.width,
                            frame.height,
                        )
                    )
    return seen


def prepare_all(urls: list[str], directory: Path) -> RenditionCache:
    """A cache in ``directory`` with every clip prepared in the format of each clip (what a
    push that starts with it uses)."""
    cache = RenditionCache(directory, max_bytes=1 << 30)
    timeouts = Timeouts()
    for first in urls:
        source = open_source(first, timeouts)
        try:
            fmt = format_of(source, OutputProfile())
        finally:
            source.close()
        for url in urls:
            identity = source_identity(url, timeouts.source_open)
            source = open_source(url, timeouts)
            try:
                prepare(source, cache, OutputProfile(), identity, fmt=fmt)
            finally:
                source.close()
    return cache
