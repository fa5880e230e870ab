"""Callback delivery delay: an event recorded → the receiver has it, under real pushes.

    .venv/bin/python -m bench.callbacks [--pushes 50] [--clips 3] [--seconds 4]

Starts the service as ``scripts/dev`` does (its own Redis, the room, the API, the Procfile's
push workers and its ``events`` worker) and a receiver process (tests/receiver.py) that
verifies each delivery with the Standard Webhooks library. ``--pushes`` switchable pushes
of ``--clips`` short clips each are submitted at once, every one with a ``CallbackUrl``;
each sends queued, running, clip-started/-ending/-ended per clip and succeeded.

Reported: per event, the delay from its ``At`` (when it was recorded in Redis) to its first
arrival at the receiver, p50/p99/max, over all events; deliveries per second; and how many
events were missing, doubled (after dedupe by id none may be) or failed to verify. There is
no ffmpeg reference: the ffmpeg command line has no events to deliver.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.concurrency import percentile
from bench.service import push_job, running_service
from devstack.ports import free_port
from tests.media import make_clip
from tests.receiver import Receiver

SECRET = "bench-callback-secret"
FINAL = {"succeeded", "failed", "stopped"}


def wait_delivered(receiver: Receiver, rids: list[str], expected: int, timeout: float) -> None:
    """Until every push's last event (its final state) has reached the receiver."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finals = {e["body"]["RequestId"] for e in receiver.entries() if e["body"]["Event"] in FINAL}
        if finals >= set(rids) and len(first_arrivals(receiver)) >= expected:
            return
        time.sleep(0.5)
    print(f"warning: not every event arrived within {timeout:.0f} s", file=sys.stderr)


def first_arrivals(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """Each event id's first acknowledged delivery."""
    first: dict[str, dict[str, Any]] = {}
    for entry in receiver.entries():
        if entry["answer"] == "ok":
            first.setdefault(entry["id"], entry)
    return first


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pushes", type=int, default=50)
    parser.add_argument("--clips", type=int, default=3, help="clips per push")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    args = parser.parse_args(argv)

    settings = {"ROOMCAST_CALLBACK_SECRET": SECRET}
    with running_service(settings=settings, events=True) as service:
        clip = make_clip(service.room.media_dir / "clip.mp4", seconds=args.seconds, size="320x240")
        url = service.room.media_url(clip.name)
        receiver = Receiver(free_port(), service.workdir / "received.jsonl", SECRET)
        receiver.start()
        try:

            def submit(n: int) -> str:
                playlist = [{"VideoSrc": url, "ClipId": f"clip{i}"} for i in range(1, args.clips)]
                job = push_job(url, f"cb_{n}", ClipId="clip0", Playlist=playlist)
                return service.api.submit(**job, CallbackUrl=receiver.url)

            started = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                rids = list(pool.map(submit, range(args.pushes)))
            per_push = 3 + 3 * args.clips  # queued, running, the clips' three, the end
            expected = per_push * args.pushes
            wait_delivered(receiver, rids, expected, timeout=120 + args.clips * args.seconds)
            took = time.monotonic() - started
            entries = receiver.entries()
            first = first_arrivals(receiver)
        finally:
            receiver.kill()
    delays = [(e["at"] - e["body"]["At"]) * 1000 for e in first.values()]
    by_event: dict[str, list[float]] = {}
    for entry in first.values():
        by_event.setdefault(entry["body"]["Event"], []).append(
            (entry["at"] - entry["body"]["At"]) * 1000
        )
    ok = [e for e in entries if e["answer"] == "ok"]
    print(f"pushes {args.pushes} x {args.clips} clips of {args.seconds:g} s: {took:.1f} s")
    print(
        f"events: {len(first)} of {expected} delivered, {len(ok) - len(first)} redelivered, "
        f"{sum(not e['verified'] for e in entries)} failed verification"
    )
    print(
        f"delay event -> receiver (ms): p50 {percentile(delays, 50):.1f}  "
        f"p99 {percentile(delays, 99):.1f}  max {max(delays, default=0):.1f}  "
        f"mean {statistics.fmean(delays) if delays else 0:.1f}"
    )
    for event, values in sorted(by_event.items()):
        print(f"  {event:13} p50 {percentile(values, 50):7.1f}  p99 {percentile(values, 99):7.1f}")


if __name__ == "__main__":
    main()
