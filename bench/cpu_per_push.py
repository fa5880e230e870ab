"""CPU per push: roomcast's pipeline next to the ffmpeg command line, same clip, same run.

    .venv/bin/python -m bench.cpu_per_push [--seconds 60] [--runs 3] [--size 1280x720]
        [--jobs remux,re-encode] [--batch SECONDS]

Both push a 720p30 clip from the local room's HTTP server into the local nginx-rtmp room
in real time (``ffmpeg -re``), once remuxing (``-c copy``) a clip the room accepts, once
re-encoding a clip with B-frames (libx264 veryfast, zerolatency, no B-frames, 2 s GOP,
2.5 Mb/s; audio copied), and reports user+system CPU seconds of each process and the ratio.
``--batch`` sets roomcast's send batch (``ROOMCAST_PACE_BATCH_SECONDS``; default: the
pipeline's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devstack.room import LocalRoom
from tests.media import make_clip

REPO = Path(__file__).resolve().parent.parent


def cpu_of(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (CPU seconds user+sys, wall seconds)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--jobs", default="remux,re-encode", help="comma-separated")
    parser.add_argument("--batch", type=float, default=None, help="roomcast's send batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room") as room:
        room.media_dir.mkdir(parents=True, exist_ok=True)
        make_clip(room.media_dir / "compat.mp4", seconds=args.seconds, size=args.size)
        make_clip(
            room.media_dir / "bframes.mp4",
            seconds=args.seconds,
            bframes=3,
            h264_profile="high",
            size=args.size,
        )
        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i"]
        x264 = [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-bf",
            "0",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "2500k",
            "-c:a",
            "copy",
        ]
        cases = {
            "remux": ("compat.mp4", ["-c", "copy"]),
            "re-encode": ("bframes.mp4", x264),
        }
        # A worker pays for the interpreter and the imports once, not per push: measured
        # apart so the table shows both the one-shot process and the per-push cost.
        startup = statistics.median(
            cpu_of([sys.executable, "-c", "import pipeline"])[0] for _ in range(args.runs)
        )
        print(
            f"{args.seconds:g} s {args.size} 30 fps clip, {args.runs} runs each, "
            "CPU seconds (user+sys)"
        )
        print(f"roomcast process start-up (python + imports): {startup:.2f} s")
        print(
            f"{'job':<10} {'roomcast':>10} {'per push':>9} {'ffmpeg':>8} {'ratio':>7} "
            f"{'per-push ratio':>15}  wall r/f"
        )
        for name, (clip, ffargs) in cases.items():
            if name not in args.jobs.split(","):
                continue
            ours, theirs, walls = [], [], []
            for run in range(args.runs):
                src = room.media_url(clip)
                url = f"{room.rtmp_base}/bench_{name}_{run}?sdkappid=1&userid=b&usersig=x"
                batch = [] if args.batch is None else [str(args.batch)]
                cpu_r, wall_r = cpu_of([sys.executable, "-m", "bench.push_one", src, url, *batch])
                cpu_f, wall_f = cpu_of([*ffmpeg, src, *ffargs, "-f", "flv", url + "f"])
                ours.append(cpu_r)
                theirs.append(cpu_f)
                walls.append((wall_r, wall_f))
            r, f = statistics.median(ours), statistics.median(theirs)
            wr, wf = walls[len(walls) // 2]
            per_push = max(r - startup, 0.0)
            print(
                f"{name:<10} {r:>10.2f} {per_push:>9.2f} {f:>8.2f} {r / f:>6.2f}x "
                f"{per_push / f:>14.2f}x  {wr:.1f}/{wf:.1f}  core share per push: "
                f"roomcast {per_push / args.seconds:.1%}, ffmpeg {f / args.seconds:.1%}"
            )


if __name__ == "__main__":
    main()
