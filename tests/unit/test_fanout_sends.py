"""How a fan-out push batches what it sends each room: pictures per send, sound riding with
them (pipeline/fanout.py)."""

from __future__ import annotations

import pytest

from pipeline.fanout import Fanout
from pipeline.progress import Progress
from pipeline.spec import Target, Timeouts


def tag(kind: int, body: bytes) -> bytes:
    """One FLV tag of ``kind`` (8 sound, 9 picture) at time 0."""
    return (
        bytes([kind])
        + len(body).to_bytes(3, "big")
        + bytes(7)
        + body
        + (11 + len(body)).to_bytes(4, "big")
    )


HEADER = b"FLV\x01\x05\x00\x00\x00\x09" + bytes(4)
CONFIG = tag(9, b"\x17\x00config")
KEY = tag(9, b"\x17\x01keyframe")
PICTURE = tag(9, b"\x27\x01picture")
SOUND = tag(8, b"\xaf\x01sound")


class Room:
    """A room connection that notes each write; ``wants_opus`` as a WHIP room's."""

    def __init__(self, wants_opus: bool = False) -> None:
        self.wants_opus = wants_opus
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def close(self) -> None:
        pass

    def cut(self) -> None:
        pass


@pytest.mark.parametrize(
    ("pictures_per_send", "sends"),
    [
        (1, [KEY, SOUND + PICTURE, SOUND + PICTURE, PICTURE]),
        (2, [KEY + SOUND + PICTURE, SOUND + PICTURE + PICTURE]),
    ],
)
def test_each_room_gets_its_pictures_so_many_a_send_with_the_sound_between_them(
    pictures_per_send: int, sends: list[bytes]
) -> None:
    rooms: dict[str, Room] = {}

    def connect(url: str, timeout: float) -> Room:
        rooms[url] = Room()
        return rooms[url]

    targets = [Target("a", "rtmp://room/a"), Target("b", "rtmp://room/b")]
    fan = Fanout(
        targets, Timeouts(), Progress(), connect=connect, pictures_per_send=pictures_per_send
    )
    fan.connect(targets[0].url, 5.0)
    for data in (HEADER, CONFIG, KEY, SOUND, PICTURE, SOUND, PICTURE, PICTURE):
        fan.write(data)
    fan.close()
    assert set(rooms) == {"rtmp://room/a", "rtmp://room/b"}
    for room in rooms.values():
        assert room.writes == [HEADER + CONFIG, *sends]
