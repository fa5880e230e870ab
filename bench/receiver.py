"""Viewers of the room: pull RTMP streams and note when each packet arrives.

    .venv/bin/python -m bench.receiver --out arrivals.json URL [URL ...]

Run as its own process (one thread per stream) so that the benchmark's other work does not
delay the arrival times it records. Each viewer may start before its stream is published:
nginx-rtmp holds the player until the publisher comes, so the first packet's arrival is the
first packet at the room. A viewer ends when its stream has been silent for ``--idle``
seconds. ``SIGTERM`` makes the process write what it has and exit.

The output is JSON: ``{url: {"first": t, "last": t, "video": [[arrival, dts_ms], ...],
"audio": n, "error": str | None}}`` with arrival times on ``time.monotonic()``'s clock,
which every process on the machine shares.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from types import FrameType

import av
import av.error


@dataclass
class Arrivals:
    """What one viewer saw."""

    video: list[tuple[float, int]] = field(default_factory=list)
    audio: int = 0
    first: float | None = None
    last: float | None = None
    error: str | None = None


def watch(url: str, arrivals: Arrivals, idle: float, wait: float, analyze: float = 1.0) -> None:
    """Pull ``url`` until it goes silent; record every packet's arrival."""
    try:
        # A viewer that joins between two keyframes gets audio first, and PyAV drops the
        # packets of a stream found after demuxing began: analyse a second, so that both
        # streams are found. Packets held by the analysis arrive late in this record, so
        # pacing is judged after the first two seconds and the start of a stream is taken
        # from the steady arrivals (see ``stream_start``), not from its first packet.
        container = av.open(
            url,
            options={"analyzeduration": str(int(analyze * 1_000_000))},
            timeout=(wait, idle),
        )
    except (av.error.FFmpegError, OSError) as exc:
        arrivals.error = f"open: {exc}"
        return
    try:
        for packet in container.demux():
            now = time.monotonic()
            if packet.size == 0 or packet.dts is None:
                continue
            if arrivals.first is None:
                arrivals.first = now
            arrivals.last = now
            if packet.stream.type == "video":
                arrivals.video.append((now, int(packet.dts * packet.time_base * 1000)))
            else:
                arrivals.audio += 1
    except (av.error.FFmpegError, OSError) as exc:
        if arrivals.first is None:
            arrivals.error = f"read: {exc}"
    finally:
        container.close()


def pacing_errors(video: list[tuple[float, int]], skip: float = 0.0) -> list[float]:
    """|arrival − timestamp| (seconds) of each frame, against the stream's median offset.

    The offset (when media time 0 was on the wall clock) is the median of arrival − dts, so
    a constant delay is not an error and early and late frames count alike. Frames within
    ``skip`` seconds of media time from the start are left out (start-up).
    """
    if not video:
        return []
    offset = stream_start(video)
    assert offset is not None
    first = video[0][1]
    return [
        abs(arrival - dts / 1000 - offset) for arrival, dts in video if dts - first >= skip * 1000
    ]


def stream_start(video: list[tuple[float, int]]) -> float | None:
    """When media time 0 was on the wall clock: the median of arrival − timestamp."""
    if not video:
        return None
    return statistics.median(arrival - dts / 1000 for arrival, dts in video)


def main() -> None:
    """Watch the URLs; write the arrivals as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--idle", type=float, default=4.0, help="silence that ends a viewer")
    parser.add_argument("--wait", type=float, default=300.0, help="longest wait for a publish")
    parser.add_argument(
        "--analyze", type=float, default=1.0, help="seconds analysed (a stream joined midway)"
    )
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    seen = {url: Arrivals() for url in args.urls}
    threads = [
        threading.Thread(
            target=watch, args=(url, seen[url], args.idle, args.wait, args.analyze), daemon=True
        )
        for url in args.urls
    ]

    def write() -> None:
        with open(args.out, "w") as out:
            json.dump({url: asdict(a) for url, a in seen.items()}, out)

    def on_term(signum: int, frame: FrameType | None) -> None:
        write()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    for thread in threads:
        thread.join()
    write()


if __name__ == "__main__":
    main()
