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


def _tags(data: bytes) -> Iterator[tuple[int, int, bytes, int]]:
    """(offset, type, first two body bytes, end) of each whole FLV tag in ``data``."""
    pos, end = 0, len(data)
    while pos + 11 <= end:
        stop = pos + 11 + int.from_bytes(data[pos + 1 : pos + 4], "big") + 4
        if stop > end:
            return
        yield pos, data[pos] & 0x1F, data[pos + 11 : pos + 13], stop
        pos = stop


def whole_tags(data: bytes) -> int:
    """Where the last whole FLV tag in ``data`` ends (a tag may span the muxer's writes)."""
    return scan(data)[0]


def scan(data: bytes) -> tuple[int, int, bool]:
    """Where the last whole FLV tag in ``data`` ends, how many there are, and whether one
    of them is a picture."""
    end, count, picture = 0, 0, False
    for _, kind, _, stop in _tags(data):
        end, count, picture = stop, count + 1, picture or kind == _VIDEO
    return end, count, picture


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
    for pos, kind, head, _ in _tags(data):
        if _is_header_tag(kind, head):
            continue
        stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        if kind == _VIDEO:
            picture = stamp
        elif kind == _AUDIO:
            sound = stamp
    return picture, sound


def media_start(data: bytes) -> int | None:
    """Where the first media tag (not a header tag) begins in ``data``; None: none yet."""
    for pos, kind, head, _ in _tags(data):
        if not _is_header_tag(kind, head):
            return pos
    return None


def keyframe_at(data: bytes) -> int | None:
    """Where the first picture a decoder can start from begins in ``data``; None: none."""
    for pos, kind, head, _ in _tags(data):
        if kind == _VIDEO and head and head[0] >> 4 == 1 and not _is_header_tag(kind, head):
            return pos
    return None


def has_video_config(data: bytes) -> bool:
    """Whether ``data`` (from the FLV file header on) holds the video's codec configuration."""
    tags = _tags(data[FLV_HEADER:])
    return any(kind == _VIDEO and _is_header_tag(kind, head) for _, kind, head, _ in tags)
