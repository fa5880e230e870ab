"""What the container header does not say about the video: keyframe spacing and rotation.

Both decide whether a video can be remuxed: a room wants a keyframe every 1–2 s (a late
joiner waits for one), and a phone's portrait video is stored landscape with a display
matrix that players of the room's stream would not apply. Reading the first seconds of
packets (and decoding one frame) is cheap next to a wrong decision. The packets read are
kept on the source and pushed first: no rewind, which HLS and MPEG-TS do badly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import av
import av.error

from .source import Source, thread_decoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoProbe:
    """Keyframe spacing seen at the start of the video, and its display rotation."""

    max_keyframe_interval: float | None
    rotation: int


def probe_video(source: Source, window: float) -> VideoProbe:
    """Read up to ``window`` seconds of packets, decode the first video frame."""
    video = source.video
    assert video is not None
    # Float seconds: a fraction of a millisecond is nothing next to a keyframe interval,
    # and Fraction arithmetic on every packet cost about a sixth of a push's start-up CPU.
    time_base = float(video.time_base or 0)
    keyframes: list[float] = []
    first: float | None = None
    last: float | None = None
    rotation = 0
    decoded = False
    ctx: Any = video.codec_context
    thread_decoder(video)
    try:
        for packet in source.container.demux(source.streams):
            source.replay.append(packet)
            if packet.stream is not video or packet.size == 0:
                continue
            ticks = packet.pts if packet.pts is not None else packet.dts
            if ticks is None:
                continue
            t = ticks * time_base
            first = t if first is None else first
            last = t
            if packet.is_keyframe:
                keyframes.append(t)
            if not decoded:
                for frame in ctx.decode(packet):
                    rotation = int(round(frame.rotation or 0)) % 360
                    decoded = True
                    break
            # Frame-threaded decoders return the first picture a few packets late.
            if (decoded and t - first >= window) or t - first >= window + 2:
                break
    except (av.error.FFmpegError, OSError) as exc:
        log.warning("probing the video's first seconds failed: %s", exc)
    finally:
        ctx.flush_buffers()
    return VideoProbe(_max_interval(keyframes, first, last), rotation)


def _max_interval(keyframes: list[float], first: float | None, last: float | None) -> float | None:
    if first is None or last is None or not keyframes:
        return None
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:], strict=False)]
    # The stretch after the last keyframe seen is a lower bound of the next interval.
    gaps.append(last - keyframes[-1])
    return max(gaps)
