"""CPU per push: roomcast's pipeline next to the ffmpeg command line, same clip, same run.

    .venv/bin/python -m bench.cpu_per_push [--seconds 60] [--runs 3] [--size 1280x720]
        [--jobs remux,re-encode] [--batch SECONDS] [--rtmp-client roomcast|ffmpeg]

Both push a 720p30 clip from the local room's HTTP server into the local nginx-rtmp room
in real time (``ffmpeg -re``), once remuxing (``-c copy``) a clip the room accepts, once
re-encoding a clip with B-frames (libx264 veryfast, zerolatency, no B-frames, 2 s GOP,
2.5 Mb/s; audio copied), and reports user+system CPU seconds of each process and the ratio,
and the TCP segments per second each sent to the room (read with ``ss`` from iproute2).
``--batch`` sets roomcast's send batch (``ROOMCAST_PACE_BATCH_SECONDS``; default: the
pipeline's), ``--rtmp-client`` its RTMP client (``ROOMCAST_RTMP_CLIENT``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.room import LocalRoom
from pipeline.sink import RTMP_CLIENTS
from tests.media import make_clip
from worker.metrics import stat_fields

REPO = Path(__file__).resolve().parent.parent
#: ffmpeg's re-encode: the x264 settings roomcast's re-encode uses.
X264 = (
    *("-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0"),
    *("-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-b:v", "2500k", "-c:a", "copy"),
)


@dataclass(frozen=True)
class Job:
    """What both sides are asked to do: a clip, made with these options, and ffmpeg's
    arguments for the same work."""

    clip: str
    clip_options: dict[str, Any]
    ffmpeg_args: tuple[str, ...]


JOBS = {
    "remux": Job("compat.mp4", {}, ("-c", "copy")),
    "re-encode": Job("bframes.mp4", {"bframes": 3, "h264_profile": "high"}, X264),
}

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """What one command cost."""

    cpu: float  #: user+system CPU seconds
    wall: float  #: seconds
    segments: float | None  #: TCP segments a second to the watched port (None without ss)
    #: Cores used from ``steady_after`` seconds to the last look before it ended (None
    #: unless asked): a worker's cost per push, without a process's start-up and exit.
    steady: float | None = None


def segments_to(port: int) -> int | None:
    """TCP segments sent so far on this machine's connections to local ``port``."""
    try:
        listing = subprocess.run(
            ["ss", "-tinH", "dst", f"127.0.0.1:{port}"], capture_output=True, text=True
        ).stdout
    except OSError:  # no iproute2
        return None
    return sum(int(count) for count in re.findall(r"\bsegs_out:(\d+)", listing))


def cost_of(cmd: list[str], port: int | None = None, steady_after: float | None = None) -> Run:
    """Run a command; what it cost (and its segments to local ``port``, if given; and its
    steady CPU share from ``steady_after`` seconds on, if given)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # Looked at while it runs: the connection is gone with the process.
    seen: list[tuple[float, int | None]] = []
    used: list[tuple[float, float]] = []  # (seconds since start, CPU seconds so far)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            at = time.monotonic() - start
            if port is not None:
                seen.append((at, segments_to(port)))
            if steady_after is not None and at >= steady_after:
                cpu = _cpu_of(proc.pid)
                if cpu is not None:
                    used.append((at, cpu))

    watcher = threading.Thread(target=watch, daemon=True)
    if port is not None or steady_after is not None:
        watcher.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    finally:
        done.set()
        if watcher.is_alive():
            watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read().decode()[-2000:]}")
    steady = None
    if len(used) >= 2:
        (t0, c0), (t1, c1) = used[0], used[-1]
        steady = (c1 - c0) / (t1 - t0)
    return Run(usage.ru_utime + usage.ru_stime, wall, rate(seen), steady)


def _cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a running process (its ended threads included)."""
    fields = stat_fields(f"/proc/{pid}/stat")
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rate(seen: list[tuple[float, int | None]]) -> float | None:
    """Segments a second between the first and the last look that saw the connection.

    Not since the process started: Python takes longer than ffmpeg to start and connect.
    """
    counted = [(at, count) for at, count in seen if count]
    if len(counted) < 2 or counted[-1][0] <= counted[0][0]:
        return None
    (first_at, first), (last_at, last) = counted[0], counted[-1]
    return (last - first) / (last_at - first_at)


def middle(values: list[float | None], digits: int) -> str:
    """The median of one measure over the runs, for the table ("n/a" where not measured)."""
    measured = [value for value in values if value is not None]
    if len(measured) < len(values):
        return "n/a"
    return f"{statistics.median(measured):.{digits}f}"


def job_names(text: str) -> list[str]:
    """``--jobs``: a comma-separated choice among :data:`JOBS` (a typo must not skip one)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in JOBS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown job {', '.join(unknown) or repr(text)}: choose from {', '.join(JOBS)}"
        )
    return names


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument(
        "--jobs", type=job_names, default=list(JOBS), help=f"comma-separated: {','.join(JOBS)}"
    )
    parser.add_argument("--batch", type=float, default=None, help="roomcast's send batch")
    parser.add_argument(
        "--rtmp-client", choices=RTMP_CLIENTS, default=None, help="roomcast's RTMP client"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room") as room:
        room.media_dir.mkdir(parents=True, exist_ok=True)
        jobs = {name: job for name, job in JOBS.items() if name in args.jobs}
        for job in jobs.values():
            make_clip(
                room.media_dir / job.clip, seconds=args.seconds, size=args.size, **job.clip_options
            )
        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i"]
        # A worker pays for the interpreter and the imports once, not per push: measured
        # apart so the table shows both the one-shot process and the per-push cost.
        startup = statistics.median(
            cost_of([sys.executable, "-c", "import pipeline.pushing"]).cpu for _ in range(args.runs)
        )
        print(
            f"{args.seconds:g} s {args.size} 30 fps clip, {args.runs} runs each, "
            "CPU seconds (user+sys)"
        )
        print(f"roomcast process start-up (python + imports): {startup:.2f} s")
        print(
            f"{'job':<10} {'roomcast':>10} {'per push':>9} {'ffmpeg':>8} {'ratio':>7} "
            f"{'per-push ratio':>15}  wall r/f  TCP segments/s r/f"
        )
        for name, job in jobs.items():
            ours, theirs = [], []
            for run in range(args.runs):
                src = room.media_url(job.clip)
                url = f"{room.rtmp_base}/bench_{name}_{run}?sdkappid=1&userid=b&usersig=x"
                options = [] if args.batch is None else ["--batch", str(args.batch)]
                if args.rtmp_client is not None:
                    options += ["--rtmp-client", args.rtmp_client]
                push = [sys.executable, "-m", "bench.push_one", src, url, *options]
                reference = [*ffmpeg, src, *job.ffmpeg_args, "-f", "flv", url + "f"]
                ours.append(cost_of(push, room.rtmp_port))
                theirs.append(cost_of(reference, room.rtmp_port))
            r = statistics.median(run.cpu for run in ours)
            f = statistics.median(run.cpu for run in theirs)
            per_push = max(r - startup, 0.0)
            print(
                f"{name:<10} {r:>10.2f} {per_push:>9.2f} {f:>8.2f} {r / f:>6.2f}x "
                f"{per_push / f:>14.2f}x  "
                f"{middle([r.wall for r in ours], 1)}/{middle([r.wall for r in theirs], 1)}  "
                f"{middle([r.segments for r in ours], 0):>8}/"
                f"{middle([r.segments for r in theirs], 0)}  core share per push: "
                f"roomcast {per_push / args.seconds:.1%}, ffmpeg {f / args.seconds:.1%}"
            )


if __name__ == "__main__":
    main()
