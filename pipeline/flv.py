"""FLV tags in the muxer's bytes: what a publish needs first, where a picture a decoder
can start from begins, and the timestamps a queued chunk carries.

The FLV muxer writes whole tags per packet, but a tag may span its writes; each function
here looks at whole tags only.
"""

from __future__ import annotations

from collections.abc import Iterator

#: The file header and the first previous-tag-size, before any tag.
FLV_HEADER = 13
_AUDIO, _VIDEO, _SCRIPT = 8, 9, 18
_AVC, _AAC = 7, 10


def tags(data: bytes) -> Iterator[tuple[int, int, bytes, int]]:
    """(offset, type, first two body bytes, end) of each whole FLV tag in ``data``."""
    pos, end = 0, len(data)
    while pos + 11 <= end:
        stop = pos + 11 + int.from_bytes(data[pos + 1 : pos + 4], "big") + 4
        if stop > end:
            return
        yield pos, data[pos] & 0x1F, data[pos + 11 : pos + 13], stop
        pos = stop


def stamp_at(data: bytes, pos: int) -> int:
    """The timestamp (ms) of the FLV tag at ``pos`` in ``data``."""
    return int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24


def whole_tags(data: bytes) -> int:
    """Where the last whole FLV tag in ``data`` ends (a tag may span the muxer's writes)."""
    return scan(data)[0]


def scan(data: bytes) -> tuple[int, int, int]:
    """Where the last whole FLV tag in ``data`` ends, how many there are, and how many of
    them are pictures."""
    end, count, pictures = 0, 0, 0
    for _, kind, _, stop in tags(data):
        end, count, pictures = stop, count + 1, pictures + (kind == _VIDEO)
    return end, count, pictures


def _is_header_tag(kind: int, head: bytes) -> bool:
    """Script data and codec configuration: what a room needs before any media."""
    if kind == _SCRIPT:
        return True
    if kind == _VIDEO and len(head) == 2:
        return head[0] & 0x0F == _AVC and head[1] == 0
    if kind == _AUDIO and len(head) == 2:
        return head[0] >> 4 == _AAC and head[1] == 0
    return False


def last_stamps(data: bytes) -> tuple[int | None, int | None]:
    """The timestamps (ms) of the last picture and the last sound in ``data`` (whole tags)."""
    picture = sound = None
    for pos, kind, head, _ in tags(data):
        if _is_header_tag(kind, head):
            continue
        stamp = stamp_at(data, pos)
        if kind == _VIDEO:
            picture = stamp
        elif kind == _AUDIO:
            sound = stamp
    return picture, sound


def media_start(data: bytes) -> int | None:
    """Where the first media tag (not a header tag) begins in ``data``; None: none yet."""
    for pos, kind, head, _ in tags(data):
        if not _is_header_tag(kind, head):
            return pos
    return None


def keyframe_at(data: bytes) -> int | None:
    """Where the first picture a decoder can start from begins in ``data``; None: none."""
    for pos, kind, head, _ in tags(data):
        if kind == _VIDEO and head and head[0] >> 4 == 1 and not _is_header_tag(kind, head):
            return pos
    return None


def has_video_config(data: bytes) -> bool:
    """Whether ``data`` (from the FLV file header on) holds the video's codec configuration."""
    found = tags(data[FLV_HEADER:])
    return any(kind == _VIDEO and _is_header_tag(kind, head) for _, kind, head, _ in found)


class SinceKeyframe:
    """The whole media tags of an FLV stream since its last picture a decoder can start
    from, fed the stream's bytes as they go out (at most ``limit`` bytes kept): what a new
    session replays so that its viewer need not wait for the next keyframe."""

    def __init__(self, limit: int = 8 << 20) -> None:
        self._limit = limit
        self._skip = FLV_HEADER
        self._partial = b""
        self._tags: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        """Note bytes of the stream that went out."""
        if self._skip:
            cut = min(self._skip, len(data))
            self._skip -= cut
            data = data[cut:]
        data = self._partial + data if self._partial else data
        end = 0
        for pos, kind, head, stop in tags(data):
            end = stop
            if _is_header_tag(kind, head):
                continue
            if kind == _VIDEO and head and head[0] >> 4 == 1:
                self._tags.clear()
                self._size = 0
            elif not self._tags:
                continue  # nothing to start from yet
            self._tags.append(data[pos:stop])
            self._size += stop - pos
            if self._size > self._limit:
                self._tags.clear()
                self._size = 0
        self._partial = data[end:]

    def replay(self) -> bytes:
        """The tags since the last keyframe, the keyframe first (b"" if none)."""
        return b"".join(self._tags)
