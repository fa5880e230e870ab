"""CPU of a switchable classroom push: re-encoded as it plays, recorded on first play, and
remuxed from prepared renditions, next to a plain remux push and to ffmpeg, in one run.

    .venv/bin/python -m bench.classroom [--seconds 60] [--every 10] [--runs 3]
        [--size 1280x720] [--jobs prepared,plain remux,...]

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

Two measures of each: ``whole``, the user+system seconds of the process, less the Python
start-up (measured apart); and ``steady``, the share of a core from :data:`STEADY_AFTER`
seconds to the end, switches included: what a push costs a worker that is already running
(a switchable push imports and opens more at its start than a plain one, which ``whole``
counts against it and a running worker pays once).
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
from pipeline.renditions import prepare
from pipeline.source import open_source
from tests.media import make_clip

from .cpu_per_push import X264, cost_of

#: Where the steady measure starts: past start-up, the first clip's open and a warm-up.
STEADY_AFTER = 5.0

CLIPS = 3


def prepare_all(urls: list[str], cache: RenditionCache) -> list[Path]:
    """Every clip's rendition in the format of a push that starts with the first."""
    paths: list[Path] = []
    fmt = None
    for url in urls:
        identity = source_identity(url, 10)
        source = open_source(url, Timeouts())
        try:
            done = prepare(source, cache, OutputProfile(), identity, fmt=fmt)
        finally:
            source.close()
        paths.append(done.path)
        fmt = done.format
    return paths


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between switches")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--jobs", default="", help="comma-separated names: only these jobs")
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
            cost_of([sys.executable, "-c", "import pipeline.pushing"]).cpu for _ in range(args.runs)
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
        if args.jobs:
            jobs = {name: jobs[name] for name in args.jobs.split(",")}
        cpu: dict[str, list[float]] = {name: [] for name in jobs}
        steady: dict[str, list[float]] = {name: [] for name in jobs}
        for run in range(args.runs):
            for name, command in jobs.items():
                spent = cost_of(command(run), steady_after=STEADY_AFTER)
                whole = spent.cpu if name.startswith("ffmpeg") else max(spent.cpu - startup, 0)
                cpu[name].append(whole)
                steady[name].append(spent.steady or 0.0)
        print(
            f"{args.seconds:g} s switchable push of {CLIPS} {args.size} 30 fps clips, a switch "
            f"every {args.every:g} s; {args.runs} runs, medians. whole: CPU seconds (user+sys) "
            f"of the process, roomcast less its start-up ({startup:.2f} s); steady: share of "
            f"a core from {STEADY_AFTER:g} s to the end (what a push costs a running worker)"
        )
        cost = {name: statistics.median(values) for name, values in cpu.items()}
        share = {name: statistics.median(values) for name, values in steady.items()}
        for name in jobs:
            print(
                f"{name:<12} whole {cost[name]:>7.2f} s  {cost[name] / args.seconds:>6.1%}"
                f"   steady {share[name]:>6.2%}"
            )
        for measure, of in (("whole", cost), ("steady", share)):
            _ratios(measure, of)


def _ratios(measure: str, of: dict[str, float]) -> None:
    """The targets' ratios, for the jobs that ran."""

    def ratio(a: str, b: str, target: str = "") -> None:
        if a in of and b in of and of[b]:
            print(f"{measure:>6}: {a} / {b}: {of[a] / of[b]:.2f}x {target}")

    ratio("prepared", "plain remux", "(target ≤ 1.5x)")
    ratio("cold", "today", "(target ≤ 1.1x)")
    ratio("prepared", "today")
    ratio("2nd B-frames", "plain remux", "(target ≤ 1.1x)")
    ratio("plain remux", "ffmpeg copy")
    ratio("today", "ffmpeg x264")


if __name__ == "__main__":
    main()
