"""WHIP rooms' sound (pipeline/opus.py): a push's AAC re-encoded to Opus once, in enhanced
FLV's spelling, for every WHIP room of a fan-out."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import av
import pytest

from pipeline import fanout
from pipeline.flv import FLV_HEADER, stamp_at
from pipeline.flv import tags as flv_tags
from pipeline.opus import OPUS_FRAME, OPUS_TIME, OpusTags, is_opus, opus_packet
from pipeline.progress import Progress
from pipeline.spec import Target, Timeouts

from ..media import flv_of, make_clip
from .test_fanout_sends import Room

SECONDS = 4
_AUDIO, _VIDEO = 8, 9


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 4 s clip's FLV stream: H.264 pictures, AAC at 48 kHz."""
    clip = make_clip(tmp_path_factory.mktemp("opus") / "clip.mp4", seconds=SECONDS)
    return flv_of(clip)


def tags(data: bytes, start: int = FLV_HEADER) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(type, timestamp ms, body, whole tag) of each tag from ``start`` (after the FLV file
    header)."""
    rest = data[start:]
    for pos, kind, _, stop in flv_tags(rest):
        yield kind, stamp_at(rest, pos), rest[pos + 11 : stop - 4], rest[pos:stop]


def converted(flv: bytes) -> bytes:
    """``flv`` through one OpusTags, fed tag by tag as a fan-out feeds it."""
    opus = OpusTags()
    out = [opus.convert(flv[:FLV_HEADER])]
    out += [opus.convert(tag) for *_, tag in tags(flv)]
    return b"".join(out)


def test_pictures_and_the_file_header_pass_through_as_they_are(flv: bytes) -> None:
    out = converted(flv)
    assert out[:FLV_HEADER] == flv[:FLV_HEADER]
    assert pictures(out) == pictures(flv)


def test_every_sound_tag_becomes_opus_20_ms_apart_on_the_sounds_own_clock(flv: bytes) -> None:
    sounds = [(stamp, body) for kind, stamp, body, _ in tags(converted(flv)) if kind == _AUDIO]
    assert all(is_opus(body) for _, body in sounds)
    assert sounds[0][1][0] & 0x0F == 0  # the configuration first: Opus's own header
    assert sounds[0][1][5:13] == b"OpusHead"
    stamps = [stamp for stamp, _ in sounds[1:]]
    first_aac = next(s for k, s, b, _ in tags(flv) if k == _AUDIO and b[1] == 1)
    assert stamps[0] == first_aac
    assert all(b - a == 20 for a, b in zip(stamps, stamps[1:], strict=False))
    assert abs(len(stamps) * 0.020 - SECONDS) < 0.1


def test_the_opus_tags_decode_to_the_clips_sound(flv: bytes) -> None:
    decoder = av.CodecContext.create("libopus", "r")
    samples, last = 0, None
    for kind, stamp, body, _ in tags(converted(flv)):
        packet = opus_packet(stamp, body) if kind == _AUDIO else None
        if packet is None:
            continue
        assert packet.time_base == OPUS_TIME
        if last is not None:
            assert packet.pts == last + OPUS_FRAME  # numbered by the sample, no drift
        last = packet.pts
        samples += sum(frame.samples for frame in decoder.decode(packet))
    assert abs(samples / 48_000 - SECONDS) < 0.1


def fan_out(flv: bytes, whip_rooms: int, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Room], int]:
    """``flv`` fanned out to ``whip_rooms`` WHIP rooms and one RTMP room (last): the rooms,
    and how many times the fan-out's Opus encoding converted bytes."""
    converts = 0

    class Counted(OpusTags):
        def convert(self, data: bytes) -> bytes:
            nonlocal converts
            converts += 1
            return super().convert(data)

    monkeypatch.setattr(fanout, "OpusTags", Counted)
    rooms: dict[str, Room] = {}

    def connect(url: str, timeout: float) -> Room:
        rooms[url] = Room(wants_opus=url.startswith("whip"))
        return rooms[url]

    targets = [Target(f"w{i}", f"whip://room/{i}") for i in range(whip_rooms)]
    targets.append(Target("r", "rtmp://room/r"))
    fan = fanout.Fanout(targets, Timeouts(), Progress(), connect=connect)
    fan.connect(targets[0].url, 5.0)
    fan.write(flv[:FLV_HEADER])
    for *_, tag in tags(flv):
        fan.write(tag)
    fan.close()
    return [rooms[t.url] for t in targets], converts


def test_a_fan_outs_whip_rooms_get_opus_and_its_rtmp_rooms_aac_from_one_read(
    flv: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first, second, rtmp), _ = fan_out(flv, 2, monkeypatch)
    whip, aac = b"".join(first.writes), b"".join(rtmp.writes)
    assert b"".join(second.writes) == whip
    assert pictures(whip) == pictures(aac) == pictures(flv)
    assert sounds(whip) and all(is_opus(body) for body in sounds(whip))
    assert sounds(aac) and all(body[0] >> 4 == 10 for body in sounds(aac))  # AAC


def test_a_fan_out_encodes_opus_as_often_for_three_whip_rooms_as_for_one(
    flv: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, one = fan_out(flv, 1, monkeypatch)
    _, three = fan_out(flv, 3, monkeypatch)
    assert one == three >= SECONDS * 30  # once a feed (a picture, its sound with it)


def pictures(data: bytes) -> list[bytes]:
    """The whole picture tags of an FLV stream."""
    return [tag for kind, _, _, tag in tags(data) if kind == _VIDEO]


def sounds(data: bytes, start: int = FLV_HEADER) -> list[bytes]:
    """The bodies of an FLV stream's sound tags."""
    return [body for kind, _, body, _ in tags(data, start) if kind == _AUDIO]


def test_a_sound_frame_the_decoder_refuses_is_dropped_and_the_rest_goes_on(
    flv: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    opus = OpusTags()
    opus.convert(flv[:FLV_HEADER])
    frames = [tag for kind, _, body, tag in tags(flv) if kind == _AUDIO and body[1] == 1]
    config = next(tag for kind, _, body, tag in tags(flv) if kind == _AUDIO and body[1] == 0)
    opus.convert(config)
    broken = frames[0][:13] + b"\xff" * (len(frames[0]) - 17) + frames[0][-4:]  # no AAC
    with caplog.at_level(logging.WARNING, logger="pipeline.opus"):
        assert opus.convert(broken) == b""
    assert "could not be re-encoded" in caplog.text
    later = b"".join(opus.convert(frame) for frame in frames[1:])
    assert sounds(later, start=0)  # the frames after it still encode


def test_the_sound_the_encoder_still_holds_goes_to_the_whip_rooms_at_the_end(
    flv: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    (whip, _), _ = fan_out(flv, 1, monkeypatch)
    last_fed = max(stamp for kind, stamp, _, _ in tags(converted(flv)) if kind == _AUDIO)
    last_sent = max(stamp for kind, stamp, _, _ in tags(b"".join(whip.writes)) if kind == _AUDIO)
    assert last_sent > last_fed  # the encoder's last packet, flushed when the push closed
