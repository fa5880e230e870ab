"""One continuous output timeline, whatever happens on the input side.

The room must see timestamps that start at 0 and never go backwards or jump, across
seeks (resume), source switches, loops and live reconnects. Each of those starts a new
*segment*: source time ``source_start`` is mapped to output time ``output_start`` (by
default, where the previous segment ended), and every timestamp of the segment is shifted
by the same offset. A playback speed (``tempo``) other than 1 also scales the segment's
source time (re-encoded media only). Timestamps stay integers in their own ``time_base``
(PyAV's advice); seconds appear only at the edges.

Remuxed packets are the hot path (every packet of every push): their offset is turned into
integer ticks once per segment and stream, so placing a packet is integer arithmetic only.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av


@dataclass(slots=True)
class _Track:
    """A remuxed output stream's state, in integer ticks of its packets' time base."""

    time_base: Fraction
    segment: int
    offset: int
    last_dts: int
    end: int


class Timeline:
    """Maps source timestamps to output timestamps, monotonic per output stream."""

    def __init__(self) -> None:
        self._offset = Fraction(0)
        self._offset_seconds = 0.0
        # The segment's anchor and speed: output = output_start + (source - source_start) / tempo.
        self._source_start = Fraction(0)
        self._output_start = Fraction(0)
        self._tempo = Fraction(1)
        self._anchor_seconds = (0.0, 0.0, 1.0)
        self._segment = 0
        self._end = Fraction(0)
        # Generated and renumbered media (encoded pictures, remuxed renditions) in integer
        # milliseconds per key, and numbered sound in samples: the hot path stays integer.
        self._last_ms: dict[int, int] = {}
        self._key_end_ms: dict[int, int] = {}
        self._end_ms = 0
        self._counted: tuple[int, int] = (0, 1)
        self._tracks: dict[int, _Track] = {}

    @property
    def end(self) -> Fraction:
        """Output time (seconds) just after the last packet placed on the timeline."""
        ends = [t.end * t.time_base for t in self._tracks.values()]
        count, rate = self._counted
        return max(self._end, Fraction(self._end_ms, 1000), Fraction(count, rate), *ends)

    def end_of(self, key: int) -> Fraction:
        """Where one output stream's placed media ends (the whole output's end if unknown)."""
        end = self._key_end_ms.get(key)
        return self._end if end is None else Fraction(end, 1000)

    def begin_segment(self, source_start: Fraction, output_start: Fraction | None = None) -> None:
        """Map ``source_start`` (seconds, source clock) to ``output_start`` (default: the end)."""
        start = self.end if output_start is None else output_start
        self._source_start, self._output_start = source_start, start
        self._offset = start - source_start
        self._offset_seconds = float(self._offset)
        self._anchor_seconds = (float(source_start), float(start), float(self._tempo))
        self._segment += 1

    @property
    def tempo(self) -> Fraction:
        """Source seconds played per output second (1: as recorded)."""
        return self._tempo

    def set_tempo(self, tempo: Fraction) -> None:
        """Play on at ``tempo`` from the output's end: a segment anchored where the last one
        reached, so output time runs on without a jump whatever the speed."""
        if tempo <= 0:
            raise ValueError(f"a tempo must be positive, not {tempo}")
        end = self.end
        source = self.to_source(end)
        self._tempo = tempo
        self.begin_segment(source, end)

    def to_output(self, source_time: Fraction) -> Fraction:
        """Output time (seconds) of a source instant in the current segment."""
        if self._tempo == 1:
            return source_time + self._offset
        return self._output_start + (source_time - self._source_start) / self._tempo

    def to_source(self, output_time: Fraction) -> Fraction:
        """Source time (seconds) of an output instant in the current segment."""
        if self._tempo == 1:
            return output_time - self._offset
        return self._source_start + (output_time - self._output_start) * self._tempo

    @property
    def offset(self) -> Fraction:
        """Output time minus source time in the current segment (seconds; at tempo 1)."""
        return self._offset

    def source_seconds(self, output_seconds: float) -> float:
        """:meth:`to_source` in floating-point seconds, for progress figures."""
        source_start, output_start, tempo = self._anchor_seconds
        if tempo == 1.0:
            return output_seconds - self._offset_seconds
        return source_start + (output_seconds - output_start) * tempo

    def place_packet(self, packet: av.Packet, key: int, time_base: Fraction | None = None) -> int:
        """Shift a remuxed packet onto the timeline in place; return its output dts (ticks).

        ``key`` identifies the output stream: dts never decreases within it, and nothing
        goes below 0 (the muxer rejects both). ``time_base`` is the packet's, when the
        caller knows it (PyAV builds a new Fraction on every ``packet.time_base`` read).
        """
        tb = packet.time_base if time_base is None else time_base
        track = self._tracks.get(key)
        if (
            track is None
            or track.segment != self._segment
            or (track.time_base is not tb and track.time_base != tb)
        ):
            track = self._track(key, tb)
        pts_in, dts_in = packet.pts, packet.dts
        dts_ticks = dts_in if dts_in is not None else pts_in
        assert dts_ticks is not None, "packets without timestamps are dropped before this"
        dts = max(dts_ticks + track.offset, track.last_dts)
        pts = dts if pts_in is None else max(pts_in + track.offset, dts)
        packet.dts = dts
        packet.pts = pts
        track.last_dts = dts
        end = pts + (packet.duration or 0)
        if end > track.end:
            track.end = end
        return dts

    def _track(self, key: int, tb: Fraction) -> _Track:
        """A key's track for the current segment, its limits carried over in ``tb`` ticks."""
        # Remuxed packets keep their own spacing: only re-encoded media changes speed.
        assert self._tempo == 1, "remuxed packets cannot be placed at a tempo other than 1"
        old = self._tracks.get(key)
        if old is None:
            last, end = 0, 0
        else:
            # Round up so that nothing placed later goes back before what was sent.
            last = -((-old.last_dts * old.time_base) // tb)
            end = -((-old.end * old.time_base) // tb)
            self._end = max(self._end, old.end * old.time_base)
        track = _Track(tb, self._segment, round(self._offset / tb), int(last), int(end))
        self._tracks[key] = track
        return track

    def rewind(
        self, key: int, picture: Fraction | None, frame: Fraction, sound: tuple[int, int] | None
    ) -> None:
        """Take the output back to what the room has: the last picture sent at ``picture``
        (seconds, ``frame`` long) on ``key``, and sound up to ``sound`` (samples, rate).
        What was placed after them was taken back unsent (:meth:`pipeline.relay.Relay.cut`).
        """
        ends: list[Fraction] = []
        if picture is not None:
            ms = round(picture * 1000)
            self._last_ms[key] = ms
            self._key_end_ms[key] = ms + round(frame * 1000)
            ends.append(Fraction(self._key_end_ms[key], 1000))
        else:  # no picture reached the room
            self._last_ms.pop(key, None)
            self._key_end_ms.pop(key, None)
        self._counted = sound if sound is not None else (0, 1)
        if sound is not None:
            ends.append(Fraction(*sound))
        end = max(ends, default=Fraction(0))
        self._end_ms = round(end * 1000)
        self._end = min(self._end, end)

    def extend_to_count(self, count: int, rate: int) -> None:
        """Extend the end to ``count / rate`` seconds, in integers (sound numbered by a
        sample counter)."""
        old, old_rate = self._counted
        if count * old_rate > old * rate:
            self._counted = (count, rate)

    def place_frame_time(self, source_time: Fraction, key: int, duration: Fraction) -> Fraction:
        """Output time for a decoded frame that will be re-encoded (strictly increasing)."""
        return self.place_output(self.to_output(source_time), key, duration)

    def place_output(self, out: Fraction, key: int, duration: Fraction) -> Fraction:
        """Claim output time ``out`` for a generated frame (strictly increasing per key)."""
        return Fraction(self.place_ms(round(out * 1000), key, round(duration * 1000)), 1000)

    def place_ms(self, ms: int, key: int, duration_ms: int) -> int:
        """:meth:`place_output` in integer milliseconds: the time a picture goes out at."""
        last = self._last_ms.get(key)
        if last is not None and ms <= last:
            ms = last + 1
        ms = max(ms, 0)
        self._last_ms[key] = ms
        self._key_end_ms[key] = ms + duration_ms
        if ms + duration_ms > self._end_ms:
            self._end_ms = ms + duration_ms
        return ms
