"""STUN told from media as RFC 7983 tells them, in front of aioice's parser.

aioice gives every datagram to its STUN parser first and takes it for media only when the
parser raises ``ValueError``. An SRTP packet whose sequence number equals its length less 20
passes the parser's length check; the encrypted bytes then read as an attribute that fails
to unpack with ``struct.error`` or ``IndexError``, which aioice does not catch: the packet
is lost. FFmpeg's WHIP muxer starts its sequence numbers below 4096, where a full video
packet's length less 20 lies, and sends nothing twice; aiortc's jitter buffer then waits for
the lost packet for seconds, the rest of a short clip. Both stand-in endpoints (the tests'
and the dev stack's) are aiortc; TRTC's ingest is not, so a push is not affected.

By RFC 7983 a STUN message starts with a byte of 0 to 3, and by RFC 5389 carries the magic
cookie: anything else is media, handed on before it is parsed.
"""

from __future__ import annotations

import struct

from aioice import stun

#: RFC 5389, section 6: every STUN message carries it at bytes 4 to 8.
MAGIC_COOKIE = struct.pack("!I", 0x2112A442)

_aioice_parse = stun.parse_message


def parse_message(data: bytes) -> stun.Message:
    """aioice's STUN parser, raising ``ValueError`` (aioice's "this is media") for any
    datagram RFC 7983 does not count as STUN, or that does not parse as STUN."""
    if len(data) < 8 or data[0] > 3 or data[4:8] != MAGIC_COOKIE:
        raise ValueError("not a STUN message (RFC 7983)")
    try:
        return _aioice_parse(data)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed STUN message: {exc}") from exc


def install() -> None:
    """Put :func:`parse_message` where aioice's ICE and TURN code look it up."""
    stun.parse_message = parse_message
