"""What one wake-up of the shared sender costs in CPU, hot and after sleeping.

    .venv/bin/python -m bench.wake_cost [--wakes 300]

A lone push's sender wakes once per video frame (30 times a second); its CPU per push is
mostly those wake-ups. This prints, in microseconds of process CPU per wake-up: a timed
wait on a plain lock and on a ``threading.Condition`` (the wake itself), a sender pass run
hot in a loop, and the same pass after each 33 ms wait (what a push pays). No reference
command: ffmpeg's own per-packet sleep is inside its process (bench.cpu_per_push compares
the totals).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from pipeline.progress import Progress, ProgressMeter
from pipeline.sender import Lane, Queued

FRAME = 1 / 30


def cpu_per_call(action: Callable[[], None], calls: int) -> float:
    """Microseconds of process CPU per call of ``action``."""
    started = time.process_time()
    for _ in range(calls):
        action()
    return (time.process_time() - started) / calls * 1e6


def sender_pass() -> Callable[[], None]:
    """One packet queued and written by a lane to a no-op room, as the sender does."""
    progress = Progress()
    lane = Lane(lambda data: None, progress, ProgressMeter(progress, None), lambda: None)
    packet = Queued(0.0, b"x" * 1000, 0.0, None, True)

    def run() -> None:
        lane.add(packet)
        lane.send_due(1.0, 1.1)

    return run


def main() -> None:
    """Print the four figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=300)
    args = parser.parse_args()
    bell = threading.Lock()
    bell.acquire()
    condition = threading.Condition()
    run = sender_pass()

    def condition_wait() -> None:
        with condition:
            condition.wait(FRAME)

    def wake_and_pass() -> None:
        bell.acquire(timeout=FRAME)
        run()

    rows = [
        (
            "timed wait on a lock, 33 ms",
            cpu_per_call(lambda: bell.acquire(timeout=FRAME), args.wakes),
        ),
        ("timed wait on a Condition, 33 ms", cpu_per_call(condition_wait, args.wakes)),
        ("sender pass, hot", cpu_per_call(run, 20_000)),
        ("wait on a lock, then the pass", cpu_per_call(wake_and_pass, args.wakes)),
    ]
    for name, micros in rows:
        print(f"{name:<36} {micros:7.1f} us CPU")


if __name__ == "__main__":
    main()
