"""CPU of a switchable classroom push: re-encoded as it plays, recorded on first play, and
remuxed from prepared renditions, next to a plain remux push and to ffmpeg, in one run.

    .venv/bin/python -m bench.classroom [--seconds 60] [--every 10] [--runs 3]
        [--size 1280x720]

The clips: three 720p30 H.264 clips (B-frames, high profile: a teacher's recordings as a
phone or an editor makes them). Each push plays clip 1 and switches to the next clip every
``--every`` seconds, for ``--seconds``, into the local nginx-rtmp room in real time:

- ``today``: renditions off, every clip re-encoded as it plays;
- ``cold``: an empty cache, the first play of each clip recorded as its rendition;
- ``prepared``: every clip prepared before (not counted), remuxed;
- ``plain remux``: a non-switchable push of a rendition (what the room accepts as it is);
- ``2nd B-frames``: a non-switchable push of clip 1 itself, whose rendition is cached;
- ``ffmpeg copy`` / ``ffmpeg x264``: ``ffmpeg -re`` remuxing the rendition, and
  re-encoding clip 1 with roomcast's x264 settings: the command line doing the same job.

CPU is user+system seconds of each process, less the Python start-up (measured apart).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from devstack.room import LocalRoom
from pipeline import OutputProfile, Timeouts
from pipeline.identity import source_identity
from pipeline.rendition_cache import RenditionCache
from pipeline.renditions import format_of, prepare
from pipeline.source import open_source
from tests.media import make_clip

from .cpu_per_push import X264, cost_of

CLIPS = 3


def prepare_all(urls: list[str], cache: RenditionCache) -> list[Path]:
    """Every clip's rendition in the format of a push that starts with the first."""
    first = open_source(urls[0], Timeouts())
    try:
        fmt = format_of(first, OutputProfile())
    finally:
        first.close()
    paths = []
    for url in urls:
        identity = source_identity(url, 10)
        source = open_source(url, Timeouts())
        try:
            paths.append(prepare(source, cache, OutputProfile(), identity, fmt=fmt).path)
        finally:
            source.close()
    return paths


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between switches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room") as room:
        room.media_dir.mkdir(parents=True, exist_ok=True)
        urls = []
        for n in range(1, CLIPS + 1):
            clip = room.media_dir / f"lesson{n}.mp4"
            make_clip(clip, seconds=args.seconds, size=args.size, bframes=3, h264_profile="high")
            urls.append(room.media_url(clip.name))
        prepared = Path(tmp) / "prepared"
        renditions = prepare_all(urls, RenditionCache(prepared, 1 << 34))
        # The rendition served over HTTP, for the plain remux push and ffmpeg's copy.
        served = room.media_dir / "rendition.mp4"
        served.write_bytes(renditions[0].read_bytes())
        startup = statistics.median(
            cost_of([sys.executable, "-c", "import pipeline"]).cpu for _ in range(args.runs)
        )

        def classroom(renditions_dir: str | None, name: str) -> list[str]:
            cmd = [sys.executable, "-m", "bench.push_one", urls[0], target(name)]
            cmd += ["--switch-every", str(args.every), "--clips", *urls]
            cmd += ["--seconds", str(args.seconds)]
            return cmd + (["--renditions", renditions_dir] if renditions_dir else [])

        def target(name: str) -> str:
            return f"{room.rtmp_base}/bench_{name}?sdkappid=1&userid=b&usersig=x"

        ffmpeg = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-t", str(args.seconds)]
        jobs = {
            "today": lambda run: classroom(None, f"today{run}"),
            "cold": lambda run: classroom(str(Path(tmp) / f"cold{run}"), f"cold{run}"),
            "prepared": lambda run: classroom(str(prepared), f"prepared{run}"),
            "plain remux": lambda run: [
                *(sys.executable, "-m", "bench.push_one", room.media_url(served.name)),
                target(f"plain{run}"),
            ],
            "2nd B-frames": lambda run: [
                *(sys.executable, "-m", "bench.push_one", urls[0], target(f"second{run}")),
                *("--renditions", str(prepared)),
            ],
            "ffmpeg copy": lambda run: [
                *ffmpeg,
                "-i",
                room.media_url(served.name),
                "-c",
                "copy",
                "-f",
                "flv",
                target(f"ffcopy{run}"),
            ],  # fmt: skip
            "ffmpeg x264": lambda run: [
                *ffmpeg,
                "-i",
                urls[0],
                *X264,
                "-f",
                "flv",
                target(f"ffx264{run}"),
            ],  # fmt: skip
        }
        cpu = {name: [] for name in jobs}
        for run in range(args.runs):
            for name, command in jobs.items():
                spent = cost_of(command(run)).cpu
                cpu[name].append(spent if name.startswith("ffmpeg") else max(spent - startup, 0))
        print(
            f"{args.seconds:g} s switchable push of {CLIPS} {args.size} 30 fps clips, a switch "
            f"every {args.every:g} s; {args.runs} runs, median CPU seconds (user+sys), "
            f"roomcast less its start-up ({startup:.2f} s)"
        )
        cost = {name: statistics.median(values) for name, values in cpu.items()}
        for name, value in cost.items():
            print(f"{name:<12} {value:>7.2f}  core share {value / args.seconds:>6.1%}")
        plain = cost["plain remux"] or 1e-9
        print(f"prepared / plain remux: {cost['prepared'] / plain:.2f}x (target ≤ 1.5x)")
        print(f"cold / today:           {cost['cold'] / cost['today']:.2f}x (target ≤ 1.1x)")
        print(f"prepared / today:       {cost['prepared'] / cost['today']:.3f}x")
        second = cost["2nd B-frames"] / plain
        print(f"2nd plain push of a B-frame file / plain remux: {second:.2f}x (target ≤ 1.1x)")
        print(f"plain remux / ffmpeg copy: {plain / cost['ffmpeg copy']:.2f}x")
        print(f"today / ffmpeg x264:       {cost['today'] / cost['ffmpeg x264']:.2f}x")


if __name__ == "__main__":
    main()
