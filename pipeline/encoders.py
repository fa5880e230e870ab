"""The room's encoder settings, in one place.

A push's live encoders (:meth:`pipeline.sink.RtmpSink.add_h264`) and the renditions encoded
ahead of time (:mod:`pipeline.renditions`) must agree bit for bit on the H.264 parameter
sets: a rendition is remuxed into a publish whose FLV header came from the live encoder, so
its pictures must decode with that header's SPS/PPS. The same settings give the same
parameter sets whatever the thread count or bitrate (checked in tests/unit/test_encoders.py).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.stream

from .spec import OutputProfile

MS = Fraction(1, 1000)
#: Above this a stream's frame rate is a time base mistaken for one.
MAX_PLAUSIBLE_FPS = 240


def gop_frames(fps: Fraction, profile: OutputProfile) -> int:
    """Pictures from one IDR to the next at ``fps``."""
    return max(1, round(float(fps) * profile.gop_seconds))


def setup_h264(stream: Any, width: int, height: int, fps: Fraction, profile: OutputProfile) -> Any:
    """Make ``stream`` (a libx264 output stream) the room's H.264: no B-frames, closed GOPs
    with an IDR every ``profile.gop_seconds``, ``profile.video_bitrate``, timestamps in ms."""
    gop = gop_frames(fps, profile)
    stream.options = {
        "preset": profile.x264_preset,
        "tune": profile.x264_tune,
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        **({"profile": profile.h264_profile} if profile.h264_profile else {}),
    }
    ctx = stream.codec_context
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = MS
    ctx.framerate = fps
    ctx.bit_rate = profile.video_bitrate
    ctx.gop_size = gop
    ctx.max_b_frames = 0
    stream.time_base = MS
    return stream


def setup_aac(stream: Any, profile: OutputProfile) -> Any:
    """Make ``stream`` (an AAC output stream) the room's AAC-LC: stereo at the profile's rate."""
    ctx = stream.codec_context
    ctx.layout = "stereo"
    ctx.format = "fltp"
    ctx.bit_rate = profile.audio_bitrate
    ctx.time_base = Fraction(1, profile.audio_sample_rate)
    return stream


def output_size(width: int, height: int, profile: OutputProfile) -> tuple[int, int]:
    """The largest even size within the profile's maximum that keeps the aspect ratio."""
    scale = min(1.0, profile.max_width / width, profile.max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def source_fps(stream: av.stream.Stream) -> Fraction:
    """The source's frame rate, or 30 where it gives none that is plausible."""
    rate = Fraction(stream.average_rate or stream.guessed_rate or 0)
    # A live stream's rate comes from its metadata (the analysis stops before estimating
    # one); without it FFmpeg guesses the time base's 1000 "frames" a second.
    return rate if 0 < rate <= MAX_PLAUSIBLE_FPS else Fraction(30)


def output_fps(stream: av.stream.Stream, profile: OutputProfile) -> Fraction:
    """The room's frame rate for a source stream: its own, capped by the profile."""
    return min(source_fps(stream), Fraction(profile.max_fps).limit_denominator(1001))


class RestartableAudioEncoder:
    """The room's AAC encoder for one output stream, drained whenever remuxed sound takes
    over and started afresh when encoding resumes.

    An AAC encoder holds its last frame or two: remuxed packets sent after it would leave
    those out, a gap. So the encoder is drained first (:meth:`drain`). A new encoder's
    first packet is its priming frame, timed before its first sound: over sound already
    sent, so it is dropped.
    """

    def __init__(self, stream: Any, drop_priming: bool = False) -> None:
        """``drop_priming``: drop the first encoder's priming frame too, so that no sound
        is timed before 0 (an FLV muxer would shift every timestamp to make up for it, and a
        second muxer on the same publish would not know by how much: pipeline/relay.py)."""
        self.stream = stream
        #: The stream's settings (rate, layout, frame size) for whoever feeds the encoder.
        self.codec_context = stream.codec_context
        self._ctx: Any | None = None
        self._floor: int | None = None
        self._started = drop_priming

    def encode(self, frame: av.AudioFrame | None) -> list[av.Packet]:
        """Packets for one frame (None drains the encoder, as PyAV's ``encode`` does)."""
        if frame is None:
            return self.drain()
        if self._ctx is None:
            self._ctx = self._open()
            # The first encoder's priming frame is the push's first sound, as usual.
            self._floor = frame.pts if self._started else None
            self._started = True
        return self._out(self._ctx.encode(frame))

    def drain(self) -> list[av.Packet]:
        """Everything the encoder still holds; the next frame starts a new encoder.

        Called before remuxed sound goes out: from then on, a new encoder's priming frame
        would overlap sound already sent.
        """
        self._started = True
        if self._ctx is None:
            return []
        ctx, self._ctx = self._ctx, None
        return self._out(ctx.encode(None))

    def _out(self, packets: list[av.Packet]) -> list[av.Packet]:
        floor = self._floor
        kept = [p for p in packets if floor is None or p.pts is None or p.pts >= floor]
        for packet in kept:
            packet.stream = self.stream
        return kept

    def _open(self) -> Any:
        own = self.codec_context
        ctx: Any = av.CodecContext.create(own.name, "w")
        ctx.sample_rate, ctx.layout, ctx.format = own.sample_rate, own.layout, own.format
        ctx.bit_rate, ctx.time_base = own.bit_rate, own.time_base
        ctx.open()
        return ctx
