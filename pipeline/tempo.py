"""Playback speed for sound: FFmpeg's ``atempo`` filter through PyAV, pitch kept.

Pictures change speed by their timestamps alone (:class:`~pipeline.timeline.Timeline`'s
tempo, then the frame-rate cap); sound must be stretched, or a faster clip would also sound
higher. ``atempo`` (WSOLA) keeps the pitch for any speed from 0.5 to 2.0 in one instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import av

#: The speeds a push may play at (TRTC's Tempo range).
MIN_TEMPO = Fraction(1, 2)
MAX_TEMPO = Fraction(2)


class Stretch:
    """Changes the speed of a stream of decoded audio frames without changing its pitch.

    Frames go in at the source's rate and layout (those of the first frame); stretched
    frames come out in the same format, about 60 ms later: :meth:`flush` lets the rest out.
    """

    def __init__(self, template: av.AudioFrame, tempo: Fraction) -> None:
        """``template``: a frame of the stream (its format, layout and rate are used)."""
        if not MIN_TEMPO <= tempo <= MAX_TEMPO:
            raise ValueError(f"a tempo must be from {MIN_TEMPO} to {MAX_TEMPO}, not {tempo}")
        self.tempo = tempo
        rate = template.sample_rate
        self._time_base = Fraction(1, rate)
        self._next_pts = 0
        self._graph = av.filter.Graph()
        source = self._graph.add_abuffer(
            format=template.format.name,
            sample_rate=rate,
            layout=template.layout.name,
            time_base=self._time_base,
        )
        atempo = self._graph.add("atempo", str(float(tempo)))
        # atempo may work in another sample format: give back the stream's own, so that
        # stretched and unstretched frames take turns on one resampler.
        same = self._graph.add(
            "aformat",
            f"sample_fmts={template.format.name}:sample_rates={rate}"
            f":channel_layouts={template.layout.name}",
        )
        sink = self._graph.add("abuffersink")
        source.link_to(atempo)
        atempo.link_to(same)
        same.link_to(sink)
        self._graph.configure()

    def process(self, frame: av.AudioFrame) -> Iterator[av.AudioFrame]:
        """Stretch one frame; yields whatever the filter lets out so far."""
        # The filter wants steady timestamps; the caller numbers the output itself.
        frame.pts, frame.time_base = self._next_pts, self._time_base
        self._next_pts += frame.samples
        self._graph.push(frame)
        yield from self._pull()

    def flush(self) -> Iterator[av.AudioFrame]:
        """The sound still inside the filter (then it takes no more)."""
        self._graph.push(None)
        yield from self._pull()

    def _pull(self) -> Iterator[av.AudioFrame]:
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            assert isinstance(frame, av.AudioFrame)
            yield frame
