"""Delay and CPU of one push over WHIP against the same push over RTMP, side by side.

    .venv/bin/python -m bench.whip [--seconds 30] [--size 640x360]

The same numbered 25 fps clip (H.264 constrained baseline and AAC, so both paths remux the
pictures) is pushed twice on loopback, in turn: into the local nginx-rtmp room, watched by an
RTMP viewer that decodes each picture (tests/viewer.py), and over WHIP into an aiortc
endpoint that does the same (tests/whipserver.py). The push runs in a process of its own
(``--push``), which notes when each picture leaves roomcast: when its FLV tag is handed to
the room connection (for WHIP, to the WHIP publisher, which sends it as RTP). Reported:

- delay, from a picture leaving roomcast to its decoding at the viewer (p50, p95, max; the
  issue's target over WHIP: p95 < 200 ms), over the pictures after the first second;
- CPU of the push, its WHIP publisher included, in share of a core over its run.

With ``--drop S``, the room drops the publish S seconds after the viewer's first picture
(nginx-rtmp's control drop; the WHIP endpoint stops the session's transport without a
goodbye), and the push replaces it: reported instead is the viewer's longest wait between
two pictures, and the pictures it saw of all those sent.

Both clocks are CLOCK_MONOTONIC, which every process on a machine shares.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from devstack.room import LocalRoom
from tests.media import make_numbered_clip
from tests.viewer import FrameNumberViewer
from tests.whipserver import whip_server

from .concurrency import percentile
from .cpu_per_push import REPO

FPS = 25


def _push(source: str, target: str, log: Path) -> None:
    """``--push``: push ``source`` into ``target``, noting when each picture leaves."""
    from pipeline import Control, PushSpec, push  # noqa: PLC0415 - the child's own work
    from pipeline.sink import connect_room  # noqa: PLC0415

    sent: dict[int, float] = {}

    class Noted:
        """The room connection, noting each picture's FLV timestamp as it is handed on."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def write(self, data: bytes) -> int:
            now = time.monotonic()
            pos = 0
            while pos + 11 <= len(data):  # the sink hands whole tags on a remuxed push
                size = int.from_bytes(data[pos + 1 : pos + 4], "big")
                if data[pos] & 0x1F == 9 and len(data) > pos + 12 and data[pos + 12] == 1:
                    stamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
                    sent.setdefault(round(stamp * FPS / 1000), now)
                pos += 11 + size + 4
            return int(self.inner.write(data))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    def connect(url: str, timeout: float) -> Noted:
        return Noted(connect_room(url, timeout))

    spec = PushSpec(source=source, target=target, shared_sender=False)
    with Control() as control:
        result = push(spec, control, connect=connect)
    log.write_text(json.dumps({"outcome": result.outcome.value, "sent": sent}))


def _run(
    source: str,
    target: str,
    log: Path,
    drop: Callable[[], None] | None = None,
    at: float = 0,
    seen: Callable[[], bool] = lambda: True,
) -> float:
    """Run one push in a process of its own; the share of a core it (and its children) used.
    ``drop``: called ``at`` seconds after the viewer has ``seen`` a picture, to drop the
    publish from the room's side (never while it is being set up: a busy machine may take
    seconds to start a push)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.whip", "--push", source, target, str(log)],
        cwd=REPO,
    )
    done = threading.Event()
    if drop is not None:
        threading.Thread(target=_drop_later, args=(drop, at, seen, done), daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    return (usage.ru_utime + usage.ru_stime) / elapsed


def _drop_later(
    drop: Callable[[], None], at: float, seen: Callable[[], bool], done: threading.Event
) -> None:
    while not seen():
        if done.wait(0.05):
            return
    if not done.wait(at):
        drop()


def _delays(log: Path, numbers: list[int], arrivals: list[float]) -> list[float]:
    sent = {int(k): v for k, v in json.loads(log.read_text())["sent"].items()}
    return [
        arrival - sent[number]
        for number, arrival in zip(numbers, arrivals, strict=True)
        if number >= FPS and number in sent
    ]


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--size", default="640x360")
    parser.add_argument(
        "--drop", type=float, help="drop the publish this many seconds after the first picture"
    )
    parser.add_argument("--push", nargs=3, metavar=("SOURCE", "TARGET", "LOG"))
    args = parser.parse_args()
    if args.push:
        _push(args.push[0], args.push[1], Path(args.push[2]))
        return
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room") as room:
        room.media_dir.mkdir(parents=True, exist_ok=True)
        name = f"whip_bench_{args.seconds}_{args.size}.mp4"
        make_numbered_clip(
            room.media_dir / name,
            seconds=args.seconds,
            fps=FPS,
            size=(width, height),
            h264_profile="baseline",
        )
        source = room.media_url(name)
        rows = []
        viewer = FrameNumberViewer(room.play_url("bench_rtmp"), idle=3.0)
        viewer.start()
        time.sleep(0.5)
        log = Path(tmp) / "rtmp.json"
        target = f"{room.rtmp_base}/bench_rtmp?sdkappid=1&userid=b&usersig=x"
        drop = partial(room.drop_publisher, "bench_rtmp")
        cpu = _run(source, target, log, drop, args.drop or 0, lambda: bool(viewer.numbers))
        viewer.join(10)
        seen = [(viewer.numbers, viewer.arrivals)]
        rows.append(
            ("RTMP (nginx-rtmp, FFmpeg viewer)", cpu, _delays(log, viewer.numbers, viewer.arrivals))
        )
        with whip_server() as server:
            log = Path(tmp) / "whip.json"
            from pipeline.whip import whip_url  # noqa: PLC0415

            drop = partial(server.drop, "bench")

            def pictured() -> bool:
                return any(s.numbers for s in server.sessions if s.stream == "bench")

            target = whip_url(server.url("bench"))
            cpu = _run(source, target, log, drop, args.drop or 0, pictured)
            sessions = [s for s in server.sessions if s.stream == "bench"]
            for session in sessions:
                session.ended.wait(10)
            numbers = [n for session in sessions for n in session.numbers]
            arrivals = [a for session in sessions for a in session.arrivals]
            seen.append((numbers, arrivals))
            rows.append(("WHIP (aiortc endpoint)", cpu, _delays(log, numbers, arrivals)))
    if args.drop:
        _print_drops(args, [label for label, _, _ in rows], seen)
        return
    print(f"one {args.size} {FPS} fps push of {args.seconds} s, remuxed, on loopback")
    print("| path | push CPU (its publisher too) | pictures | delay p50 | p95 | max |")
    print("|---|---|---|---|---|---|")
    for label, cpu, delays in rows:
        ms = [d * 1000 for d in delays]
        print(
            f"| {label} | {cpu:.1%} | {len(ms)} | {percentile(ms, 50):.0f} ms | "
            f"{percentile(ms, 95):.0f} ms | {max(ms):.0f} ms |"
        )


def _print_drops(
    args: argparse.Namespace, labels: list[str], seen: list[tuple[list[int], list[float]]]
) -> None:
    print(
        f"one {args.size} {FPS} fps push of {args.seconds} s, remuxed, on loopback, "
        f"its publish dropped by the room {args.drop:g} s after the first picture"
    )
    print(
        "| path | longest wait between pictures at the viewer | until a keyframe's picture "
        "| pictures seen / sent |"
    )
    print("|---|---|---|---|")
    for label, (numbers, arrivals) in zip(labels, seen, strict=True):
        waits = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        longest = clean = "-"
        if waits:
            gap = waits.index(max(waits))
            longest = f"{waits[gap] * 1000:.0f} ms"
            # A player that kept its decoder across the drop (RTMP) shows the pictures
            # after it at once, though they refer to pictures it never got; a clean one
            # comes with the next keyframe (one a second: every FPS-th number).
            after = [i for i in range(gap + 1, len(numbers)) if numbers[i] % FPS == 0]
            if after:
                clean = f"{(arrivals[after[0]] - arrivals[gap]) * 1000:.0f} ms"
        print(f"| {label} | {longest} | {clean} | {len(set(numbers))} / {args.seconds * FPS} |")


if __name__ == "__main__":
    main()
