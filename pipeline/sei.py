"""Progress for viewers: the push's position carried in its H.264 as SEI, once a second.

TRTC's SDKs hand an SEI message of payload type 242 (or 5) in a remote user's video to the
application (``onRecvSEIMsg`` in TRTCCloud, ``onReceiveSeiMessage`` in V2TXLivePlayer, the
Web SDK's ``SEI_MESSAGE`` event), so a classroom page can draw a progress bar or turn its
slides with the picture it belongs to. 242 is the type Tencent recommends; its payload is
the application's bytes as they are (type 5 would start with a 16-byte UUID).

The payload is compact JSON: ``{"Position": 12.4, "Duration": 30.0, "ClipId": "q1"}``
(seconds into the clip; Duration and ClipId when known). It is inserted as its own NAL unit
before the picture's first slice, in the packet's own framing: length-prefixed (AVCC, as
MP4 and FLV carry H.264) or start codes (Annex B), so remuxed and encoded pictures alike
carry it.
"""

from __future__ import annotations

import json
from typing import Any

import av

#: The SEI payload type TRTC's SDKs deliver and Tencent recommends for custom data.
PAYLOAD_TYPE = 242
#: An SEI message goes with the first picture at least this long after the last one.
EVERY_SECONDS = 1.0
_SEI = 6
_VCL = frozenset({1, 5})  # a slice of a picture (non-IDR, IDR)
_AUD = 9


def sei_nal(payload: bytes, payload_type: int = PAYLOAD_TYPE) -> bytes:
    """One SEI NAL unit (header byte included) carrying ``payload``, emulation-prevented."""
    body = bytearray([_SEI])
    for value in (payload_type, len(payload)):
        while value >= 255:
            body.append(0xFF)
            value -= 255
        body.append(value)
    body += payload
    body.append(0x80)  # rbsp_stop_one_bit, then alignment zeros (none needed)
    return _escape(bytes(body))


def progress_payload(position: float, duration: float | None, clip_id: str | None) -> bytes:
    """The JSON a viewer's page reads: where the clip is (and how long it is, and which)."""
    data: dict[str, Any] = {"Position": round(position, 2)}
    if duration:
        data["Duration"] = round(duration, 2)
    if clip_id is not None:
        data["ClipId"] = clip_id
    return json.dumps(data, separators=(",", ":")).encode()


def with_sei(packet: av.Packet, nal: bytes) -> av.Packet:
    """A copy of ``packet`` with ``nal`` before its picture's first slice (``packet`` as it
    is when its framing is neither 4-byte lengths nor start codes)."""
    data = bytes(packet)
    annexb = not _is_avcc(data)
    if annexb and b"\x00\x00\x01" not in data:
        # Neither 4-byte lengths nor start codes (an avcC with 1- or 2-byte lengths):
        # better no progress than a picture the room cannot parse.
        return packet
    at = _first_slice_annexb(data) if annexb else _first_slice_avcc(data)
    unit = (b"\x00\x00\x00\x01" if annexb else len(nal).to_bytes(4, "big")) + nal
    out = av.Packet(data[:at] + unit + data[at:])
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    if packet.time_base is not None:
        out.time_base = packet.time_base
    stream = packet.stream
    if stream is not None:
        out.stream = stream
    out.is_keyframe = packet.is_keyframe
    return out


class SeiClock:
    """Which pictures carry the progress: the first, then one at least every second of
    output."""

    def __init__(self, every: float = EVERY_SECONDS) -> None:
        self._every = every
        self._last = float("-inf")

    def due(self, seconds: float) -> bool:
        """Whether the picture at ``seconds`` of output carries it (and if so, note it)."""
        if seconds - self._last < self._every:
            return False
        self._last = seconds
        return True


def read_sei(data: bytes, payload_type: int = PAYLOAD_TYPE) -> list[bytes]:
    """The payloads of ``payload_type`` in an AVCC (4-byte lengths) picture: what a
    receiver reads back."""
    found = []
    for nal in _avcc_units(data):
        if not nal or nal[0] & 0x1F != _SEI:
            continue
        body, pos = _unescape(nal[1:]), 0
        while pos < len(body) and body[pos] != 0x80:
            kind, pos = _sei_number(body, pos)
            size, pos = _sei_number(body, pos)
            if kind == payload_type:
                found.append(body[pos : pos + size])
            pos += size
    return found


def _sei_number(body: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while body[pos] == 0xFF:
        value += 255
        pos += 1
    return value + body[pos], pos + 1


def _is_avcc(data: bytes) -> bool:
    """Whether 4-byte lengths tile ``data`` exactly (else it is Annex B: a picture of 256
    to 511 bytes starts with ``00 00 01`` in either framing, so a prefix cannot tell)."""
    pos = 0
    while pos < len(data):
        if pos + 5 > len(data):
            return False
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size == 0 or data[pos + 4] & 0x80:  # a NAL unit's forbidden_zero_bit
            return False
        pos += 4 + size
    return pos == len(data)


def _avcc_units(data: bytes) -> list[bytes]:
    units, pos = [], 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        units.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return units


def _first_slice_avcc(data: bytes) -> int:
    """Where the first slice's length prefix starts (the end if there is none)."""
    pos = 0
    while pos + 4 < len(data):
        if data[pos + 4] & 0x1F in _VCL:
            return pos
        pos += 4 + int.from_bytes(data[pos : pos + 4], "big")
    return len(data)


def _first_slice_annexb(data: bytes) -> int:
    """Where the first slice's start code begins (the end if there is none)."""
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos - 1 if pos > 0 and data[pos - 1] == 0 else pos
        if pos + 3 < len(data) and data[pos + 3] & 0x1F in _VCL:
            return start
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return len(data)


def _escape(nal: bytes) -> bytes:
    """Emulation prevention: a 3 after every two zeros that a byte of 0-3 follows."""
    out, zeros = bytearray(), 0
    for byte in nal:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _unescape(body: bytes) -> bytes:
    return body.replace(b"\x00\x00\x03", b"\x00\x00")
