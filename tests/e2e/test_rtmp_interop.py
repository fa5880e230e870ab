"""roomcast's RTMP client next to FFmpeg's, into RTMP servers nobody here wrote: nginx-rtmp
(the local room), node-media-server (npm) and a pyrtmp server (PyPI). What each server
delivers is compared with the source, tag by tag: timestamps and bytes.

Pushed from 0 and from just below 0xFFFFFF ms (4 h 39 m 37 s), where extended timestamps
begin, since that is where servers' chunk readers differ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_port, wait_for_port
from devstack.room import LocalRoom
from pipeline.rtmp import RtmpPublisher
from pipeline.rtmpio import RtmpConnection

from ..interop.nms import NodeMediaServer, node_media_server
from ..media import flv_of, make_clip
from ..stack import REPO
from ..viewer import Viewer

PAST_24_BITS = 0xFFFFFF - 1000
#: Each server takes a push from each client, and roomcast's from past 24 bits too.
EVERY_PUSH = pytest.mark.parametrize(
    ("client", "origin"),
    [("roomcast", 0), ("ffmpeg", 0), ("roomcast", PAST_24_BITS)],
    ids=["roomcast", "ffmpeg", "roomcast_past_24_bits"],
)


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 s of 320x240 30 fps video and 48 kHz sound as one FLV byte stream."""
    clip = make_clip(tmp_path_factory.mktemp("interop") / "c.mp4", seconds=2, size="320x240")
    return flv_of(clip)


def tags(flv: bytes, kind: int) -> list[tuple[int, bytes]]:
    """(timestamp, payload) of each tag of ``kind`` (8 sound, 9 pictures)."""
    found, offset = [], 13
    while offset + 11 <= len(flv):
        size = int.from_bytes(flv[offset + 1 : offset + 4], "big")
        stamp = int.from_bytes(flv[offset + 4 : offset + 7], "big") | flv[offset + 7] << 24
        if flv[offset] == kind:
            found.append((stamp, flv[offset + 11 : offset + 11 + size]))
        offset += 11 + size + 4
    return found


def publish(url: str, flv: bytes, client: str, origin: int = 0) -> None:
    """Push ``flv`` to ``url`` with one client, in writes cut anywhere between tags."""
    if client == "roomcast":
        connection: RtmpPublisher | RtmpConnection = RtmpPublisher(url, 5, timestamp_origin=origin)
    else:
        connection = RtmpConnection(url, 5)
    try:
        for start in range(0, len(flv), 777):
            connection.write(flv[start : start + 777])
            time.sleep(0.001)
    finally:
        connection.close()


def viewed(play_url: str, push_url: str, flv: bytes, client: str, origin: int) -> list:
    """What a player of ``play_url`` receives of a push: (timestamp ms, frame bytes)."""
    viewer = Viewer(play_url, idle=2.0, keep_data=True)
    viewer.start()
    time.sleep(0.5)  # playing before the publish starts: nothing is missed
    publish(push_url, flv, client, origin)
    viewer.join(timeout=30)
    assert viewer.capture.error is None, viewer.capture.error
    return [(round(p.dts * 1000), p.data) for p in viewer.capture.of("video")]


def expected_frames(flv: bytes, origin: int) -> list[tuple[int, bytes]]:
    """The source's pictures as a player sees them: the AVC header off each tag."""
    return [(origin + stamp, data[5:]) for stamp, data in tags(flv, 9) if data[1] == 1]


@EVERY_PUSH
def test_nginx_rtmp_relays_every_frame(
    room: LocalRoom, room_name: str, flv: bytes, client: str, origin: int
) -> None:
    stream = f"{room_name}_{client}_{origin}"
    url = f"{room.rtmp_base}/{stream}?sdkappid=1&userid=u&usersig=s"
    assert viewed(room.play_url(stream), url, flv, client, origin) == expected_frames(flv, origin)


@pytest.fixture(scope="module")
def nms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeMediaServer]:
    with node_media_server(tmp_path_factory.mktemp("nms")) as server:
        yield server


@EVERY_PUSH
def test_node_media_server_relays_every_frame(
    nms: NodeMediaServer, room_name: str, flv: bytes, client: str, origin: int
) -> None:
    url = f"{nms.rtmp}/{room_name}_{client}_{origin}"
    assert viewed(url, url, flv, client, origin) == expected_frames(flv, origin)


@pytest.fixture(scope="module")
def pyrtmp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A pyrtmp server recording every media message it reassembles (a JSON line each)."""
    out = tmp_path_factory.mktemp("pyrtmp") / "received.jsonl"
    port = free_port()
    with (out.parent / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.interop.pyrtmp_recorder", str(port), str(out)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, 15)
        yield f"rtmp://127.0.0.1:{port}/live", out
    finally:
        proc.kill()
        proc.wait(10)


@EVERY_PUSH
def test_pyrtmp_reassembles_every_message_with_its_timestamp(
    pyrtmp_server: tuple[str, Path], flv: bytes, client: str, origin: int
) -> None:
    base, out = pyrtmp_server
    before = len(out.read_text().splitlines()) if out.exists() else 0
    publish(f"{base}/s_{client}_{origin}", flv, client, origin)
    expected = [(9, origin + t, p) for t, p in tags(flv, 9)]
    expected += [(8, origin + t, p) for t, p in tags(flv, 8)]
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in out.read_text().splitlines()[before:]]
        got = [(m["kind"], m["timestamp"], bytes.fromhex(m["payload"])) for m in lines]
        if len(got) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for kind in (8, 9):
        assert [g for g in got if g[0] == kind] == [e for e in expected if e[0] == kind]
