"""CPU of a fan-out into N WHIP rooms: the push and its WHIP publishers, per second of video.

    .venv/bin/python -m bench.whip_fanout [--rooms 1,4] [--seconds 20] [--size 640x360]
        [--repo PATH ...]

A clip WebRTC takes as it is (H.264 constrained baseline, AAC sound: the pictures are
remuxed, the sound becomes Opus), served by the local room's HTTP, is pushed by
``bench.push_one --fanout N`` into N sessions of an aiortc WHIP endpoint
(tests/whipserver.py, run in this process: its decoding is not counted). Counted: the push
process and every WHIP publisher it started, user and system CPU over the push's whole run
(start-up and the sessions' handshakes included), in share of a core per second of video.
``--repo``: run the push from each of these trees in turn (this one by default), to compare
two commits in one sitting. No reference command: the ffmpeg command line here has no WHIP
muxer (FFmpeg's is in PyAV's build).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from devstack.room import LocalRoom
from tests.media import make_clip
from tests.whipserver import whip_server

from .cpu_per_push import REPO


def push_cpu(repo: Path, clip: str, target: str, rooms: int) -> float:
    """CPU seconds of one fan-out push of ``clip`` into ``rooms`` WHIP rooms, its
    publishers included (they are its children, waited for before it ends)."""
    before = os.times()
    command = [sys.executable, "-m", "bench.push_one", clip, target, "--fanout", str(rooms)]
    subprocess.run(command, cwd=repo, check=True, stdout=subprocess.DEVNULL)
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", default="1,4")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--repo", nargs="*", type=Path, default=[REPO])
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalRoom(Path(tmp) / "room", hls=False) as room,  # serves the clip over HTTP
        whip_server() as server,
    ):
        room.media_dir.mkdir(parents=True, exist_ok=True)
        clip = room.media_dir / "clip.mp4"
        make_clip(clip, seconds=args.seconds, size=args.size, h264_profile="baseline")
        print(
            f"a {args.seconds:g} s {args.size} clip (pictures remuxed, AAC to Opus) into N "
            "WHIP rooms; share of a core per second of video, the push and its publishers"
        )
        print("| tree | " + " | ".join(f"N = {n}" for n in counts) + " |")
        print("|---|" + "---|" * len(counts))
        for i, repo in enumerate(args.repo):
            cells = []
            for n in counts:
                target = server.url(f"fan{n}_{i}")  # a session name of its own
                cpu = push_cpu(repo, room.media_url(clip.name), "whip+" + target, n)
                cells.append(f"{cpu / args.seconds:.1%}")
            print(f"| {repo} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
