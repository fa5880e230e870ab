"""The path each source stream takes to the room: remuxed as it is, or re-encoded.

A route turns source packets into output packets already placed on the output
:class:`~pipeline.timeline.Timeline`; :func:`pipeline.pushing.push` paces and sends them.
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

from .encoders import MS
from .tempo import Stretch
from .timeline import Timeline
from .transforms import FrameFitter

log = logging.getLogger(__name__)

#: Timeline key of re-encoded video (remuxed packets use their output stream index).
VIDEO_TIMELINE_KEY = -1
#: How far stretched sound may drift from its place before it is re-aligned (seconds): the
#: speed filter holds back about 60 ms.
STRETCH_RESYNC = Fraction(1, 4)


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
        decoder: Any | None = None,
    ) -> None:
        """``decoder``: the codec context that decodes ``in_stream``'s packets (default: the
        stream's own; a bridge over a remuxed stream brings a fresh one)."""
        self._in = in_stream
        self._decoder = decoder if decoder is not None else in_stream.codec_context
        self._out = out_stream
        self._timeline = timeline
        self._skip_before = skip_before

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """Decode the packet and encode every frame it yields."""
        for frame in _decode(self._decoder, self._in.type, packet):
            yield from self._accept(frame)

    def flush(self) -> Iterator[av.Packet]:
        """Drain the decoder, whatever the subclass holds, then the encoder."""
        yield from self.finish_input()
        yield from self._out.encode(None)

    def finish_input(self) -> Iterator[av.Packet]:
        """Drain this input (decoder, resampler) but keep the encoder open for the next."""
        for frame in _decode(self._decoder, self._in.type, None):
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


class FrameRateCap:
    """Which pictures of a faster source keep an output slot of their own.

    Slots are one output frame interval (``step``) apart, counted from the first picture,
    so 30 fps becomes 25 by dropping one picture in six, and 60 becomes 30 by one in two.
    """

    def __init__(self, step: Fraction) -> None:
        self._step = step
        self._next: Fraction | None = None

    def keep(self, due: Fraction) -> bool:
        """Whether the picture due at output time ``due`` is sent."""
        step, slot = self._step, self._next
        if slot is not None and due <= slot - step / 2:
            return False
        # A jump forward (a seek, a new clip) starts the slots again from this picture.
        self._next = (slot if slot is not None and due - slot < step else due) + step
        return True


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
        gate: KeyframeGate | None = None,
        decoder: Any | None = None,
    ) -> None:
        """``gate``: shared with whatever else feeds ``out_stream`` (see :class:`KeyframeGate`)."""
        super().__init__(in_stream, out_stream, timeline, skip_before, decoder)
        self._gate = gate or KeyframeGate()
        rate = out_stream.codec_context.framerate or Fraction(30)
        self._frame_duration = 1 / Fraction(rate)
        self._size = (out_stream.codec_context.width, out_stream.codec_context.height)
        self._fitter = FrameFitter(*self._size, rotation)
        #: The last picture sent, for a paused push to repeat.
        self.last_frame: av.VideoFrame | None = None
        # Above the output frame rate, frames are dropped rather than sent early.
        self._cap = FrameRateCap(self._frame_duration) if cap_rate else None

    def fit(self, frame: av.VideoFrame) -> av.VideoFrame:
        """``frame`` at the room's size and turned as the clip is (a held picture)."""
        return self._fitter.apply(frame)

    def _encode(self, frame: av.VideoFrame, source_time: Fraction) -> Iterator[av.Packet]:
        if self._cap is not None and not self._cap.keep(self._timeline.to_output(source_time)):
            return
        out_time = self._timeline.place_frame_time(
            source_time, VIDEO_TIMELINE_KEY, self._frame_duration
        )
        frame = self._fitter.apply(frame)
        self.last_frame = frame
        frame.pts = round(out_time / MS)
        frame.time_base = MS
        frame.pict_type = self._gate.picture_type()
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
        out_stream: Any,
        timeline: Timeline,
        skip_before: Fraction | None = None,
        resync: Fraction = Fraction(1, 10),
        counter: SampleCounter | None = None,
        gain: Gain | None = None,
        trim_overlap: bool = False,
        decoder: Any | None = None,
    ) -> None:
        super().__init__(in_stream, out_stream, timeline, skip_before, decoder)
        self.resync = self._resync = resync
        #: Stretches the sound while the timeline's tempo is not 1.
        self._stretch: Stretch | None = None
        ctx = out_stream.codec_context
        # Shared across the clips of a switchable push, so their audio joins without a gap.
        self._counter = counter or SampleCounter(ctx.sample_rate)
        self._gain = gain
        # A clip joined on the picture's end may start before the sound already sent:
        # drop its overlapping first frames so sound stays gapless and in sync.
        self.trim_overlap = trim_overlap
        self._rate = ctx.sample_rate
        self._resampler = av.AudioResampler(
            format=ctx.format.name,
            layout=ctx.layout.name,
            rate=ctx.sample_rate,
            frame_size=ctx.frame_size or 1024,
        )

    def _encode(self, frame: av.AudioFrame, source_time: Fraction) -> Iterator[av.Packet]:
        tempo = self._timeline.tempo
        length = Fraction(frame.samples, frame.sample_rate or self._rate) / tempo
        if not self._counter.claim(self._timeline.to_output(source_time), length, self):
            return
        if self._stretch is not None and self._stretch.tempo != tempo:
            yield from self._end_stretch()
        if self._stretch is None and tempo != 1:
            self._stretch = Stretch(frame, tempo)
            # The filter holds back about 60 ms: within this, the counter is on time.
            self.resync = max(self._resync, STRETCH_RESYNC)
        if self._stretch is not None:
            for stretched in self._stretch.process(frame):
                yield from self._resample(stretched)
            return
        yield from self._resample(frame)

    def _resample(self, frame: av.AudioFrame | None) -> Iterator[av.Packet]:
        if frame is not None:
            frame.pts = None  # the counter, not the source, numbers the output samples
        for out in self._resampler.resample(frame):
            yield from self._encode_resampled(out)

    def _end_stretch(self) -> Iterator[av.Packet]:
        """Let out the sound the speed filter still holds, and play on without it."""
        stretch, self._stretch = self._stretch, None
        self.resync = self._resync
        if stretch is not None:
            for stretched in stretch.flush():
                yield from self._resample(stretched)

    def _drain(self) -> Iterator[av.Packet]:
        yield from self._end_stretch()
        yield from self._resample(None)

    def _encode_resampled(self, frame: av.AudioFrame) -> Iterator[av.Packet]:
        counter = self._counter
        assert counter.next_pts is not None
        if self._gain is not None:
            frame = self._gain.apply(frame)
        yield from encode_audio(self._out, frame, counter, self._timeline)


@dataclass
class SampleCounter:
    """Numbers output audio samples: the next frame's pts, in 1/sample-rate units.

    Shared by every route that feeds one audio output, re-encoded or remuxed, so sound
    joins without a gap across clips.
    """

    rate: int
    next_pts: int | None = None

    def claim(self, due: Fraction, length: Fraction, route: _Numbered) -> bool:
        """Whether audio due at output time ``due`` (seconds), ``length`` long, is sent.

        A route that still trims (``route.trim_overlap``) drops sound entirely before what
        was already sent (a clip joined on the picture's end may start before the sound);
        the counter is re-aligned with ``due`` when they drift apart by more than
        ``route.resync``.
        """
        return self.claim_samples(
            round(max(due, Fraction(0)) * self.rate), round(length * self.rate), route
        )

    def claim_samples(self, expected: int, length: int, route: _Numbered) -> bool:
        """:meth:`claim` in samples: ``expected`` is where the sound is due."""
        expected = max(expected, 0)
        if route.trim_overlap and self.next_pts is not None:
            if expected + length <= self.next_pts:
                return False
            route.trim_overlap = False
        if self.next_pts is None or abs(expected - self.next_pts) > route.resync * self.rate:
            self.next_pts = expected
        return True


class _Numbered(Protocol):
    """A route numbered by a :class:`SampleCounter`."""

    trim_overlap: bool
    resync: Fraction


@dataclass
class KeyframeGate:
    """Whether the next picture encoded for an output must be an IDR.

    Remuxed pictures (a rendition) and encoded ones (a bridge, a paused picture, a clip
    without a rendition) share one output: after remuxed pictures the encoder's references
    are not what the viewer's decoder holds, so its next picture must not refer to them.
    """

    due: bool = False

    def picture_type(self) -> av.video.frame.PictureType:
        """The type to ask of the encoder for the next picture (I once, when due)."""
        if self.due:
            self.due = False
            return av.video.frame.PictureType.I
        # Otherwise the source's I/P decisions are not ours: the GOP is ours to set.
        return av.video.frame.PictureType.NONE


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
    timeline.extend_to_count(counter.next_pts, rate)
    yield from out.encode(frame)


class Gain:
    """Audio volume, changed without a click: each change ramps over one frame."""

    def __init__(self, level: float = 1.0) -> None:
        self.target = level
        self._current = level

    @property
    def unity(self) -> bool:
        """Whether sound passes as recorded (no ramp under way)."""
        return self._current == self.target == 1.0

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


def _decode(ctx: Any, kind: str, packet: av.Packet | None) -> list[Any]:
    """Decode one packet; a corrupt packet costs a frame, not the push."""
    try:
        return list(ctx.decode(packet))
    except av.error.InvalidDataError as exc:
        log.warning("skipping a packet the %s decoder rejects: %s", kind, exc)
        return []


def fresh_decoder(stream: av.stream.Stream) -> Any:
    """A new decoder for ``stream``'s packets, apart from the stream's own."""
    own: Any = stream.codec_context
    ctx: Any = av.CodecContext.create(own.name, "r")
    ctx.extradata = own.extradata
    if stream.type == "audio":
        ctx.sample_rate = own.sample_rate
        ctx.layout = own.layout
    return ctx
