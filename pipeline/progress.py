"""What a push reports about itself while it runs."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StreamReport:
    """The decision taken for one source stream, and why."""

    type: str
    codec: str
    action: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """The API's ``{"Type", "Codec", "Action", "Reason"}`` shape."""
        return {
            "Type": self.type,
            "Codec": self.codec,
            "Action": self.action,
            "Reason": self.reason,
        }


@dataclass
class Progress:
    """A snapshot of a push: positions in seconds, counters since the start."""

    position: float = 0.0
    output_time: float = 0.0
    duration: float | None = None
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    bitrate: int = 0
    lag: float = 0.0
    streams: list[StreamReport] = field(default_factory=list)
    source_state: str | None = None
    reconnects: int = 0
    player: dict[str, Any] | None = None
    room_reconnects: int = 0
    #: Why FFmpeg's RTMP client publishes instead of roomcast's (None: it does not).
    rtmp_fallback: str | None = None
    #: A push with a rendition cache: what it found there and what it still re-encodes.
    renditions: dict[str, Any] | None = None
    #: A fan-out push: each room's publish by its TargetId (pipeline/fanout.py).
    targets: dict[str, dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The status API's ``Progress`` object."""
        return {
            "Position": round(self.position, 3),
            "OutputTime": round(self.output_time, 3),
            "Duration": None if self.duration is None else round(self.duration, 3),
            "Frames": self.frames,
            "Packets": self.packets,
            "Bytes": self.bytes,
            "Bitrate": self.bitrate,
            "Lag": round(self.lag, 3),
            "Streams": [s.as_dict() for s in self.streams],
            "RoomReconnects": self.room_reconnects,
            **({"RtmpFallback": self.rtmp_fallback} if self.rtmp_fallback else {}),
            **(
                {"Source": {"State": self.source_state, "Reconnects": self.reconnects}}
                if self.source_state is not None
                else {}
            ),
            **({"Player": self.player} if self.player is not None else {}),
            **({"Renditions": self.renditions} if self.renditions is not None else {}),
            **({"Targets": self.targets} if self.targets is not None else {}),
        }

    def copy(self) -> Progress:
        """An independent snapshot (reports must not change under the reader)."""
        data = asdict(self)
        data["streams"] = [StreamReport(**s) for s in data["streams"]]
        return Progress(**data)


ProgressCallback = Callable[[Progress], None]


class ProgressMeter:
    """Counts what was sent and calls the callback about once per ``interval`` seconds."""

    def __init__(
        self,
        progress: Progress,
        callback: ProgressCallback | None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress = progress
        self._callback = callback
        self._interval = interval
        self._clock = clock
        self._next = clock() + interval
        # (wall time, bytes) pairs over the last few seconds, for a steady bitrate figure.
        self._window: deque[tuple[float, int]] = deque(maxlen=8)

    def count(self, size: int, is_video_frame: bool) -> None:
        """Account for one packet sent to the room, reporting when the interval is up."""
        self.add(size, is_video_frame)
        self.maybe_report()

    def add(self, size: int, is_video_frame: bool) -> None:
        """Account for one packet sent to the room, without reporting."""
        p = self.progress
        p.packets += 1
        p.bytes += size
        if is_video_frame:
            p.frames += 1

    def maybe_report(self) -> None:
        """Report if ``interval`` has passed since the last report."""
        now = self._clock()
        if now >= self._next:
            self._next = now + self._interval
            self.report(now)

    def report(self, now: float | None = None) -> None:
        """Compute the bitrate and hand a snapshot to the callback now."""
        now = self._clock() if now is None else now
        self._window.append((now, self.progress.bytes))
        if len(self._window) >= 2:
            (t0, b0), (t1, b1) = self._window[0], self._window[-1]
            if t1 > t0:
                self.progress.bitrate = int((b1 - b0) * 8 / (t1 - t0))
        if self._callback is not None:
            self._callback(self.progress.copy())
