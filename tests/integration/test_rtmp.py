"""roomcast's own RTMP publisher (pipeline/rtmp.py).

Against the real local room (nginx-rtmp) for what a viewer sees, and against a scripted
ingest in this file for what nginx-rtmp does not do on demand: refusing a connect or a
publish with a reason, sending pings, ending a publish.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devstack.room import LocalRoom
from pipeline import amf
from pipeline.flv import FLV_HEADER, media_start
from pipeline.rtmp import (
    COMMAND,
    HANDSHAKE_SIZE,
    POLL_EVERY,
    SET_CHUNK_SIZE,
    USER_CONTROL,
    ChunkReader,
    RtmpAddress,
    RtmpError,
    RtmpFramer,
    RtmpPublisher,
    message_bytes,
)
from pipeline.rtmpio import RtmpConnection
from pipeline.sink import connect_room

from ..media import flv_of, make_clip

TRTC_URL = "rtmp://rtmp.rtc.qq.com/push/room_1?sdkappid=1400000001&userid=bob&usersig=eJw*-_x"


@pytest.fixture(scope="module")
def flv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """2 s of 320x240 30 fps video and 48 kHz sound as one FLV byte stream."""
    clip = make_clip(tmp_path_factory.mktemp("rtmp") / "clip.mp4", seconds=2, size="320x240")
    return flv_of(clip)


def video_tags(flv: bytes) -> list[tuple[int, bytes]]:
    """(timestamp ms, payload) of each video tag but the decoder configuration."""
    found, offset = [], 13
    while offset + 11 <= len(flv):
        kind = flv[offset]
        size = int.from_bytes(flv[offset + 1 : offset + 4], "big")
        stamp = int.from_bytes(flv[offset + 4 : offset + 7], "big") | flv[offset + 7] << 24
        payload = flv[offset + 11 : offset + 11 + size]
        if kind == 9 and payload[1] == 1:  # an AVC NAL unit, not the sequence header
            found.append((stamp, payload))
        offset += 11 + size + 4
    return found


def feeds_of(flv: bytes, tags: int = 3) -> tuple[bytes, list[bytes]]:
    """The stream's header (FLV header, metadata, codec configuration) and its media tags
    in feeds of ``tags`` tags, as a fan-out feeds its rooms."""
    start = media_start(flv[FLV_HEADER:])
    assert start is not None
    header, media = flv[: FLV_HEADER + start], flv[FLV_HEADER + start :]
    feeds, offset = [], 0
    while offset < len(media):
        end = offset
        for _ in range(tags):
            if end + 11 <= len(media):
                end += 11 + int.from_bytes(media[end + 1 : end + 4], "big") + 4
        feeds.append(media[offset:end])
        offset = end
    return header, feeds


def test_a_framer_that_joins_later_frames_as_the_first_one_does_two_feeds_on(flv: bytes) -> None:
    header, feeds = feeds_of(flv)
    first, late = RtmpFramer(), RtmpFramer()
    first.frame(header)
    for feed in feeds[:10]:
        first.frame(feed)
    late.frame(header)  # a room that joins at feed 10 gets the header, then the stream
    # Its first messages carry full headers where the other's carry deltas...
    assert late.frame(feeds[10]) != first.frame(feeds[10])
    late.frame(feeds[11]), first.frame(feeds[11])
    # ...and a feed later the two chunk streams are where each other's are.
    assert late.state() == first.state()
    for feed in feeds[12:]:
        assert late.frame(feed) == first.frame(feed)  # so one framing serves both rooms


# --- the URL, as FFmpeg's client splits it ---------------------------------------------


def test_a_trtc_push_url_publishes_its_room_and_query_to_the_push_application() -> None:
    address = RtmpAddress.parse(TRTC_URL)
    assert (address.host, address.port, address.tls) == ("rtmp.rtc.qq.com", 1935, False)
    assert address.app == "push"
    assert address.stream == "room_1?sdkappid=1400000001&userid=bob&usersig=eJw*-_x"
    assert address.tc_url == "rtmp://rtmp.rtc.qq.com:1935/push"  # with the port, as FFmpeg


def test_a_port_in_the_url_is_used_and_kept_in_the_tc_url() -> None:
    address = RtmpAddress.parse("rtmp://127.0.0.1:19350/push/r1")
    assert (address.port, address.tc_url, address.stream) == (
        19350,
        "rtmp://127.0.0.1:19350/push",
        "r1",
    )


def test_a_longer_path_keeps_all_but_its_last_segment_as_the_application() -> None:
    address = RtmpAddress.parse("rtmps://ingest.example/live/east/key1")
    assert (address.app, address.stream, address.port, address.tls) == (
        "live/east",
        "key1",
        443,
        True,
    )


@pytest.mark.parametrize("url", ["http://host/push/r1", "rtmp:///push/r1", "rtmpt://h/a/b"])
def test_a_url_the_client_does_not_speak_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="rtmp"):
        RtmpAddress.parse(url)


def test_rtmp_urls_get_roomcasts_client_unless_ffmpegs_is_asked_for(room: LocalRoom) -> None:
    url = f"{room.rtmp_base}/client_choice"
    for client, kind in (("roomcast", RtmpPublisher), ("ffmpeg", RtmpConnection)):
        connection = connect_room(url, 5, client)
        try:
            assert type(connection) is kind
        finally:
            connection.close()


# --- chunks and AMF0 -------------------------------------------------------------------


def test_amf0_values_read_back_as_they_were_written() -> None:
    values = ["_result", 4.0, None, {"level": "status", "n": 1.5, "ok": True, "sub": {"a": "b"}}]
    assert amf.decode(amf.encode(*values)) == values


def test_a_message_longer_than_a_chunk_reads_back_whole_whatever_the_bytes_arrive_in() -> None:
    payload = bytes(range(256)) * 40  # 10 240 bytes: three chunks of 4096
    wire = b"".join(message_bytes(8, 9, 1, 1234, payload, chunk_size=4096))
    reader = ChunkReader()
    reader.chunk_size = 4096
    messages = [m for i in range(0, len(wire), 7) for m in reader.feed(wire[i : i + 7])]
    assert [(m.kind, m.stream_id, m.payload) for m in messages] == [(9, 1, payload)]


def test_a_timestamp_past_24_bits_is_carried_in_every_chunk_of_its_message() -> None:
    payload = b"x" * 5000
    wire = b"".join(message_bytes(8, 9, 1, 0x1234_5678, payload, chunk_size=4096))
    # Basic header, 11-byte header, 4-byte extended timestamp; then each chunk marker's.
    assert wire[1:4] == b"\xff\xff\xff" and wire[12:16] == (0x1234_5678).to_bytes(4, "big")
    marker = 12 + 4 + 4096
    assert wire[marker] == 0xC8 and wire[marker + 1 : marker + 5] == wire[12:16]
    reader = ChunkReader()
    reader.chunk_size = 4096
    assert [m.payload for m in reader.feed(wire)] == [payload]


def test_a_new_chunk_size_applies_to_the_chunks_right_behind_it() -> None:
    """The room sends its chunk size and the connect answer in one burst (nginx-rtmp)."""
    answer = amf.encode("_result", 1.0, {"fmsVer": "FMS/3,0,1,123" * 20}, {"code": "ok"})
    assert len(answer) > 128
    set_size = b"".join(message_bytes(2, SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big")))
    chunked = b"".join(message_bytes(3, COMMAND, 0, 0, answer))  # in chunks of 4096
    messages = ChunkReader().feed(set_size + chunked)
    assert [m.payload for m in messages][-1] == answer


# --- a scripted ingest -----------------------------------------------------------------


@dataclass
class Script:
    """How the scripted ingest answers, and what it heard."""

    refuse_connect: str | None = None
    refuse_publish: str | None = None
    publish_error: bool = False  # refuse the publish with ``_error`` instead of ``onStatus``
    stream_id: float = 1.0
    before_connect_result: bytes = b""
    stop_reading: bool = False  # after the publish: the room takes no more data
    require_client_version: bool = False  # hang up on a plain handshake (no version in C1)
    hung_up: int = 0
    ping_every: float = 0.0  # after the handshake: ping this often, drop a client that is
    drop_after: float = 1.0  # this long without answering one
    pongs: list[float] = field(default_factory=list)  # seconds each ping waited
    dropped: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    after_publish: list[bytes] = field(default_factory=list)
    heard: list[list[Any]] = field(default_factory=list)
    controls: list[tuple[int, bytes]] = field(default_factory=list)
    media: list[tuple[int, bytes]] = field(default_factory=list)
    stamps: list[tuple[int, int]] = field(default_factory=list)  # (kind, timestamp) of media
    raw: bytearray = field(default_factory=bytearray)  # every byte after the handshake


def _status(level: str, code: str) -> dict[str, str]:
    return {"level": level, "code": code, "description": f"{code} (scripted)"}


def _reply(name: str, transaction: float, info: Any, stream_id: int = 0) -> bytes:
    return b"".join(
        message_bytes(3, COMMAND, stream_id, 0, amf.encode(name, transaction, None, info))
    )


def _serve(listener: socket.socket, script: Script) -> None:
    while True:
        conn, _ = listener.accept()
        if _serve_one(conn, script):
            return


def _serve_one(conn: socket.socket, script: Script) -> bool:
    """One client's conversation; False if its handshake was refused (wait for another)."""
    with conn:
        conn.settimeout(10)
        received = b""
        while len(received) < 1 + HANDSHAKE_SIZE:
            received += conn.recv(65536)
        c1 = received[1 : 1 + HANDSHAKE_SIZE]
        if script.require_client_version and c1[4:8] == bytes(4):
            # As servers that check the Flash Player handshake do: a plain C1 is hung up on.
            script.hung_up += 1
            return False
        conn.sendall(b"\x03" + bytes(HANDSHAKE_SIZE) + c1)
        # As nginx-rtmp does: what follows comes in chunks of up to 4096 bytes.
        conn.sendall(b"".join(message_bytes(2, SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big"))))
        leftover = received[1 + HANDSHAKE_SIZE :]
        while len(leftover) < HANDSHAKE_SIZE:
            leftover += conn.recv(65536)
        reader = ChunkReader()
        data = leftover[HANDSHAKE_SIZE:]
        pinger = _Pinger(script) if script.ping_every else None
        while True:
            script.raw += data
            for message in reader.feed(data):
                if pinger is not None and message.kind == USER_CONTROL:
                    pinger.answered(message.payload)
                if message.kind != COMMAND:
                    target = script.media if message.kind in (8, 9, 18) else script.controls
                    target.append((message.kind, message.payload))
                    if message.kind in (8, 9):
                        script.stamps.append((message.kind, message.timestamp))
                    continue
                values = amf.decode(message.payload)
                script.heard.append(values)
                name, transaction = values[0], values[1]
                if name == "connect":
                    if script.refuse_connect:
                        info = _status("error", script.refuse_connect)
                        conn.sendall(_reply("_error", transaction, info))
                    else:
                        answer = _reply("_result", transaction, _status("status", "ok"))
                        conn.sendall(script.before_connect_result + answer)
                elif name == "createStream":
                    conn.sendall(_reply("_result", transaction, script.stream_id))
                elif name == "publish" and script.publish_error:
                    info = _status("error", "NetStream.Publish.Denied")
                    conn.sendall(_reply("_error", transaction, info))
                elif name == "publish":
                    level = "error" if script.refuse_publish else "status"
                    code = script.refuse_publish or "NetStream.Publish.Start"
                    status = _reply("onStatus", 0, _status(level, code), stream_id=1)
                    conn.sendall(status + b"".join(script.after_publish))
                    if script.stop_reading:
                        script.release.wait(30)
                        return True
            try:
                data = conn.recv(65536) if pinger is None else pinger.recv(conn)
            except OSError:
                return True
            if not data:
                return True


class _Pinger:
    """A strict server's pings: one every ``ping_every``; a client that leaves one
    unanswered for ``drop_after`` is hung up on (``script.dropped``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.next_at = time.monotonic() + script.ping_every
        self.waiting: float | None = None

    def answered(self, payload: bytes) -> None:
        if payload[:2] == (7).to_bytes(2, "big") and self.waiting is not None:
            self.script.pongs.append(time.monotonic() - self.waiting)
            self.waiting = None

    def recv(self, conn: socket.socket) -> bytes:
        """What the client sent, pinging meanwhile; OSError once it is hung up on."""
        while True:
            now = time.monotonic()
            if self.waiting is not None and now - self.waiting > self.script.drop_after:
                self.script.dropped = True
                raise OSError("the client left a ping unanswered: hung up")
            if self.waiting is None and now >= self.next_at:
                ping = (6).to_bytes(2, "big") + int(now * 1000 % 2**32).to_bytes(4, "big")
                conn.sendall(b"".join(message_bytes(2, USER_CONTROL, 0, 0, ping)))
                self.waiting, self.next_at = now, now + self.script.ping_every
            conn.settimeout(0.05)
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue


@pytest.fixture
def ingest() -> Iterator[tuple[str, Script]]:
    """A scripted ingest on a free port and the script it follows (set before connecting)."""
    listener = socket.create_server(("127.0.0.1", 0))
    script = Script()
    serving = threading.Thread(target=_serve, args=(listener, script), daemon=True)
    serving.start()
    yield f"rtmp://127.0.0.1:{listener.getsockname()[1]}/push/r9?sdkappid=1&usersig=s", script
    script.release.set()
    listener.close()
    serving.join(timeout=10)


def test_the_room_hears_the_application_and_the_stream_key_as_ffmpeg_sends_them(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    RtmpPublisher(url, 5).close()
    names = [values[0] for values in script.heard]
    assert names[:5] == ["connect", "releaseStream", "FCPublish", "createStream", "publish"]
    connect = script.heard[0][2]
    assert connect["app"] == "push"
    assert connect["tcUrl"] == url.split("/r9")[0]
    assert connect["flashVer"].startswith("FMLE/3.0")
    assert script.heard[4][3:] == ["r9?sdkappid=1&usersig=s", "live"]


def test_a_refused_connect_fails_with_the_rooms_reason(ingest: tuple[str, Script]) -> None:
    url, script = ingest
    script.refuse_connect = "NetConnection.Connect.Rejected"
    with pytest.raises(RtmpError, match="refused connect: NetConnection.Connect.Rejected"):
        RtmpPublisher(url, 5)


def test_a_refused_publish_fails_with_the_rooms_reason(ingest: tuple[str, Script]) -> None:
    url, script = ingest
    script.refuse_publish = "NetStream.Publish.BadName"
    with pytest.raises(RtmpError, match="refused the publish: NetStream.Publish.BadName"):
        RtmpPublisher(url, 5)


def test_a_publish_refused_with_an_error_answer_fails_with_its_reason(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    script.publish_error = True
    # Not after the 30 s timeout, with a timeout's message: at the answer, with the room's.
    with pytest.raises(RtmpError, match="refused the publish: NetStream.Publish.Denied"):
        RtmpPublisher(url, 30)


@pytest.mark.parametrize("stream_id", [-1.0, 2.0**32, float("nan")])
def test_a_stream_id_no_rtmp_header_can_carry_is_refused_readably(
    ingest: tuple[str, Script], stream_id: float
) -> None:
    url, script = ingest
    script.stream_id = stream_id
    with pytest.raises(RtmpError, match="createStream named no stream"):
        RtmpPublisher(url, 5)


def test_a_command_from_the_room_that_amf0_cannot_read_is_passed_over(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    unreadable = b"\x02\x00\x05onBWx\x11\x04\x01"  # an AMF3 value behind its marker
    script.before_connect_result = b"".join(message_bytes(3, COMMAND, 0, 0, unreadable))
    RtmpPublisher(url, 5).close()
    assert [values[0] for values in script.heard][-2:] == ["FCUnpublish", "deleteStream"]


def test_a_room_that_stops_taking_data_fails_the_write_within_the_timeout(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    script.stop_reading = True
    publisher = RtmpPublisher(url, 0.5)
    tag = b"\x09" + (60_000).to_bytes(3, "big") + bytes(4) + bytes(3) + bytes(60_000)
    tag += (60_011).to_bytes(4, "big")
    publisher.write(b"FLV\x01\x01\x00\x00\x00\x09\x00\x00\x00\x00")
    with pytest.raises(RtmpError, match="took no data for 0.5 s"):
        for _ in range(2000):  # far more than any socket buffer holds: 120 MB
            publisher.write(tag)
    publisher.close()  # at once: no goodbye behind a message cut in half


def test_a_chunk_size_no_peer_may_set_is_refused() -> None:
    zero = b"".join(message_bytes(2, SET_CHUNK_SIZE, 0, 0, bytes(4)))
    with pytest.raises(RtmpError, match="chunk size of 0"):
        ChunkReader().feed(zero)


def test_a_first_chunk_without_a_full_header_is_read_from_an_empty_history() -> None:
    # fmt 1 on chunk stream 5: timestamp delta, length 3, type 20, then the payload.
    chunk = bytes((0x40 | 5,)) + bytes(3) + (3).to_bytes(3, "big") + bytes((20,)) + b"abc"
    assert [(m.kind, m.payload) for m in ChunkReader().feed(chunk)] == [(20, b"abc")]


def test_a_room_that_never_answers_fails_the_connect_within_its_timeout() -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        started = time.monotonic()
        with pytest.raises(OSError):
            RtmpPublisher(f"rtmp://127.0.0.1:{silent.getsockname()[1]}/push/r1", 0.5)
        assert time.monotonic() - started < 2
    finally:
        silent.close()


def test_the_publisher_answers_the_rooms_pings(ingest: tuple[str, Script], flv: bytes) -> None:
    url, script = ingest
    ping = (6).to_bytes(2, "big") + (4242).to_bytes(4, "big")
    script.after_publish = [b"".join(message_bytes(2, USER_CONTROL, 0, 0, ping))]
    publisher = RtmpPublisher(url, 5)
    time.sleep(0.1)  # for the ping, should it not have come with the publish's answer
    publisher.write(flv[:13])
    for _ in range(POLL_EVERY + 1):
        publisher.write(b"")
    publisher.close()
    pong = (7).to_bytes(2, "big") + (4242).to_bytes(4, "big")
    deadline = time.monotonic() + 5
    while (USER_CONTROL, pong) not in script.controls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (USER_CONTROL, pong) in script.controls


def test_a_quiet_publisher_answers_a_ping_at_once(ingest: tuple[str, Script]) -> None:
    # Writing nothing (a stalled source, a clip that has not started): the keeper reads.
    url, script = ingest
    ping = (6).to_bytes(2, "big") + (777).to_bytes(4, "big")
    script.after_publish = [b"".join(message_bytes(2, USER_CONTROL, 0, 0, ping))]
    publisher = RtmpPublisher(url, 5)
    try:
        pong = (USER_CONTROL, (7).to_bytes(2, "big") + (777).to_bytes(4, "big"))
        deadline = time.monotonic() + 1.0
        while pong not in script.controls:
            assert time.monotonic() < deadline, "no pong within a second of quiet"
            time.sleep(0.01)
    finally:
        publisher.close()


def test_a_publisher_quiet_for_three_seconds_is_not_dropped_by_a_strict_server(
    ingest: tuple[str, Script], flv: bytes
) -> None:
    url, script = ingest
    script.ping_every, script.drop_after = 0.4, 0.8
    publisher = RtmpPublisher(url, 5)
    try:
        publisher.write(flv[: len(flv) // 2])
        time.sleep(3)  # the source stalls: nothing to write
        publisher.write(flv[len(flv) // 2 :])
    finally:
        publisher.close()
    assert not script.dropped
    assert len(script.pongs) >= 5 and max(script.pongs) < 0.5, script.pongs


def test_a_bandwidth_check_is_answered_as_ffmpeg_answers_it(ingest: tuple[str, Script]) -> None:
    url, script = ingest
    script.after_publish = [_reply("onBWDone", 0, None)]
    publisher = RtmpPublisher(url, 5)
    try:
        deadline = time.monotonic() + 1.0
        while not any(values[0] == "_checkbw" for values in script.heard):
            assert time.monotonic() < deadline, "no _checkbw"
            time.sleep(0.01)
    finally:
        publisher.close()


def test_a_quiet_publisher_learns_that_the_room_ended_the_publish_at_its_next_write(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    script.after_publish = [
        _reply("onStatus", 0, _status("error", "NetStream.Unpublish.Kicked"), 1)
    ]
    publisher = RtmpPublisher(url, 5)
    try:
        time.sleep(0.6)  # quiet: the keeper reads the room's message meanwhile
        with pytest.raises(RtmpError, match="NetStream.Unpublish.Kicked"):
            publisher.write(b"")
    finally:
        publisher.close()


def test_a_room_that_hangs_up_on_roomcasts_handshake_gets_ffmpegs_client_and_says_so(
    ingest: tuple[str, Script], flv: bytes
) -> None:
    url, script = ingest
    script.require_client_version = True
    connection = connect_room(url, 5, "roomcast")
    try:
        assert isinstance(connection, RtmpConnection) and script.hung_up == 1
        assert connection.fallback is not None and "handshake" in connection.fallback
        connection.write(flv)
    finally:
        connection.close()
    deadline = time.monotonic() + 5
    while not any(kind == 9 for kind, _ in script.media):
        assert time.monotonic() < deadline, "FFmpeg's client published nothing"
        time.sleep(0.01)


def test_a_room_that_refuses_the_publish_gets_no_second_client(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    script.refuse_publish = "NetStream.Publish.BadName"
    with pytest.raises(RtmpError, match="BadName"):
        connect_room(url, 5, "roomcast")


def test_a_publish_the_room_ends_fails_the_writes_after_it(
    ingest: tuple[str, Script], flv: bytes
) -> None:
    url, script = ingest
    script.after_publish = [
        _reply("onStatus", 0, _status("error", "NetStream.Unpublish.Kicked"), 1)
    ]
    publisher = RtmpPublisher(url, 5)
    try:
        time.sleep(0.2)  # the room's message is on its way
        with pytest.raises(RtmpError, match="ended the publish: NetStream.Unpublish.Kicked"):
            for _ in range(POLL_EVERY):
                publisher.write(b"")
    finally:
        publisher.close()


def test_flv_tags_become_messages_with_their_timestamps_and_metadata_behind_set_data_frame(
    ingest: tuple[str, Script], flv: bytes
) -> None:
    url, script = ingest
    publisher = RtmpPublisher(url, 5)
    for start in range(0, len(flv), 1000):  # tags cut anywhere between writes
        publisher.write(flv[start : start + 1000])
    publisher.close()
    deadline = time.monotonic() + 5
    expected = video_tags(flv)
    while len([m for m in script.media if m[0] == 9]) < len(expected) + 1:
        assert time.monotonic() < deadline, "not every video tag reached the ingest"
        time.sleep(0.01)
    metadata = [payload for kind, payload in script.media if kind == 18]
    assert metadata and amf.decode(metadata[0])[:2] == ["@setDataFrame", "onMetaData"]
    video = [payload for kind, payload in script.media if kind == 9 and payload[1] == 1]
    assert video == [payload for _, payload in expected]


# --- marathon pushes: 4.66 hours, 24.8 days, 49.7 days ------------------------------------


def flv_tags(tags: list[tuple[int, int, int]]) -> bytes:
    """An FLV byte stream of (kind, FLV timestamp, payload size) tags, payloads numbered."""
    out = bytearray(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00")
    for n, (kind, stamp, size) in enumerate(tags):
        payload = n.to_bytes(4, "big") + bytes(size - 4)
        head = bytes((kind,)) + size.to_bytes(3, "big") + (stamp & 0xFFFFFF).to_bytes(3, "big")
        out += head + bytes(((stamp >> 24) & 0x7F,)) + bytes(3) + payload
        out += (11 + size).to_bytes(4, "big")
    return bytes(out)


def a_minute_of_tags(start: int) -> list[tuple[int, int, int]]:
    """Sound every 21 ms and a picture every 33 ms (some larger than a chunk), from ``start``
    (an FLV timestamp, which wraps at 2**31 as FFmpeg's muxer writes it)."""
    tags = [(8, start + t, 200) for t in range(0, 4000, 21)]
    tags += [(9, start + t, 3000 if t % 330 == 0 else 900) for t in range(0, 4000, 33)]
    return [(kind, stamp % 2**31, size) for kind, stamp, size in sorted(tags, key=lambda t: t[1])]


@pytest.mark.parametrize(
    ("origin", "flv_start"),
    [
        (0xFFFFFF - 2000, 0),  # past 24 bits: 4 h 39 m 37 s
        (0, 2**31 - 2000),  # the FLV muxer's 31-bit wrap: 24.8 days
        (2**32 - 2000, 0),  # RTMP's 32-bit wrap: 49.7 days
    ],
    ids=["past_24_bits", "flv_wrap", "rtmp_wrap"],
)
def test_a_marathon_push_keeps_its_timestamps_running_through_every_wrap(
    ingest: tuple[str, Script], origin: int, flv_start: int
) -> None:
    url, script = ingest
    tags = a_minute_of_tags(flv_start)
    publisher = RtmpPublisher(url, 5, timestamp_origin=origin)
    flv = flv_tags(tags)
    for start in range(0, len(flv), 4000):
        publisher.write(flv[start : start + 4000])
    publisher.close()
    deadline = time.monotonic() + 5
    while len(script.stamps) < len(tags):
        assert time.monotonic() < deadline, f"{len(script.stamps)} of {len(tags)} arrived"
        time.sleep(0.01)
    unwrapped = [origin + flv_start + (stamp - flv_start) % 2**31 for _, stamp, _ in tags]
    expected = [(kind, t % 2**32) for (kind, _, _), t in zip(tags, unwrapped, strict=True)]
    assert script.stamps == expected
    payloads = [int.from_bytes(p[:4], "big") for kind, p in script.media if kind in (8, 9)]
    assert payloads == list(range(len(tags)))


def test_timestamps_go_out_as_deltas_without_extended_timestamps_past_24_bits(
    ingest: tuple[str, Script],
) -> None:
    url, script = ingest
    tags = a_minute_of_tags(0)
    publisher = RtmpPublisher(url, 5, timestamp_origin=0xFFFFFF - 2000)
    publisher.write(flv_tags(tags))
    publisher.close()
    deadline = time.monotonic() + 5
    while len(script.stamps) < len(tags):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # Past 0xFFFFFF, yet no extended timestamp (the old writer put one on every message and
    # chunk): the full headers came before it, and no delta reaches 4.6 hours.
    assert max(stamp for _, stamp in script.stamps) > 0xFFFFFF
    assert (0xFFFFFF).to_bytes(3, "big") not in bytes(script.raw)


# --- the real local room ---------------------------------------------------------------


def test_a_cut_publish_leaves_the_room_at_once_and_refuses_writes(
    room: LocalRoom, room_name: str, flv: bytes
) -> None:
    publisher = RtmpPublisher(f"{room.rtmp_base}/{room_name}", 5)
    publisher.write(flv[:4000])
    assert room.publishers(room_name) == 1
    cutting = threading.Thread(target=publisher.cut)
    cutting.start()
    cutting.join()
    deadline = time.monotonic() + 0.5
    while room.publishers(room_name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert room.publishers(room_name) == 0
    with pytest.raises(OSError):
        for _ in range(3):
            publisher.write(flv[4000:8000])
    publisher.close()  # and closing what is left still works


def test_a_closed_publisher_has_left_the_room_and_refuses_writes(
    room: LocalRoom, room_name: str
) -> None:
    publisher = RtmpPublisher(f"{room.rtmp_base}/{room_name}", 5)
    assert room.publishers(room_name) == 1
    publisher.close()
    deadline = time.monotonic() + 0.5
    while room.publishers(room_name) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert room.publishers(room_name) == 0
    with pytest.raises(OSError, match="closed"):
        publisher.write(b"x")
