"""One continuous output timeline, whatever happens on the input side.

The room must see timestamps that start at 0 and never go backwards or jump, across
seeks (resume), source switches, loops and live reconnects. Each of those starts a new
*segment*: source time ``source_start`` is mapped to output time ``output_start`` (by
default, where the previous segment ended), and every timestamp of the segment is shifted
by the same offset. Timestamps stay integers in their own ``time_base`` (PyAV's advice);
seconds appear only at the edges.
"""

from __future__ import annotations

from fractions import Fraction

import av


class Timeline:
    """Maps source timestamps to output timestamps, monotonic per output stream."""

    def __init__(self) -> None:
        self._offset = Fraction(0)
        self._end = Fraction(0)
        self._last_dts: dict[int, Fraction] = {}
        self._key_end: dict[int, Fraction] = {}

    @property
    def end(self) -> Fraction:
        """Output time (seconds) just after the last packet placed on the timeline."""
        return self._end

    def end_of(self, key: int) -> Fraction:
        """Where one output stream's placed media ends (the whole output's end if unknown)."""
        return self._key_end.get(key, self._end)

    def begin_segment(self, source_start: Fraction, output_start: Fraction | None = None) -> None:
        """Map ``source_start`` (seconds, source clock) to ``output_start`` (default: the end)."""
        start = self._end if output_start is None else output_start
        self._offset = start - source_start

    def to_output(self, source_time: Fraction) -> Fraction:
        """Output time (seconds) of a source instant in the current segment."""
        return source_time + self._offset

    def to_source(self, output_time: Fraction) -> Fraction:
        """Source time (seconds) of an output instant in the current segment."""
        return output_time - self._offset

    def place_packet(self, packet: av.Packet, key: int) -> Fraction:
        """Shift a remuxed packet onto the timeline in place; return its output dts (seconds).

        ``key`` identifies the output stream: dts never decreases within it, and nothing
        goes below 0 (the muxer rejects both).
        """
        tb = Fraction(packet.time_base)
        dts_ticks = packet.dts if packet.dts is not None else packet.pts
        assert dts_ticks is not None, "packets without timestamps are dropped before this"
        dts = max(self.to_output(dts_ticks * tb), self._last_dts.get(key, Fraction(0)))
        pts = dts if packet.pts is None else max(self.to_output(packet.pts * tb), dts)
        new_dts = round(dts / tb)
        packet.dts = new_dts
        packet.pts = max(round(pts / tb), new_dts)
        self._last_dts[key] = dts
        duration = (packet.duration or 0) * tb
        self._end = max(self._end, pts + duration)
        return dts

    def extend_to(self, output_time: Fraction) -> None:
        """Note that output now reaches ``output_time`` (audio numbered by a sample counter)."""
        self._end = max(self._end, output_time)

    def place_frame_time(self, source_time: Fraction, key: int, duration: Fraction) -> Fraction:
        """Output time for a decoded frame that will be re-encoded (strictly increasing)."""
        return self.place_output(self.to_output(source_time), key, duration)

    def place_output(self, out: Fraction, key: int, duration: Fraction) -> Fraction:
        """Claim output time ``out`` for a generated frame (strictly increasing per key)."""
        last = self._last_dts.get(key)
        if last is not None and out <= last:
            out = last + Fraction(1, 1000)
        out = max(out, Fraction(0))
        self._last_dts[key] = out
        self._key_end[key] = out + duration
        self._end = max(self._end, out + duration)
        return out
