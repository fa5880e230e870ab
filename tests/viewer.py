"""A viewer pulling a room over RTMP, recording what arrives and when."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import av


@dataclass
class Received:
    """One packet as the viewer saw it."""

    kind: str
    pts: float
    dts: float
    arrival: float
    keyframe: bool
    data: bytes


@dataclass
class Capture:
    """Everything a viewer received from one publish."""

    codecs: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, str | None] = field(default_factory=dict)
    sample_rate: int | None = None
    packets: list[Received] = field(default_factory=list)
    error: str | None = None

    def of(self, kind: str) -> list[Received]:
        """The packets of one stream type, in arrival order."""
        return [p for p in self.packets if p.kind == kind]

    def media_seconds(self, kind: str = "video") -> float:
        """The span of presentation times received."""
        pkts = self.of(kind)
        return (max(p.pts for p in pkts) - min(p.pts for p in pkts)) if pkts else 0.0

    def has_b_frames(self) -> bool:
        """Whether the video needs reordering (B-frames): pts differs from dts or goes back."""
        video = self.of("video")
        last = float("-inf")
        for p in video:
            if abs(p.pts - p.dts) > 1e-6 or p.pts < last:
                return True
            last = p.pts
        return False

    @property
    def last_arrival(self) -> float | None:
        """Monotonic time of the last packet received."""
        return self.packets[-1].arrival if self.packets else None


class Viewer(threading.Thread):
    """Pulls ``url`` until the publisher is gone for ``idle`` seconds or ``stop()``."""

    def __init__(self, url: str, wait: float = 30.0, idle: float = 3.0, keep_data: bool = False):
        super().__init__(daemon=True)
        self.url = url
        self.capture = Capture()
        self._wait = wait
        self._idle = idle
        self._keep = keep_data
        self._stopping = False

    def stop(self) -> None:
        """Stop pulling (at the next packet or timeout)."""
        self._stopping = True

    def run(self) -> None:
        """Open (waiting for a publisher), then record packets until idle."""
        cap = self.capture
        try:
            container = av.open(self.url, timeout=(self._wait, self._idle))
        except Exception as exc:  # noqa: BLE001 - recorded for the test to show
            cap.error = f"open: {exc!r}"
            return
        try:
            for stream in container.streams:
                cap.codecs[stream.type] = stream.codec_context.name
                cap.profiles[stream.type] = stream.codec_context.profile
                if stream.type == "audio":
                    cap.sample_rate = stream.codec_context.sample_rate
            for packet in container.demux():
                if self._stopping:
                    break
                if packet.dts is None or packet.size == 0:
                    continue
                tb = packet.time_base
                cap.packets.append(
                    Received(
                        kind=packet.stream.type,
                        pts=float(packet.pts * tb),
                        dts=float(packet.dts * tb),
                        arrival=time.monotonic(),
                        keyframe=packet.is_keyframe,
                        data=bytes(packet) if self._keep else b"",
                    )
                )
        except (av.error.ExitError, av.error.EOFError, OSError):
            pass  # the publisher left: nginx-rtmp keeps the play session open until idle
        finally:
            container.close()


class FrameNumberViewer(threading.Thread):
    """Decodes the room's video and records the number drawn in each frame (tests.media)."""

    def __init__(self, url: str, wait: float = 30.0, idle: float = 3.0):
        super().__init__(daemon=True)
        self.url = url
        self.numbers: list[int] = []
        self.arrivals: list[float] = []
        self.error: str | None = None
        self._wait = wait
        self._idle = idle

    def run(self) -> None:
        """Open, then decode until the publisher is gone."""
        from .media import read_frame_number

        try:
            container = av.open(self.url, timeout=(self._wait, self._idle))
        except Exception as exc:  # noqa: BLE001
            self.error = f"open: {exc!r}"
            return
        try:
            if not container.streams.video:
                self.error = f"no video stream in {[s.type for s in container.streams]}"
                return
            stream = container.streams.video[0]
            try:
                for packet in container.demux(stream):
                    for frame in stream.decode(packet):
                        self.numbers.append(read_frame_number(frame))
                        self.arrivals.append(time.monotonic())
            except (av.error.ExitError, av.error.EOFError, OSError):
                pass
            # The publisher left without an end of stream: the frames the decoder still
            # holds (its threads keep a few) are frames the room delivered.
            try:
                for frame in stream.codec_context.decode(None):
                    self.numbers.append(read_frame_number(frame))
                    self.arrivals.append(time.monotonic())
            except av.error.EOFError:
                pass  # a clean end of stream drained it already
        finally:
            container.close()
