"""The path each source stream takes to the room: remuxed as it is, or re-encoded.

A route turns source packets into output packets already placed on the output
:class:`~pipeline.timeline.Timeline`; :func:`pipeline.push.push` paces and sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Protocol

import av
import av.audio.stream
import av.error
import av.stream
import av.video.stream

from .timeline import Timeline
from .transforms import Rotator

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)


class Route(Protocol):
    """One source stream's way to the room."""

    is_video: bool

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Output packets for one source packet (none, one or several)."""
        ...

    def flush(self) -> Iterator[av.Packet]:
        """Output packets still held inside (encoders' delay) at the end of the source."""
        ...


def packet_time(packet: av.Packet) -> Fraction | None:
    """Presentation time (seconds) of a packet, or None if it has no timestamp."""
    ts = packet.pts if packet.pts is not None else packet.dts
    return None if ts is None else ts * Fraction(packet.time_base)


def frame_time(frame: av.VideoFrame | av.AudioFrame, stream: av.stream.Stream) -> Fraction | None:
    """Presentation time (seconds) of a decoded frame, exact, or None without a pts.

    Frames drained from a decoder at the end may carry no time base: they use the stream's.
    """
    time_base = frame.time_base or stream.time_base
    if frame.pts is None or time_base is None:
        return None
    return frame.pts * Fraction(time_base)


class RemuxRoute:
    """Copies packets as they are; only their timestamps change."""

    def __init__(self, out_stream: av.stream.Stream, timeline: Timeline, is_video: bool) -> None:
        self.is_video = is_video
        self._out = out_stream
        self._timeline = timeline

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Retime the packet onto the output timeline and point it at the output stream."""
        self._timeline.place_packet(packet, self._out.index)
        packet.stream = self._out
        yield packet

    def flush(self) -> Iterator[av.Packet]:
        """Nothing is held back when remuxing."""
        return iter(())


class _TranscodeRoute:
    """Decode → drop frames before the resume point → encode; subclasses do the encoding."""

    is_video: bool

    def __init__(
        self,
        in_stream: av.stream.Stream,
        out_stream: Any,
        timeline: Timeline,
        skip_before: Fraction | None,
    ) -> None:
        self._in = in_stream
        self._out = out_stream
        self._timeline = timeline
        self._skip_before = skip_before

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Decode the packet and encode every frame it yields."""
        for frame in _decode(self._in, packet):
            yield from self._accept(frame)

    def flush(self) -> Iterator[av.Packet]:
        """Drain the decoder, whatever the subclass holds, then the encoder."""
        for frame in _decode(self._in, None):
            yield from self._accept(frame)
        yield from self._drain()
        yield from self._out.encode(None)

    def _accept(self, frame: Any) -> Iterator[av.Packet]:
        source_time = frame_time(frame, self._in)
        if source_time is None:
            return
        if self._skip_before is not None and source_time < self._skip_before - MS:
            return  # decoded only to reach the exact resume frame
        yield from self._encode(frame, source_time)

    def _encode(self, frame: Any, source_time: Fraction) -> Iterator[av.Packet]:
        raise NotImplementedError

    def _drain(self) -> Iterator[av.Packet]:
        return iter(())


class VideoTranscodeRoute(_TranscodeRoute):
    """Decodes, scales to the output size and re-encodes with libx264 (no B-frames)."""

    is_video = True

    def __init__(
        self,
        in_stream: av.video.stream.VideoStream,
        out_stream: av.video.stream.VideoStream,
        timeline: Timeline,
        skip_before: Fraction | None = None,
        rotation: int = 0,
        cap_rate: bool = False,
    ) -> None:
        super().__init__(in_stream, out_stream, timeline, skip_before)
        rate = out_stream.codec_context.framerate or Fraction(30)
        self._frame_duration = 1 / Fraction(rate)
        self._size = (out_stream.codec_context.width, out_stream.codec_context.height)
        self._rotator = Rotator(rotation)
        # Above the output frame rate, frames are dropped rather than sent early.
        self._cap_rate = cap_rate
        self._next_due: Fraction | None = None

    def _encode(self, frame: av.VideoFrame, source_time: Fraction) -> Iterator[av.Packet]:
        if self._cap_rate:
            due = self._timeline.to_output(source_time)
            if self._next_due is not None and due < self._next_due - self._frame_duration / 4:
                return
            self._next_due = max(due, self._next_due or due) + self._frame_duration
        out_time = self._timeline.place_frame_time(source_time, -1, self._frame_duration)
        frame = self._rotator.apply(frame)
        width, height = self._size
        if frame.width != width or frame.height != height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=width, height=height, format="yuv420p")
        frame.pts = round(out_time / MS)
        frame.time_base = MS
        # Keep the source's I/P decisions from forcing keyframes: the GOP is ours to set.
        frame.pict_type = av.video.frame.PictureType.NONE
        yield from self._out.encode(frame)


class AudioTranscodeRoute(_TranscodeRoute):
    """Decodes, resamples to the output rate/layout and re-encodes as AAC.

    Output timestamps come from a sample counter, so the audio is gap-free; the counter
    is re-aligned with the source when they drift apart by more than ``resync``.
    """

    is_video = False

    def __init__(
        self,
        in_stream: av.audio.stream.AudioStream,
        out_stream: av.audio.stream.AudioStream,
        timeline: Timeline,
        skip_before: Fraction | None = None,
        resync: Fraction = Fraction(1, 10),
    ) -> None:
        super().__init__(in_stream, out_stream, timeline, skip_before)
        self._resync = resync
        ctx = out_stream.codec_context
        self._rate = ctx.sample_rate
        self._resampler = av.AudioResampler(
            format=ctx.format.name,
            layout=ctx.layout.name,
            rate=ctx.sample_rate,
            frame_size=ctx.frame_size or 1024,
        )
        self._next_pts: int | None = None

    def _encode(self, frame: av.AudioFrame, source_time: Fraction) -> Iterator[av.Packet]:
        expected = round(max(self._timeline.to_output(source_time), Fraction(0)) * self._rate)
        if self._next_pts is None or abs(expected - self._next_pts) > self._resync * self._rate:
            self._next_pts = expected
        frame.pts = None  # the counter, not the source, numbers the output samples
        for out in self._resampler.resample(frame):
            yield from self._encode_resampled(out)

    def _drain(self) -> Iterator[av.Packet]:
        for out in self._resampler.resample(None):
            yield from self._encode_resampled(out)

    def _encode_resampled(self, frame: av.AudioFrame) -> Iterator[av.Packet]:
        assert self._next_pts is not None
        frame.pts = self._next_pts
        frame.time_base = Fraction(1, self._rate)
        self._next_pts += frame.samples
        self._timeline.extend_to(Fraction(self._next_pts, self._rate))
        yield from self._out.encode(frame)


def _decode(stream: av.stream.Stream, packet: av.Packet | None) -> list[Any]:
    """Decode one packet; a corrupt packet costs a frame, not the push."""
    ctx: Any = stream.codec_context
    try:
        return list(ctx.decode(packet))
    except av.error.InvalidDataError as exc:
        log.warning("skipping a packet the %s decoder rejects: %s", stream.type, exc)
        return []
