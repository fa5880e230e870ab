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


class Rotator:
    """Turns decoded frames upright with an FFmpeg filter graph (no RGB round trip)."""

    def __init__(self, rotation: int) -> None:
        self._filters = rotation_filters(rotation)
        self._graph: av.filter.Graph | None = None
        self._key: tuple[int, int, str] | None = None

    def apply(self, frame: av.VideoFrame) -> av.VideoFrame:
        """The frame, upright (the same object when no rotation is needed)."""
        if not self._filters:
            return frame
        key = (frame.width, frame.height, frame.format.name)
        if self._graph is None or key != self._key:
            self._graph, self._key = self._build(frame), key
        self._graph.push(frame)
        out: Any = self._graph.pull()
        return out  # type: ignore[no-any-return]

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        node: Any = graph.add_buffer(
            width=frame.width,
            height=frame.height,
            format=frame.format,
            time_base=frame.time_base or Fraction(1, 1000),
        )
        for name, args in self._filters:
            nxt = graph.add(name, args) if args else graph.add(name)
            node.link_to(nxt)
            node = nxt
        sink = graph.add("buffersink")
        node.link_to(sink)
        graph.configure()
        return graph
