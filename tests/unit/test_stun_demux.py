"""aioice behind devstack.stun_demux: media is never taken for a broken STUN message."""

from __future__ import annotations

import struct

import pytest
from aioice import stun

from devstack import stun_demux


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
        stun_demux._aioice_parse(srtp_packet_shaped_like_stun())


def test_such_a_packet_is_handed_on_as_media() -> None:
    with pytest.raises(ValueError, match="RFC 7983"):
        stun_demux.parse_message(srtp_packet_shaped_like_stun())


def test_a_stun_message_that_does_not_parse_is_handed_on_as_media() -> None:
    broken = bytearray(binding_request())
    attribute_at = 20
    struct.pack_into("!HH", broken, attribute_at, 0x0024, 2)  # a 2-byte PRIORITY
    with pytest.raises(ValueError, match="malformed STUN"):
        stun_demux.parse_message(bytes(broken))


def test_a_stun_binding_request_still_parses() -> None:
    message = stun_demux.parse_message(binding_request())
    assert message.message_method == stun.Method.BINDING
    assert message.attributes["USERNAME"] == "a:b"


def test_installed_where_aiortcs_ice_looks_it_up() -> None:
    stun_demux.install()
    from aioice import ice  # noqa: PLC0415 - the module whose lookup this checks

    assert ice.stun.parse_message is stun_demux.parse_message
