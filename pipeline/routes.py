"""The path each source stream takes to the room: remuxed as it is, or re-encoded.

A route turns source packets into output packets already placed on the output
:class:`~pipeline.timeline.Timeline`; :func:`pipeline.push.push` paces and sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av
import av.audio.stream
import av.error
import av.stream
import av.video.stream
import numpy as np

from .timeline import Timeline
from .transforms import FrameFitter

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
#: Timeline key of re-encoded video (remuxed packets use their output stream index).
VIDEO_TIMELINE_KEY = -1


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

    def __init__(
        self,
        out_stream: av.stream.Stream,
        timeline: Timeline,
        is_video: bool,
        time_base: Fraction | None = None,
    ) -> None:
        """``time_base``: the source stream's, which all its packets carry."""
        self.is_video = is_video
        self._out = out_stream
        self._key = out_stream.index
        self._timeline = timeline
        self._time_base = time_base

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Retime the packet onto the output timeline and point it at the output stream."""
        self._timeline.place_packet(packet, self._key, self._time_base)
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
        yield from self.finish_input()
        yield from self._out.encode(None)

    def finish_input(self) -> Iterator[av.Packet]:
        """Drain this input (decoder, resampler) but keep the encoder open for the next."""
        for frame in _decode(self._in, None):
            yield from self._accept(frame)
        yield from self._drain()

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
        self._fitter = FrameFitter(*self._size, rotation)
        #: The last picture sent, for a paused push to repeat.
        self.last_frame: av.VideoFrame | None = None
        # Above the output frame rate, frames are dropped rather than sent early.
        self._cap_rate = cap_rate
        self._next_due: Fraction | None = None

    def _encode(self, frame: av.VideoFrame, source_time: Fraction) -> Iterator[av.Packet]:
        if self._cap_rate:
            due = self._timeline.to_output(source_time)
            if self._next_due is not None and due < self._next_due - self._frame_duration / 4:
                return
            self._next_due = max(due, self._next_due or due) + self._frame_duration
        out_time = self._timeline.place_frame_time(
            source_time, VIDEO_TIMELINE_KEY, self._frame_duration
        )
        frame = self._fitter.apply(frame)
        self.last_frame = frame
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
        counter: SampleCounter | None = None,
        gain: Gain | None = None,
        trim_overlap: bool = False,
    ) -> None:
        super().__init__(in_stream, out_stream, timeline, skip_before)
        self._resync = resync
        # Shared across the clips of a switchable push, so their audio joins without a gap.
        self._counter = counter or SampleCounter()
        self._gain = gain
        # A clip joined on the picture's end may start before the sound already sent:
        # drop its overlapping first frames so sound stays gapless and in sync.
        self._trim_overlap = trim_overlap
        ctx = out_stream.codec_context
        self._rate = ctx.sample_rate
        self._resampler = av.AudioResampler(
            format=ctx.format.name,
            layout=ctx.layout.name,
            rate=ctx.sample_rate,
            frame_size=ctx.frame_size or 1024,
        )

    def _encode(self, frame: av.AudioFrame, source_time: Fraction) -> Iterator[av.Packet]:
        expected = round(max(self._timeline.to_output(source_time), Fraction(0)) * self._rate)
        counter = self._counter
        if self._trim_overlap and counter.next_pts is not None:
            length = round(Fraction(frame.samples, frame.sample_rate or self._rate) * self._rate)
            if expected + length <= counter.next_pts:
                return
            self._trim_overlap = False
        if counter.next_pts is None or abs(expected - counter.next_pts) > self._resync * self._rate:
            counter.next_pts = expected
        frame.pts = None  # the counter, not the source, numbers the output samples
        for out in self._resampler.resample(frame):
            yield from self._encode_resampled(out)

    def _drain(self) -> Iterator[av.Packet]:
        for out in self._resampler.resample(None):
            yield from self._encode_resampled(out)

    def _encode_resampled(self, frame: av.AudioFrame) -> Iterator[av.Packet]:
        counter = self._counter
        assert counter.next_pts is not None
        if self._gain is not None:
            frame = self._gain.apply(frame)
        yield from encode_audio(self._out, frame, counter, self._timeline)


@dataclass
class SampleCounter:
    """Numbers output audio samples: the next frame's pts, in 1/sample-rate units."""

    next_pts: int | None = None


def encode_audio(
    out: Any, frame: av.AudioFrame, counter: SampleCounter, timeline: Timeline
) -> Iterator[av.Packet]:
    """Encode one resampled frame at the counter's position and advance it."""
    rate = out.codec_context.sample_rate
    assert counter.next_pts is not None
    frame.pts = counter.next_pts
    frame.time_base = Fraction(1, rate)
    frame.sample_rate = rate
    counter.next_pts += frame.samples
    timeline.extend_to(Fraction(counter.next_pts, rate))
    yield from out.encode(frame)


class Gain:
    """Audio volume, changed without a click: each change ramps over one frame."""

    def __init__(self, level: float = 1.0) -> None:
        self.target = level
        self._current = level

    def set(self, level: float) -> None:
        """The new volume (1.0 = as recorded, 0 = silent, up to 2.0)."""
        self.target = level

    def apply(self, frame: av.AudioFrame) -> av.AudioFrame:
        """The frame at the current volume (the same object at 100 %)."""
        if self._current == self.target == 1.0:
            return frame
        samples = frame.to_ndarray()
        ramp = np.linspace(self._current, self.target, samples.shape[-1], dtype=np.float32)
        self._current = self.target
        out = av.AudioFrame.from_ndarray(
            np.clip(samples * ramp, -1.0, 1.0).astype(np.float32),
            format=frame.format.name,
            layout=frame.layout.name,
        )
        out.sample_rate = frame.sample_rate
        return out


def _decode(stream: av.stream.Stream, packet: av.Packet | None) -> list[Any]:
    """Decode one packet; a corrupt packet costs a frame, not the push."""
    ctx: Any = stream.codec_context
    try:
        return list(ctx.decode(packet))
    except av.error.InvalidDataError as exc:
        log.warning("skipping a packet the %s decoder rejects: %s", stream.type, exc)
        return []
