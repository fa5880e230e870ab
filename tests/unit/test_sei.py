"""Progress for viewers as SEI: the NAL unit TRTC's SDKs read, placed before the slices."""

from __future__ import annotations

import json

import av

from pipeline.sei import SeiClock, progress_payload, read_sei, sei_nal, with_sei

SPS = b"\x67\x42\xc0\x1e\xaa"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88\x84\x00\x21"


def avcc(*units: bytes) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


def packet(data: bytes) -> av.Packet:
    out = av.Packet(data)
    out.pts, out.dts, out.is_keyframe = 900, 900, True
    return out


def test_the_progress_reads_back_from_a_picture_as_a_receiver_reads_it() -> None:
    payload = progress_payload(12.345, 30.0, "question-1")
    out = with_sei(packet(avcc(SPS, PPS, IDR)), sei_nal(payload))
    assert [json.loads(p) for p in read_sei(bytes(out))] == [
        {"Position": 12.35, "Duration": 30.0, "ClipId": "question-1"}
    ]
    assert (out.pts, out.dts, out.is_keyframe) == (900, 900, True)


def test_the_sei_goes_after_the_parameter_sets_and_before_the_first_slice() -> None:
    nal = sei_nal(b'{"Position":1}')
    out = bytes(with_sei(packet(avcc(SPS, PPS, IDR)), nal))
    assert out == avcc(SPS, PPS, nal, IDR)


def test_an_annex_b_picture_gets_it_with_a_start_code() -> None:
    nal = sei_nal(b'{"Position":1}')
    data = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    out = bytes(with_sei(packet(data), nal))
    assert out == data.replace(
        b"\x00\x00\x00\x01" + IDR, b"\x00\x00\x00\x01" + nal + b"\x00\x00\x00\x01" + IDR
    )


def test_a_payload_with_start_code_like_bytes_is_escaped_and_reads_back_whole() -> None:
    payload = b"\x00\x00\x01\x00\x00\x00\x02" + b"x" * 300
    nal = sei_nal(payload)
    assert b"\x00\x00\x01" not in nal and b"\x00\x00\x00" not in nal
    assert read_sei(avcc(nal, IDR)) == [payload]


def test_the_first_picture_then_one_a_second_carries_it() -> None:
    clock = SeiClock()
    carried = [t / 25 for t in range(0, 76) if clock.due(t / 25)]
    assert carried == [0.0, 1.0, 2.0, 3.0]


def test_an_avcc_picture_of_256_to_511_bytes_is_not_taken_for_annex_b() -> None:
    slice_ = b"\x41" + b"\x9a" * 299  # length 300: the packet starts 00 00 01 2c
    nal = sei_nal(b'{"Position":2}')
    out = bytes(with_sei(packet(avcc(slice_)), nal))
    assert out == avcc(nal, slice_)


def test_a_picture_framed_with_short_lengths_is_left_as_it_is() -> None:
    short = len(IDR).to_bytes(2, "big") + IDR  # an avcC with 2-byte lengths
    assert bytes(with_sei(packet(short), sei_nal(b'{"Position":3}'))) == short
