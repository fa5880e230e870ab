"""Routes that play a rendition by remux, re-encoding only what cannot be remuxed.

A rendition is already in the room's format, so its packets go to the room as they are,
renumbered onto the push's timeline: the picture by the video key the encoder uses too,
the sound by the push's shared sample counter, so remuxed and encoded media follow each
other without a gap or a step back. What is re-encoded:

- a start inside a GOP (a seek, a resume): from that picture up to the next IDR, the
  *bridge*, through the push's encoder (its first picture an IDR);
- the sound while the volume is not 100 % (decoded, scaled, encoded), to the clip's end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import av
import av.audio.stream
import av.stream
import av.video.stream
from av.bitstream import BitStreamFilterContext

from .encoders import MS, RestartableAudioEncoder
from .routes import (
    VIDEO_TIMELINE_KEY,
    AudioTranscodeRoute,
    Gain,
    KeyframeGate,
    SampleCounter,
    VideoTranscodeRoute,
    fresh_decoder,
    packet_time,
)
from .timeline import Timeline

#: Told each time something is re-encoded: "bridge", "volume".
OnReencode = Callable[[str], None]


class VideoSpliceRoute:
    """A rendition's pictures, remuxed; a bridge re-encoded from ``skip_before`` to the next
    IDR when the clip starts inside a GOP."""

    is_video = True

    def __init__(
        self,
        in_stream: av.video.stream.VideoStream,
        out_stream: Any,
        timeline: Timeline,
        gate: KeyframeGate,
        skip_before: Fraction | None = None,
        on_reencode: OnReencode | None = None,
    ) -> None:
        self._out = out_stream
        self._timeline = timeline
        self._gate = gate
        tick = Fraction(in_stream.time_base or MS)
        # Every packet is placed in integer arithmetic: a rendition's ticks → output ms.
        self._ms_per_tick = float(tick * 1000)
        self._base_ms = float(timeline.offset * 1000)  # the clip's segment has begun
        self._skip = None if skip_before is None else float((skip_before - MS) / tick)
        # The room's muxer takes the encoder's Annex B (start codes; it converts them for
        # FLV itself): an MP4 rendition's length-prefixed pictures are turned into that.
        avcc = (in_stream.codec_context.extradata or b"")[:1] == b"\x01"
        self._annexb = BitStreamFilterContext("h264_mp4toannexb", in_stream) if avcc else None
        self._bridge: VideoTranscodeRoute | None = None
        if skip_before is not None:
            self._bridge = VideoTranscodeRoute(
                in_stream,
                out_stream,
                timeline,
                skip_before,
                gate=gate,
                decoder=fresh_decoder(in_stream),
            )
            gate.due = True
            if on_reencode is not None:
                on_reencode("bridge")

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """The packet remuxed, or the bridge's pictures until the first IDR past the start."""
        pts = packet.pts if packet.pts is not None else packet.dts
        assert pts is not None, "packets without timestamps are dropped before this"
        if self._bridge is not None:
            if not (packet.is_keyframe and self._skip is not None and pts >= self._skip):
                yield from self._bridge.process(packet)
                return
            yield from self._bridge.finish_input()
            self._bridge = None
        elif self._skip is not None and pts < self._skip:
            return  # the start was an IDR: nothing before it
        scale = self._ms_per_tick
        duration = round((packet.duration or 0) * scale)
        ms = self._timeline.place_ms(
            round(pts * scale + self._base_ms), VIDEO_TIMELINE_KEY, duration
        )
        # The encoder's references are no longer what the viewer decodes from.
        self._gate.due = True
        for out in self._annexb.filter(packet) if self._annexb is not None else [packet]:
            out.pts = out.dts = ms
            out.duration = duration
            out.time_base = MS
            out.stream = self._out
            yield out

    def finish_input(self) -> Iterator[av.Packet]:
        """A bridge still open at the clip's end (a clip shorter than a GOP) is drained."""
        if self._bridge is not None:
            yield from self._bridge.finish_input()
            self._bridge = None

    def flush(self) -> Iterator[av.Packet]:
        """Remuxing holds nothing back."""
        return self.finish_input()


class AudioSpliceRoute:
    """A rendition's sound, remuxed and numbered by the push's sample counter; decoded,
    scaled and re-encoded instead while the volume is not 100 %."""

    is_video = False

    def __init__(
        self,
        in_stream: av.audio.stream.AudioStream,
        out_stream: RestartableAudioEncoder,
        timeline: Timeline,
        counter: SampleCounter,
        gain: Gain,
        skip_before: Fraction | None = None,
        on_reencode: OnReencode | None = None,
    ) -> None:
        self._in = in_stream
        self._out = out_stream
        self._timeline = timeline
        self._counter = counter
        self._gain = gain
        self._on_reencode = on_reencode
        tick = Fraction(in_stream.time_base or Fraction(1, counter.rate))
        # Every packet is numbered in integer arithmetic: a rendition's ticks → samples.
        self._samples_per_tick = float(tick * counter.rate)
        self._base = float(timeline.offset * counter.rate)  # the clip's segment has begun
        self._out_tick = Fraction(1, counter.rate)
        self._skip_pts = None if skip_before is None else float((skip_before - MS) / tick)
        self._transcode: AudioTranscodeRoute | None = None
        #: As AudioTranscodeRoute's: how far the numbered sound may drift from the clip's.
        self.resync = Fraction(1, 10)
        #: As :class:`~pipeline.routes.AudioTranscodeRoute`: sound already sent past the
        #: picture's end (where a clip joins) is not sent again.
        self.trim_overlap = True

    def process(self, packet: av.Packet) -> Iterator[av.Packet]:
        """The packet renumbered (or re-encoded at the current volume)."""
        pts = packet.pts if packet.pts is not None else packet.dts
        assert pts is not None, "packets without timestamps are dropped before this"
        if self._skip_pts is not None and pts < self._skip_pts:
            return
        if self._transcode is None and not self._gain.unity:
            self._transcode = self._start_transcoding()
        if self._transcode is not None:
            yield from self._transcode.process(packet)
            return
        counter = self._counter
        scale = self._samples_per_tick
        samples = round(packet.duration * scale) if packet.duration else 1024
        if not counter.claim_samples(round(pts * scale + self._base), samples, self):
            return
        # Sound the encoder still holds (a pause's silence, the clip before) goes first.
        yield from self._out.drain()
        assert counter.next_pts is not None
        packet.pts = packet.dts = counter.next_pts
        packet.duration = samples
        packet.time_base = self._out_tick
        packet.stream = self._out.stream
        counter.next_pts += samples
        self._timeline.extend_to_count(counter.next_pts, counter.rate)
        yield packet

    def _start_transcoding(self) -> AudioTranscodeRoute:
        # Until the clip ends: going back to remuxing mid-clip would cost a seam for a
        # saving of a few seconds.
        if self._on_reencode is not None:
            self._on_reencode("volume")
        route = AudioTranscodeRoute(
            self._in,
            self._out,
            self._timeline,
            counter=self._counter,
            gain=self._gain,
            decoder=fresh_decoder(self._in),
            trim_overlap=self.trim_overlap,
        )
        return route

    def finish_input(self) -> Iterator[av.Packet]:
        """Drain the re-encoding, if the volume made one."""
        if self._transcode is not None:
            yield from self._transcode.finish_input()

    def flush(self) -> Iterator[av.Packet]:
        """As :meth:`finish_input`: the push's encoder stays open for the next clip."""
        return self.finish_input()


def held_picture(source: Any, position: Fraction) -> av.VideoFrame | None:
    """The rendition's picture at ``position`` (seconds), decoded from the IDR before it:
    what a paused remuxed clip shows. Moves the source's read position."""
    from .pushing import _packets, _seek  # noqa: PLC0415 - the push's reading rules

    video = source.video
    if video is None or not _seek(source, position):
        return None
    decoder = fresh_decoder(video)
    held: av.VideoFrame | None = None
    for packet in _packets(source):
        if packet.stream.index != video.index or packet.size == 0:
            continue
        t = packet_time(packet)
        if held is not None and (t is None or t > position + MS):
            break
        for frame in decoder.decode(packet):
            held = frame
    return held
