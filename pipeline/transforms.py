"""Picture transforms applied before re-encoding."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import av.filter


def rotation_filters(rotation: int) -> list[tuple[str, str]]:
    """FFmpeg filters that make a picture upright, for a counter-clockwise display rotation.

    The same mapping as the ffmpeg command line's autorotate.
    """
    theta = (-rotation) % 360
    if theta == 90:
        return [("transpose", "clock")]
    if theta == 180:
        return [("hflip", ""), ("vflip", "")]
    if theta == 270:
        return [("transpose", "cclock")]
    return []


def rotated_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    """The picture size once upright."""
    return (height, width) if rotation % 180 == 90 else (width, height)


class FrameFitter:
    """Makes decoded frames fit the output: upright, scaled within ``width``×``height``
    with black bars where the aspect differs, 8-bit 4:2:0.

    Frames that need only scaling take swscale's fast path; rotation and letterboxing go
    through an FFmpeg filter graph (no RGB round trip), rebuilt when the input changes.
    """

    def __init__(self, width: int, height: int, rotation: int = 0) -> None:
        self.width = width
        self.height = height
        self.rotation = rotation
        self._graph: av.filter.Graph | None = None
        self._key: tuple[int, int, str, int] | None = None

    def apply(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame as the encoder wants it (the same object when it already fits)."""
        filters = rotation_filters(self.rotation)
        w, h = rotated_size(frame.width, frame.height, self.rotation)
        same_aspect = abs(w * self.height - h * self.width) <= max(w, h) // 50
        if not filters and same_aspect:
            if (w, h) == (self.width, self.height) and frame.format.name == "yuv420p":
                return frame
            return frame.reformat(width=self.width, height=self.height, format="yuv420p")
        key = (frame.width, frame.height, frame.format.name, self.rotation)
        if self._graph is None or key != self._key:
            self._graph, self._key = self._build(frame, filters), key
        self._graph.push(frame)
        out: Any = self._graph.pull()
        return out  # type: ignore[no-any-return]

    def _build(self, frame: av.VideoFrame, filters: list[tuple[str, str]]) -> av.filter.Graph:
        graph = av.filter.Graph()
        node: Any = graph.add_buffer(
            width=frame.width,
            height=frame.height,
            format=frame.format,
            time_base=frame.time_base or Fraction(1, 1000),
        )
        w, h = self.width, self.height
        chain = [
            *filters,
            ("scale", f"{w}:{h}:force_original_aspect_ratio=decrease"),
            ("pad", f"{w}:{h}:(ow-iw)/2:(oh-ih)/2"),
            ("format", "yuv420p"),
        ]
        for name, args in chain:
            nxt = graph.add(name, args) if args else graph.add(name)
            node.link_to(nxt)
            node = nxt
        sink = graph.add("buffersink")
        node.link_to(sink)
        graph.configure()
        return graph
