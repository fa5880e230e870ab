"""What aiortc needs to stand in for a WHIP endpoint that FFmpeg's WHIP muxer publishes to.

Both stand-ins for TRTC's WHIP ingest (the tests', tests/whipserver.py, and the dev stack's,
devstack/whip.py) are aiortc. Against FFmpeg's muxer, aiortc loses packets that a real
endpoint keeps, so a test would see a stall that no user sees:

- :func:`install_stun_demux`: aioice gives every datagram to its STUN parser first and takes
  it for media only when the parser raises ``ValueError``. An SRTP packet whose sequence
  number equals its length less 20 passes the parser's length check; its encrypted bytes
  can then read as an attribute that fails with ``struct.error``, which aioice does not
  catch: the packet is dropped. FFmpeg starts its sequence numbers below 4096, where a full
  video packet's length less 20 lies.
- :func:`declare_rtx_ssrcs`: FFmpeg names its retransmission (RTX) stream only in
  ``a=ssrc-group:FID``; aiortc maps RTX to its stream only from two ``a=ssrc`` lines, and
  drops every retransmission otherwise. A packet lost on the way then stays lost, and
  aiortc's jitter buffer waits for it for seconds.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from aioice import stun

#: RFC 5389, section 6: every STUN message carries it at bytes 4 to 8.
MAGIC_COOKIE = struct.pack("!I", 0x2112A442)

_aioice_parse = stun.parse_message
_SSRC = re.compile(r"a=ssrc:(\d+) ")
_CNAME = re.compile(r"a=ssrc:(\d+) cname:(\S+)")
_FID = re.compile(r"a=ssrc-group:FID (\d+) (\d+)")


def parse_message(data: bytes, *args: Any, **kwargs: Any) -> stun.Message:
    """aioice's STUN parser (its arguments passed on as they come), raising ``ValueError``
    (aioice's "this is media") for a datagram that is not STUN: a first byte above 3 (RFC
    7983) or no magic cookie (RFC 5389), or one that does not parse as STUN."""
    if len(data) < 8 or data[0] > 3 or data[4:8] != MAGIC_COOKIE:
        raise ValueError("not a STUN message (RFC 7983 first byte, RFC 5389 magic cookie)")
    try:
        return _aioice_parse(data, *args, **kwargs)
    except (struct.error, IndexError) as exc:
        raise ValueError(f"malformed STUN message: {exc}") from exc


def ice_connections(peer: Any) -> list[Any]:
    """The aioice connections under an aiortc ``RTCPeerConnection`` (one when its tracks
    are bundled), for what aiortc does not expose. aioice keeps each in a private
    attribute; if that changes, none are found."""
    found: list[Any] = []
    for transceiver in peer.getTransceivers():
        ice = getattr(transceiver.receiver.transport, "transport", None)
        connection = getattr(getattr(ice, "iceGatherer", None), "_connection", None)
        if connection is not None and connection not in found:
            found.append(connection)
    return found


def install_stun_demux() -> None:
    """Put :func:`parse_message` where aioice's ICE and TURN code look it up."""
    stun.parse_message = parse_message


def declare_rtx_ssrcs(sdp: str) -> str:
    """``sdp`` with an ``a=ssrc`` line for each retransmission SSRC that only its
    ``a=ssrc-group:FID`` names, right after its stream's own ``a=ssrc`` lines (with the
    stream's cname, as RFC 5576 asks that each grouped SSRC be declared). Anything else is
    left as it was: an offer that declares every SSRC, a group whose stream has no ``a=ssrc``
    line. aiortc takes RTX only in a section of one stream (two SSRCs, the stream's first):
    simulcast is not its case, nor this function's."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    sections = re.split(f"(?={newline}m=)", sdp)  # the session's lines, then each media's
    return "".join(_declare_in(section, newline) for section in sections)


def _declare_in(section: str, newline: str) -> str:
    lines = section.split(newline)
    cnames = {m[1]: m[2] for m in map(_CNAME.match, lines) if m}
    declared = {m[1] for m in map(_SSRC.match, lines) if m}
    groups = [(m[1], m[2]) for m in map(_FID.match, lines) if m]
    for stream, rtx in groups:
        own = [i for i, line in enumerate(lines) if line.startswith(f"a=ssrc:{stream} ")]
        if rtx in declared or not own:
            continue
        cname = cnames.get(stream) or next(iter(cnames.values()), "roomcast")
        lines.insert(own[-1] + 1, f"a=ssrc:{rtx} cname:{cname}")
        declared.add(rtx)
    return newline.join(lines)
