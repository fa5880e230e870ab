"""The room connection through FFmpeg's RTMP client (``ROOMCAST_RTMP_CLIENT=ffmpeg``),
written in full TCP segments, ended from another thread when a stop cannot reach the push's
own; and, with either client, closed without a burst of held packets after a stop.

Against the real local room (nginx-rtmp). That what is written arrives intact and plays is
what every push test checks through this same connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from devstack.room import LocalRoom
from pipeline import Control, Outcome, PushSpec, push
from pipeline.rtmp import RtmpPublisher
from pipeline.rtmpio import RtmpConnection, TcpStats
from pipeline.sink import RTMP_CLIENTS, RtmpSink
from pipeline.spec import Timeouts

from ..media import flv_of, make_clip


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 s of 720p30 video and 48 kHz sound as one FLV byte stream (about 150 tags)."""
    clip = make_clip(tmp_path_factory.mktemp("rtmpio") / "clip.mp4", seconds=2)
    return flv_of(clip)


def publish_url(room: LocalRoom, room_name: str) -> str:
    """Where a publisher of ``room_name`` connects (the suite's room takes any UserSig)."""
    return f"{room.rtmp_base}/{room_name}?sdkappid=1&userid=u&usersig=s"


@pytest.fixture
def connection(room: LocalRoom, room_name: str) -> Iterator[RtmpConnection]:
    publish = RtmpConnection(publish_url(room, room_name), 5)
    yield publish
    publish.close()


def tags_of(flv: bytes) -> list[bytes]:
    """The FLV tags after the 13-byte file header, each with its previous-tag-size."""
    tags, offset = [], 13
    while offset + 11 <= len(flv):
        end = offset + 11 + int.from_bytes(flv[offset + 1 : offset + 4], "big") + 4
        tags.append(flv[offset:end])
        offset = end
    return tags


def drained(connection: RtmpConnection) -> TcpStats:
    """The socket's counters once what was written has left (the room keeps reading)."""
    deadline = time.monotonic() + 5
    while True:
        stats = connection.tcp_stats()
        assert stats is not None
        if stats.unsent == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.005)


def test_each_write_leaves_in_as_few_tcp_segments_as_its_size_allows(
    connection: RtmpConnection, flv: bytes
) -> None:
    assert connection.coalesced
    connection.write(flv[:13])
    before = drained(connection).data_segments
    tags = tags_of(flv)[:30]
    for tag in tags:
        connection.write(tag)
        drained(connection)  # so that no write joins a queue left by the one before
    after = drained(connection)
    assert after.unsent == 0
    # Uncorked, FFmpeg sends a tag's message header, chunks and 1-byte chunk markers as
    # segments of their own (two to four a tag). Corked, a write is full segments (64 KiB
    # on the loopback; 16 kB is generous) and at most one partial one.
    assert after.data_segments - before <= sum(len(tag) // 16_000 + 1 for tag in tags)


def test_no_write_leaves_the_socket_corked(connection: RtmpConnection, flv: bytes) -> None:
    connection.write(flv[:13])
    for tag in tags_of(flv)[:10]:
        connection.write(tag)
        stats = connection.tcp_stats()
        assert stats is not None
        assert not stats.corked  # else a tag shorter than a segment would wait 200 ms


def test_a_connection_that_is_not_rtmp_over_tcp_is_written_as_ffmpeg_sends_it(
    room: LocalRoom,
) -> None:
    plain = RtmpConnection(f"tcp://127.0.0.1:{room.rtmp_port}", 5)
    try:
        assert not plain.coalesced
        assert plain.tcp_stats() is None
        assert plain.write(b"\x03" + bytes(1536)) == 1537  # an RTMP C0+C1 handshake
    finally:
        plain.close()


def test_a_closed_connection_refuses_writes(room: LocalRoom, room_name: str) -> None:
    closed = RtmpConnection(publish_url(room, room_name), 5)
    closed.close()
    assert not closed.coalesced
    with pytest.raises(OSError, match="closed"):
        closed.write(b"x")


def publishers_after(room: LocalRoom, room_name: str, seconds: float) -> int:
    """Publishers of ``room_name`` once they are none, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (count := room.publishers(room_name)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return count


def test_a_cut_connection_leaves_the_room_at_once_and_refuses_writes(
    connection: RtmpConnection, room: LocalRoom, room_name: str, flv: bytes
) -> None:
    connection.write(flv[:13])
    assert room.publishers(room_name) == 1
    cutting = threading.Thread(target=connection.cut)
    cutting.start()
    cutting.join()
    assert publishers_after(room, room_name, 0.5) == 0
    with pytest.raises(OSError):
        connection.write(tags_of(flv)[0])
    connection.close()  # and closing what is left still works


def test_a_push_whose_publish_is_cut_off_ends_stopped_without_publishing_again(
    room: LocalRoom, room_name: str
) -> None:
    room.media_dir.mkdir(parents=True, exist_ok=True)
    clip = make_clip(room.media_dir / f"{room_name}.mp4", seconds=6, size="320x240")
    spec = PushSpec(source=room.media_url(clip.name), target=publish_url(room, room_name))
    results = []
    with Control() as control:
        pushing = threading.Thread(target=lambda: results.append(push(spec, control)), daemon=True)
        pushing.start()
        deadline = time.monotonic() + 10
        while not room.publishers(room_name):
            assert time.monotonic() < deadline, "the push never published"
            time.sleep(0.02)
        time.sleep(1)
        assert control.cut_off()
        assert publishers_after(room, room_name, 0.5) == 0
        published_again = False
        deadline = time.monotonic() + 10
        while pushing.is_alive() and time.monotonic() < deadline:
            published_again = published_again or room.publishers(room_name) > 0
            time.sleep(0.02)
    assert not pushing.is_alive(), "the push did not end"
    assert not published_again, "the cut publish was reconnected"
    assert results and results[0].outcome is Outcome.STOPPED
    assert 0.5 < results[0].progress.position < 2.0


def held_back_and_sent_by_closing(
    room: LocalRoom,
    room_name: str,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    send_held: bool,
    client: str,
) -> tuple[int, int]:
    """Mux a 1 s clip's video alone into a sink with sound and picture, then close the sink.

    The muxer interleaves the streams by time, so it holds the video back while no sound
    comes (as it does during a run of video in a file). Returns how many packets it held
    and how many bytes the close wrote to the room.
    """
    clip = make_clip(tmp / "clip.mp4", seconds=1, size="320x240")
    sink = RtmpSink(publish_url(room, room_name), Timeouts(), client=client).open()
    with av.open(str(clip)) as source:
        video, audio = source.streams.video[0], source.streams.audio[0]
        outputs = {video.index: sink.add_copy_of(video), audio.index: sink.add_copy_of(audio)}
        sink.start()
        held = 0
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = outputs[packet.stream.index]
                held += not sink.encode(packet)
    written: list[int] = []
    kind = RtmpPublisher if client == "roomcast" else RtmpConnection
    write = kind.write
    monkeypatch.setattr(
        kind, "write", lambda self, data: written.append(len(data)) or write(self, data)
    )
    sink.close(send_held=send_held)
    return held, sum(written)


@pytest.mark.parametrize("client", RTMP_CLIENTS)
def test_closing_a_stopped_push_sends_nothing_the_muxer_held_back(
    room: LocalRoom, room_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    held, sent = held_back_and_sent_by_closing(
        room, room_name, tmp_path, monkeypatch, False, client
    )
    assert held >= 25 and sent == 0


@pytest.mark.parametrize("client", RTMP_CLIENTS)
def test_closing_a_push_that_reached_its_end_sends_what_the_muxer_held_back(
    room: LocalRoom, room_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    held, sent = held_back_and_sent_by_closing(room, room_name, tmp_path, monkeypatch, True, client)
    assert held >= 25 and sent > 0
