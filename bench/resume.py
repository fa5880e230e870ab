"""Resume accuracy: where a stopped push picks up again, seen by a viewer, next to ffmpeg.

    .venv/bin/python -m bench.resume [--trials 6] [--seconds 30]

Two clips whose every frame shows its own number (``tests.media``): one that roomcast
remuxes (H.264 without B-frames, 1 s GOP) and one that it re-encodes (B-frames, 2 s GOP).
Each trial pushes a clip with ``Redis=true`` into a room of its own, stops it through the
API once the position it reports has passed a point (a different point in each trial), and
submits the same job again. A viewer in the room decodes each of the two pushes. Per clip:

* seam: the first frame number after the resume − (the last frame number seen before the
  stop + 1). 0 is exact; below 0 the room sees frames again; above 0 frames were skipped.
  Given in frames (25 fps: 40 ms each);
* continues: the second submit → the frame after the last one seen before the stop reaches
  the room (its media time at the viewer, as ``bench.concurrency`` measures start), p50 /
  max: frames seen again count as waiting time.

The reference is the ffmpeg command line doing the same job as well as a script can: run
``ffmpeg -re -i clip … -progress pipe:1``, send SIGINT once its ``out_time`` has passed the
point, and start ``ffmpeg -re -ss <its last out_time> -i clip …`` (``-c copy`` for the
remuxed clip; libx264 and AAC for the other).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from bench.service import Service, push_job, running_service
from devstack.room import players_at
from tests.media import make_numbered_clip
from tests.viewer import FrameNumberViewer

FPS = 25
#: Seconds the resumed push runs: the seam, and enough steady frames to time it.
AFTER = 4.0
#: A viewer ends this long after the last frame: the publisher is gone by then.
IDLE = 1.5


@dataclass(frozen=True)
class Clip:
    """One source file and how it is pushed."""

    label: str
    name: str
    gop: int
    bframes: int

    @property
    def remuxed(self) -> bool:
        """roomcast remuxes H.264 without B-frames; it re-encodes the rest."""
        return self.bframes == 0


CLIPS = (
    Clip("remuxed (1 s GOP)", "numbered_remux.mp4", gop=FPS, bframes=0),
    Clip("re-encoded (B-frames, 2 s GOP)", "numbered_bframes.mp4", gop=2 * FPS, bframes=2),
)


@dataclass
class Trial:
    """One stop and resume, as the viewers saw it."""

    seam: int | None = None
    continues: float | None = None
    error: str | None = None


@dataclass
class Row:
    """The trials of one side on one clip."""

    clip: Clip
    side: str
    trials: list[Trial] = field(default_factory=list)

    def line(self) -> str:
        """A markdown table row."""
        seams = [t.seam for t in self.trials if t.seam is not None]
        waits = [t.continues for t in self.trials if t.continues is not None]
        exact = sum(1 for s in seams if s == 0)
        spread = f"{min(seams)} / {statistics.median(seams):g} / {max(seams)}" if seams else "-"
        worst = f"{max(abs(s) for s in seams) * 1000 / FPS:.0f}" if seams else "-"
        start = f"{1000 * statistics.median(waits):.0f} / {1000 * max(waits):.0f}" if waits else "-"
        return (
            f"| {self.clip.label} | {self.side} | {len(seams)}/{len(self.trials)} | {exact} "
            f"| {spread} | {worst} | {start} |"
        )


HEADER = (
    "| clip | side | trials measured | exact seams | seam frames min / median / max "
    "| worst seam ms | continues p50 / max ms |\n|---|---|---|---|---|---|---|"
)


def stop_points(trials: int, seconds: float) -> list[float]:
    """Where the trials stop: spread over the clip, off the GOP boundaries."""
    span = seconds - AFTER - 6.0
    return [3.0 + span * (i + 0.37) / trials for i in range(trials)]


def watching(service: Service, room: str) -> FrameNumberViewer:
    """A viewer in ``room``, playing before the publisher comes (so it sees frame one)."""
    viewer = FrameNumberViewer(service.room.play_url(room), idle=IDLE)
    viewer.start()
    deadline = time.monotonic() + 10
    while players_at(service.room.stat_url, room) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the viewer of {room} did not join")
        time.sleep(0.02)
    return viewer


def wait_until(position: Callable[[], float], point: float, timeout: float) -> None:
    """Poll ``position`` until it reaches ``point``."""
    deadline = time.monotonic() + timeout
    while position() < point:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the push did not reach {point:.1f} s")
        time.sleep(0.02)


def measured(before: FrameNumberViewer, after: FrameNumberViewer, sent: float) -> Trial:
    """The seam and the wait for new picture between two viewers' records."""
    for viewer in (before, after):
        viewer.join(15)
        if not viewer.numbers:
            return Trial(error=viewer.error or f"{viewer.url}: no frames")
    following = before.numbers[-1] + 1
    return Trial(seam=after.numbers[0] - following, continues=continued(after, following) - sent)


def continued(viewer: FrameNumberViewer, number: int) -> float:
    """When frame ``number`` reached the room: the median of arrival − media time over the
    frames from it on.

    Not that frame's own arrival: the viewer's stream analysis holds the first frames back
    (``bench.receiver.stream_start`` does the same with timestamps). Frames before it, seen
    again after a resume, are left out: ffmpeg sends them at once, not in real time.
    """
    return statistics.median(
        arrival - (n - number) / FPS
        for n, arrival in zip(viewer.numbers, viewer.arrivals, strict=True)
        if n >= number
    )


# --- the two sides ---------------------------------------------------------------------------


def roomcast_trial(service: Service, clip: Clip, room: str, point: float) -> Trial:
    """Push with Redis=true, stop through the API past ``point``, submit the job again."""
    api = service.api
    job = push_job(service.room.media_url(clip.name), room, Redis=True)
    before = watching(service, room)
    request_id = api.submit(**job)
    wait_until(
        lambda: float((api.status(request_id)["Progress"] or {}).get("Position", 0)),
        point,
        timeout=point + 30,
    )
    api.call("POST", f"/v1/pushes/{request_id}/stop")
    api.wait_state(request_id, {"stopped", "failed", "succeeded"}, timeout=15)
    before.join(15)
    after = watching(service, room)
    sent = time.monotonic()
    request_id = api.submit(**dict(job, MaxDuration=AFTER))
    final = api.wait_state(request_id, {"stopped", "failed", "succeeded"}, timeout=30)
    trial = measured(before, after, sent)
    if final["State"] == "failed":
        trial.error = str(final.get("Error"))
    return trial


class FfmpegPush:
    """One ``ffmpeg -re`` push of a clip, reading its ``-progress`` reports."""

    def __init__(self, source: str, target: str, clip: Clip, start: float | None = None):
        codecs = (
            ["-c", "copy"]
            if clip.remuxed
            else ["-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", str(2 * FPS),
                  "-c:a", "aac", "-ar", "48000"]
        )  # fmt: skip
        seek = ["-ss", f"{start:.6f}", "-t", f"{AFTER}"] if start is not None else []
        self.out_time = 0.0
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", *seek,
             "-i", source, *codecs, "-f", "flv", "-progress", "pipe:1",
             "-stats_period", "0.05", target],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, lines: IO[str]) -> None:
        for line in lines:
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                self.out_time = max(self.out_time, int(value) / 1e6)

    def stop(self) -> float:
        """SIGINT, as a script stops ffmpeg; the last ``out_time`` it reported."""
        self.proc.send_signal(2)
        self.wait()
        return self.out_time

    def wait(self) -> None:
        """Until ffmpeg has exited and its last report is read."""
        self.proc.wait(15)
        self._reader.join(5)


def ffmpeg_trial(service: Service, clip: Clip, room: str, point: float) -> Trial:
    """The same job with the ffmpeg command line: SIGINT past ``point``, then ``-ss``."""
    source = service.room.media_url(clip.name)
    target = f"{service.room.rtmp_base}/{room}?sdkappid=1400000001&userid=bench&usersig=x"
    before = watching(service, room)
    first = FfmpegPush(source, target, clip)
    wait_until(lambda: first.out_time, point, timeout=point + 30)
    resume_at = first.stop()
    before.join(15)
    after = watching(service, room)
    sent = time.monotonic()
    FfmpegPush(source, target, clip, start=resume_at).wait()
    return measured(before, after, sent)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Run the trials on both clips and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the clips")
    parser.add_argument("--no-reference", action="store_true", help="skip the ffmpeg side")
    args = parser.parse_args(argv)
    if args.seconds < AFTER + 8:
        parser.error(f"--seconds must be at least {AFTER + 8:g}")
    points = stop_points(args.trials, args.seconds)
    with running_service(workers=1, concurrency=2) as service:
        for clip in CLIPS:
            make_numbered_clip(
                service.room.media_dir / clip.name,
                seconds=args.seconds,
                fps=FPS,
                gop=clip.gop,
                bframes=clip.bframes,
            )
        print(
            f"{os.cpu_count()} CPUs; clips {args.seconds:g} s 320x240 {FPS} fps; stopped at "
            + ", ".join(f"{p:.2f}" for p in points)
            + " s",
            flush=True,
        )
        print(HEADER, flush=True)
        sides = [("roomcast", roomcast_trial)]
        if not args.no_reference:
            sides.append(("ffmpeg", ffmpeg_trial))
        for c, clip in enumerate(CLIPS):
            for side, trial in sides:
                row = Row(clip, side)
                for i, point in enumerate(points):
                    row.trials.append(trial(service, clip, f"{side[:2]}{c}_{i}", point))
                print(row.line(), flush=True)
                for t in row.trials:
                    if t.error:
                        print(f"    note: {t.error}", flush=True)
                print(
                    "    seams: " + " ".join(str(t.seam) for t in row.trials),
                    flush=True,
                )


if __name__ == "__main__":
    main()
