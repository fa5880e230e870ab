"""Sound for WebRTC rooms: the push's AAC re-encoded to Opus, once for every WHIP room.

WebRTC carries Opus, RTMP rooms take AAC. A WHIP publisher fed AAC re-encodes it itself
(:mod:`pipeline.whip_publisher`); a fan-out with many WHIP rooms re-encodes once instead
(:class:`OpusTags`) and hands every WHIP room the same FLV stream with its AAC tags replaced
by Opus ones, in enhanced FLV's spelling (E-RTMP: sound format 9, FourCC ``Opus``), which
the publisher sends as they are.
"""

from __future__ import annotations

import logging
import struct
from fractions import Fraction
from typing import Any

import av

from .flv import FLV_HEADER, stamp_at, tags

log = logging.getLogger(__name__)

#: Opus at 48 kHz takes frames of 20 ms.
OPUS_FRAME = 960
OPUS_TIME = Fraction(1, 48_000)
#: What libopus keeps back at 48 kHz (its look-ahead): a packet's time is its first input
#: sample's less this, as FFmpeg numbers them; the Opus tags carry the input's millisecond.
PRE_SKIP = 312
#: Opus's bit rate for a WebRTC room (stereo speech and music).
BIT_RATE = 64_000

_AUDIO = 8
_AAC, _EX_HEADER = 10, 9
_SEQUENCE_START, _CODED_FRAMES = 0, 1
_FOURCC = b"Opus"


class OpusEncoder:
    """AAC frames in, Opus packets out (48 kHz stereo, 20 ms each), numbered by the sample:
    a gap in the sound (a pause, a cut) moves the count on to where it resumes, never back."""

    def __init__(self) -> None:
        self._aac: Any = None
        self._resampler = av.AudioResampler(
            format="s16", layout="stereo", rate=48_000, frame_size=OPUS_FRAME
        )
        self._opus: Any = av.CodecContext.create("libopus", "w")
        self._opus.sample_rate, self._opus.layout, self._opus.format = 48_000, "stereo", "s16"
        self._opus.bit_rate, self._opus.time_base = BIT_RATE, OPUS_TIME
        self._next_sample: int | None = None

    @property
    def configured(self) -> bool:
        """Whether the AAC configuration came (frames before it cannot be decoded)."""
        return self._aac is not None

    def configure(self, config: bytes) -> None:
        """Take the AAC AudioSpecificConfig (the configuration tag's body after two bytes)."""
        self._aac = av.CodecContext.create("aac", "r")
        self._aac.extradata = config

    def encode(self, stamp: int, frame: bytes) -> list[av.Packet]:
        """The Opus packets one AAC frame at ``stamp`` ms completes (often none or one)."""
        at = stamp * 48
        if self._next_sample is None or at > self._next_sample + 2 * OPUS_FRAME:
            self._next_sample = at
        packets = []
        for decoded in self._aac.decode(av.Packet(frame)):
            decoded.pts = None
            for resampled in self._resampler.resample(decoded):
                resampled.pts, resampled.time_base = self._next_sample, OPUS_TIME
                self._next_sample += resampled.samples
                packets += self._opus.encode(resampled)
        return packets

    def flush(self) -> list[av.Packet]:
        """What the encoder still holds, at the stream's end (once; then nothing)."""
        if self._next_sample is None:
            return []
        self._next_sample = None
        return list(self._opus.encode(None))


def opus_tag(packet: av.Packet) -> bytes:
    """An Opus packet as an enhanced FLV sound tag, at its first input sample's millisecond."""
    assert packet.pts is not None  # the encoder numbers every packet
    stamp = (packet.pts + PRE_SKIP) // 48
    return _sound_tag(stamp, _CODED_FRAMES, bytes(packet))


def opus_packet(stamp: int, body: bytes) -> av.Packet | None:
    """The Opus packet an enhanced FLV sound tag carries (:func:`opus_tag`), timed in
    :data:`OPUS_TIME`; None for any other sound tag."""
    if not is_opus(body) or body[0] & 0x0F != _CODED_FRAMES:
        return None
    packet = av.Packet(body[5:])
    packet.pts = packet.dts = stamp * 48 - PRE_SKIP
    packet.time_base, packet.duration = OPUS_TIME, OPUS_FRAME
    packet.is_keyframe = True  # as libopus marks every packet
    return packet


def is_opus(body: bytes) -> bool:
    """Whether an FLV sound tag's body is enhanced FLV's Opus."""
    return len(body) > 5 and body[0] >> 4 == _EX_HEADER and body[1:5] == _FOURCC


def _sound_tag(stamp: int, packet_type: int, payload: bytes) -> bytes:
    body = bytes([_EX_HEADER << 4 | packet_type]) + _FOURCC + payload
    size = len(body)
    head = bytes([_AUDIO]) + size.to_bytes(3, "big") + (stamp & 0xFFFFFF).to_bytes(3, "big")
    head += bytes([stamp >> 24 & 0xFF, 0, 0, 0])  # the stamp's high byte, stream id 0
    return head + body + (11 + size).to_bytes(4, "big")


def _opus_head() -> bytes:
    """Opus's identification header (RFC 7845): stereo, 48 kHz, libopus's pre-skip."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, 2, PRE_SKIP, 48_000, 0, 0)


class OpusTags:
    """An FLV stream with its AAC tags re-encoded to Opus ones (whole tags in, whole tags
    out; the FLV file header passes as it is). One per fan-out, for all its WHIP rooms."""

    def __init__(self) -> None:
        self._encoder = OpusEncoder()
        self._skip = FLV_HEADER

    def convert(self, data: bytes) -> bytes:
        """``data`` (whole tags, after the file header if it starts with one) for WHIP rooms."""
        head = b""
        if self._skip:
            head, data = data[: self._skip], data[self._skip :]
            self._skip -= len(head)
        pieces = [head]
        for pos, kind, first, stop in tags(data):
            # A tag is 11 bytes of header, its body, and 4 of size after it.
            if kind == _AUDIO and stop - pos > 17 and first[0] >> 4 == _AAC:
                pieces += self._sound(stamp_at(data, pos), data[pos + 11 : stop - 4])
            else:
                pieces.append(data[pos:stop])
        return b"".join(pieces)

    def _sound(self, stamp: int, body: bytes) -> list[bytes]:
        if body[1] == 0:  # the AAC configuration: Opus's own in its place
            self._encoder.configure(body[2:])
            return [_sound_tag(stamp, _SEQUENCE_START, _opus_head())]
        if not self._encoder.configured:
            return []
        try:
            packets = self._encoder.encode(stamp, body[2:])
        except av.error.FFmpegError as exc:
            # A frame the decoder refuses is dropped: the pictures and every RTMP room of
            # the push go on (a WHIP publisher of its own would have failed alone).
            log.warning("a sound frame at %d ms could not be re-encoded for WHIP: %s", stamp, exc)
            return []
        return [opus_tag(packet) for packet in packets]

    def finish(self) -> bytes:
        """What the encoder still holds, as tags: the sound's last few milliseconds."""
        return b"".join(opus_tag(packet) for packet in self._encoder.flush())
