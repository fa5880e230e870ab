"""aiortc as a WHIP endpoint for FFmpeg's muxer (devstack/aiortc_interop.py): media is never
taken for a broken STUN message, and the retransmission stream is declared."""

from __future__ import annotations

import struct

import pytest
from aioice import stun
from aiortc import sdp

from devstack import aiortc_interop
from devstack.aiortc_interop import declare_rtx_ssrcs


def srtp_packet_shaped_like_stun(length: int = 1200) -> bytes:
    """An SRTP packet whose sequence number is its length less 20 (STUN's length field),
    with payload bytes that read as a PRIORITY two bytes long (four, in STUN)."""
    header = struct.pack("!BBHII", 0x80, 0x60 | 0x80, length - 20, 90000, 0x1234ABCD)
    attribute = struct.pack("!HH", 0x0024, 2) + b"\x00\x01"
    return (header + b"\x5a" * 8 + attribute).ljust(length, b"\xa5")


def binding_request() -> bytes:
    message = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        attributes={"PRIORITY": 1853824767, "USERNAME": "a:b"},
    )
    return bytes(message)


def test_aioice_alone_loses_such_a_packet_to_an_uncaught_error() -> None:
    with pytest.raises(struct.error):
        aiortc_interop._aioice_parse(srtp_packet_shaped_like_stun())


def test_such_a_packet_is_handed_on_as_media() -> None:
    with pytest.raises(ValueError, match="RFC 7983"):
        aiortc_interop.parse_message(srtp_packet_shaped_like_stun())


def test_a_stun_message_that_does_not_parse_is_handed_on_as_media() -> None:
    broken = bytearray(binding_request())
    attribute_at = 20
    struct.pack_into("!HH", broken, attribute_at, 0x0024, 2)  # a 2-byte PRIORITY
    with pytest.raises(ValueError, match="malformed STUN"):
        aiortc_interop.parse_message(bytes(broken))


def test_a_stun_binding_request_still_parses() -> None:
    message = aiortc_interop.parse_message(binding_request())
    assert message.message_method == stun.Method.BINDING
    assert message.attributes["USERNAME"] == "a:b"


def test_installed_where_aiortc_s_ice_looks_it_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stun, "parse_message", stun.parse_message)  # put back afterwards
    aiortc_interop.install_stun_demux()
    from aioice import ice  # noqa: PLC0415 - the module whose lookup this checks

    assert ice.stun.parse_message is aiortc_interop.parse_message


#: The video section of FFmpeg's WHIP offer (libavformat 62), as it names its RTX stream.
FFMPEG_OFFER = "\r\n".join(
    [
        "v=0",
        "o=FFmpeg 4489045141692799580 2 IN IP4 127.0.0.1",
        "s=FFmpegPublishSession",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:a1b2",
        "a=ice-pwd:0123456789abcdef01234567",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:passive",
        "a=mid:0",
        "a=sendonly",
        "a=msid:FFmpeg audio",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=ssrc:2481154985 cname:FFmpeg",
        "a=ssrc:2481154985 msid:FFmpeg audio",
        "m=video 9 UDP/TLS/RTP/SAVPF 106 105",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:a1b2",
        "a=ice-pwd:0123456789abcdef01234567",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:passive",
        "a=mid:1",
        "a=sendonly",
        "a=msid:FFmpeg video",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:106 H264/90000",
        "a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42401e",
        "a=rtcp-fb:106 nack",
        "a=rtpmap:105 rtx/90000",
        "a=fmtp:105 apt=106",
        "a=ssrc-group:FID 2481154986 2481154987",
        "a=ssrc:2481154986 cname:FFmpeg",
        "a=ssrc:2481154986 msid:FFmpeg video",
        "",
    ]
)


def test_aiortc_alone_sees_no_rtx_stream_in_ffmpegs_offer() -> None:
    video = sdp.SessionDescription.parse(FFMPEG_OFFER).media[1]
    assert [s.ssrc for s in video.ssrc] == [2481154986]


def test_the_rtx_stream_is_declared_second_in_its_section_with_its_streams_cname() -> None:
    parsed = sdp.SessionDescription.parse(declare_rtx_ssrcs(FFMPEG_OFFER))
    audio, video = parsed.media
    assert [(s.ssrc, s.cname) for s in video.ssrc] == [
        (2481154986, "FFmpeg"),
        (2481154987, "FFmpeg"),
    ]
    assert [s.ssrc for s in audio.ssrc] == [2481154985]


def test_an_offer_that_declares_every_ssrc_is_left_as_it_is() -> None:
    declared = declare_rtx_ssrcs(FFMPEG_OFFER)
    assert declare_rtx_ssrcs(declared) == declared


def test_a_group_after_its_streams_lines_is_declared_once() -> None:
    offer = "v=0\r\nm=video 9 X 96 97\r\na=ssrc:1 cname:c\r\na=ssrc-group:FID 1 2\r\n"
    assert declare_rtx_ssrcs(offer) == (
        "v=0\r\nm=video 9 X 96 97\r\na=ssrc:1 cname:c\r\na=ssrc:2 cname:c\r\n"
        "a=ssrc-group:FID 1 2\r\n"
    )


def test_an_offer_with_bare_newlines_is_declared_in_kind() -> None:
    offer = FFMPEG_OFFER.replace("\r\n", "\n")
    video = sdp.SessionDescription.parse(declare_rtx_ssrcs(offer)).media[1]
    assert [s.ssrc for s in video.ssrc] == [2481154986, 2481154987]
    assert "\r" not in declare_rtx_ssrcs(offer)
