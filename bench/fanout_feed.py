"""What one more room costs a fan-out, per picture: the feed alone, real sends and free ones.

    .venv/bin/python -m bench.fanout_feed [--rooms 50] [--seconds 15] [--rounds 2]

A 720p30 clip's FLV tags are fed to :class:`pipeline.fanout.Fanout` at the stream's own
rhythm (a wait of one frame after each picture, as a live push waits for its source) into
1 room and into ``--rooms`` rooms of the local nginx-rtmp, in turn; the feeding thread's
CPU is counted around the feeds only. Reported per round: microseconds per picture at each
N and what each further room adds, once with real sends and once with sends that cost
nothing (each room's socket swapped for one that takes everything at once): the difference
is the kernel's work for a room's send, on loopback the room's receive included. No
reference command: bench.fanout compares the whole push with N ffmpeg relays; this is the
figure to move when working on a further room's cost, steady to a few tenths of a µs where
the whole push's ratio moves by a fifth between runs.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from devstack.room import LocalRoom
from pipeline.fanout import Fanout
from pipeline.flv import FLV_HEADER, tags
from pipeline.progress import Progress
from pipeline.spec import Target, Timeouts
from tests.media import make_clip

FRAME = 1 / 30
_VIDEO = 9


class FreeSocket:
    """A socket whose sends cost nothing and take everything; nothing arrives on it."""

    def send(self, data: bytes, flags: int = 0) -> int:
        """All of ``data``, at once."""
        return len(data)

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Nothing has arrived."""
        raise BlockingIOError


def flv_tags(path: Path) -> tuple[bytes, list[bytes]]:
    """An FLV file's header and its tags (each with its trailing size)."""
    data = path.read_bytes()
    rest = data[FLV_HEADER:]
    return data[:FLV_HEADER], [rest[pos:stop] for pos, _, _, stop in tags(rest)]


@contextmanager
def free_sends(fanout: Fanout) -> Iterator[None]:
    """Swap every room's socket for a :class:`FreeSocket`; the real ones back at the end."""
    connections = [p.connection for p in fanout._all()]  # noqa: SLF001 - a bench's look inside
    real = [c._socket for c in connections]  # type: ignore[union-attr]  # noqa: SLF001
    for connection in connections:
        connection._socket = FreeSocket()  # type: ignore[union-attr]  # noqa: SLF001
    try:
        yield
    finally:
        for connection, sock in zip(connections, real, strict=True):
            connection._socket = sock  # type: ignore[union-attr]  # noqa: SLF001


def cpu_per_picture(
    room: LocalRoom, flv: tuple[bytes, list[bytes]], n: int, seconds: float, free: bool, tag: str
) -> float:
    """Microseconds of the feeding thread's CPU per picture, fanned out to ``n`` rooms."""
    header, clip_tags = flv
    query = "sdkappid=1&userid=b&usersig=x"
    targets = [Target(f"r{i}", f"{room.rtmp_base}/feed{tag}_{i}?{query}") for i in range(n)]
    fanout = Fanout(targets, Timeouts(), Progress())
    fanout.connect(targets[0].url, 10.0)
    fanout.write(header + clip_tags[0])  # the metadata: once, not at every loop of the clip
    cpu, pictures = 0.0, 0
    try:
        with free_sends(fanout) if free else nullcontext():
            due = started = time.monotonic()
            media, index = clip_tags[1:], 0
            while time.monotonic() - started < seconds:
                data = media[index % len(media)]
                index += 1
                before = time.thread_time()
                fanout.write(data)
                cpu += time.thread_time() - before
                if data[0] & 0x1F == _VIDEO:
                    pictures += 1
                    due += FRAME
                    time.sleep(max(0.0, due - time.monotonic()))
    finally:
        fanout.close()
    return cpu / pictures * 1e6


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room", hls=False) as room:
        clip = make_clip(Path(tmp) / "clip.mp4", seconds=20, gop=60)
        flv_path = Path(tmp) / "clip.flv"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(clip)]
            + ["-c", "copy", "-f", "flv", str(flv_path)],
            check=True,
        )
        flv = flv_tags(flv_path)
        n = args.rooms
        print(f"µs of the feeding thread's CPU per 720p30 picture, {args.seconds:g} s a run")
        print(f"| round | sends | N = 1 | N = {n} | a further room |")
        print("|---|---|---|---|---|")
        for round_ in range(1, args.rounds + 1):
            for free in (False, True):
                kind = "free" if free else "real"
                one = cpu_per_picture(room, flv, 1, args.seconds, free, f"{round_}{kind}1")
                many = cpu_per_picture(room, flv, n, args.seconds, free, f"{round_}{kind}n")
                further = (many - one) / (n - 1)
                print(f"| {round_} | {kind} | {one:.1f} | {many:.1f} | {further:.2f} |")


if __name__ == "__main__":
    main()
