"""CPU per room write: roomcast's RTMP client next to FFmpeg's, same bytes, same room.

    .venv/bin/python -m bench.rtmp_write [--seconds 30] [--size 640x360]

What the shared sender pays for each write (one video frame and the sound due with it, as
FLV bytes from the muxer) into the local nginx-rtmp room, in microseconds of the writing
thread's CPU (``time.thread_time``, kernel time included): with FFmpeg's client
(``ROOMCAST_RTMP_CLIENT=ffmpeg``, pipeline/rtmpio.py), with roomcast's (pipeline/rtmp.py),
and, as the floor, one plain ``send`` of the same bytes to a process that only reads them.
Each write is followed by a 0.5 ms sleep, as the sender sleeps between passes; the sleep's
own cost is measured alone and taken off every figure.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av

from devstack.room import LocalRoom
from pipeline.rtmp import CHUNK_SIZE
from pipeline.sink import connect_room
from tests.media import make_clip

PAUSE = 0.0005


def frame_writes(clip: Path) -> tuple[bytes, list[bytes]]:
    """The FLV header, then one byte string per video frame with the sound before it."""
    captured: list[bytes] = []

    class Capture:
        def write(self, data: bytes) -> int:
            captured.append(bytes(data))
            return len(data)

    writes: list[bytes] = []
    with av.open(str(clip)) as source, av.open(Capture(), "w", format="flv") as muxer:
        streams = {s.index: muxer.add_stream_from_template(s) for s in source.streams}
        muxer.start_encoding()
        header = b"".join(captured)
        captured.clear()
        for packet in source.demux():
            if packet.dts is None or packet.size == 0:
                continue
            is_video = packet.stream.type == "video"
            packet.stream = streams[packet.stream.index]
            muxer.mux(packet)
            if is_video:
                writes.append(b"".join(captured))
                captured.clear()
    return header, writes


def micros_per_call(write: Callable[[bytes], object], writes: list[bytes]) -> float:
    """Microseconds of this thread's CPU per write, the pause after each included."""
    started = time.thread_time()
    for data in writes:
        write(data)
        time.sleep(PAUSE)
    return (time.thread_time() - started) / len(writes) * 1e6


def plain_send(writes: list[bytes]) -> float:
    """The same bytes, one ``sendall`` each, to a child process that only reads."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        reader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import socket; s = socket.create_connection(('127.0.0.1', {port}))\n"
                "while s.recv(1 << 16): pass",
            ]
        )
        connection, _ = listener.accept()
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cost = micros_per_call(connection.sendall, writes)
        reader.wait(timeout=10)
    return cost


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room", hls=False) as room:
        clip = make_clip(Path(tmp) / "clip.mp4", seconds=args.seconds, size=args.size)
        header, writes = frame_writes(clip)
        pause = micros_per_call(lambda data: None, writes)
        rows = []
        # roomcast's client twice: with TRTC's chunk size (the default) and with 4096.
        for client, chunk in (("ffmpeg", CHUNK_SIZE), ("roomcast", CHUNK_SIZE), ("roomcast", 4096)):
            url = f"{room.rtmp_base}/bench_{client}_{chunk}"
            connection = connect_room(url, 5, client, chunk_size=chunk)
            name = f"{client}'s RTMP client" + (
                f", chunks of {chunk}" if client == "roomcast" else ""
            )
            try:
                connection.write(header)
                rows.append((name, micros_per_call(connection.write, writes)))
            finally:
                connection.close()
        rows.append(("plain send, same bytes", plain_send(writes)))
    size = sum(map(len, writes)) / len(writes)
    print(f"{len(writes)} writes of {size:.0f} bytes on average ({args.size}, 30 fps)")
    print("| writer | CPU per write, µs |\n|---|---|")
    for name, micros in rows:
        print(f"| {name} | {micros - pause:.1f} |")
    ffmpeg, ours, big = (micros - pause for _, micros in rows[:3])
    ratio = f"{ours / ffmpeg:.2f}x ({big / ffmpeg:.2f}x in chunks of 4096)"
    print(f"roomcast's client / FFmpeg's: {ratio}")


if __name__ == "__main__":
    main()
