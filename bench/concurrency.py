"""Concurrent pushes on one machine: roomcast's workers next to one ffmpeg per push.

    .venv/bin/python -m bench.concurrency [--pushes 1,10,50,100,200] [--seconds 60]
        [--size 640x360] [--receivers 20] [--no-reference] [--set ROOMCAST_X=VALUE ...]
        [--keep DIR] [--idle SECONDS] [--workers N] [--concurrency N] [--pool POOL]
        [--classroom SECONDS]

roomcast runs as a fresh install runs it: the Procfile's ``worker`` line, as many times as
``scripts/dev`` starts it (devstack/layout.py); ``--workers``, ``--concurrency`` and
``--pool`` compare another layout.

For each N, N remux pushes of the same clip (each into its own room of the local nginx-rtmp
server) are submitted at once through the real API to real Celery workers; then, as the
reference, N ``ffmpeg -re -i … -c copy -f flv`` processes do the same job. Reported per row:

* CPU: cores used by the pushing processes (the workers, or the ffmpeg processes) while
  the pushes run, and by the room server (nginx), which both sides share;
* RSS per push: (the workers' RSS during the run − at rest) / N, or the ffmpeg processes'
  RSS / N;
* frames: video frames the sampled viewers received, of those the clip has;
* pacing at the receiving side: ``--receivers`` viewers (a sample when N is larger; each
  viewer costs CPU too) pull from the room in a separate process and note each frame's
  arrival; the error is |arrival − timestamp| against the stream's median offset, p50/p99
  over all frames after the first two seconds (a viewer's stream analysis holds the first
  second back), and the worst of them;
* start: submit (or process start) → media time 0 at a viewer, p50/p95: the stream's
  median offset (arrival − timestamp), so the analysis does not count.

Then ``--stops`` pushes are stopped one by one through the API (or ffmpeg is sent SIGINT),
timing the stop call → the publisher gone from the room's ``/stat``. ``--idle`` then
measures the workers' CPU with no push running (each has carried pushes by then): what a
fleet waiting for work costs. The reference has no process left to cost anything.

``--classroom EVERY``: each push is an AI classroom instead, a switchable push of three
720p clips with B-frames (the teacher's recordings), prepared once through
``POST /v1/renditions`` before the first row, switched to its next clip through the API
every EVERY seconds and ended by its ``MaxDuration``; the reference is one ffmpeg per push
remuxing the clip's rendition (the cheapest the command line can do with the same files).

Drift over a long push is the same measurement with one push:
``--pushes 1 --seconds 600 --no-reference`` (the "worst" column); ``--batch 0`` paces each
packet on its own instead of in 20 ms batches.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.receiver import pacing_errors, stream_start
from bench.service import push_job, running_service
from devstack.layout import worker_processes
from devstack.room import LocalRoom, players_at, publishers_at
from tests.media import make_clip
from tests.stack import Api

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- processes -------------------------------------------------------------------------------


def _pids_where(match: Callable[[int, list[str]], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if match(int(entry.name), stat):
            pids.append(int(entry.name))
    return pids


def group_pids(pgid: int) -> list[int]:
    """Every process in process group ``pgid`` (a worker and its pool children)."""
    return _pids_where(lambda pid, stat: int(stat[2]) == pgid)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes (all their threads) have used so far."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])
    return total / TICKS


def run_seconds(pids: list[int]) -> float:
    """Seconds the processes' live threads have run so far, to the nanosecond.

    ``/proc/<pid>/task/<tid>/schedstat``: finer than :func:`cpu_seconds`' clock ticks (10 ms
    per process), which an idle worker's few milliseconds a second fall between. Threads
    that ended are not counted, so this is for spans in which none end.
    """
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue  # the thread ended meanwhile
    return total / 1e9


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of the processes, summed."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


# --- measurement -----------------------------------------------------------------------------


@dataclass
class Row:
    """One side of one N."""

    side: str
    pushes: int
    cores: float = 0.0
    room_cores: float = 0.0
    rss_per_push: float = 0.0
    frames: tuple[int, int] = (0, 0)
    pacing: tuple[float, float, float] = (0.0, 0.0, 0.0)
    start: tuple[float, float] = (0.0, 0.0)
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One table row (markdown)."""
        got, want = self.frames
        p50, p99, worst = (1000 * v for v in self.pacing)
        s50, s95 = (1000 * v for v in self.start)
        return (
            f"| {self.pushes} | {self.side} | {self.cores:.2f} | {self.room_cores:.2f} | "
            f"{self.rss_per_push / 2**20:.1f} | {got}/{want} | {p50:.1f} / {p99:.1f} / "
            f"{worst:.1f} | {s50:.0f} / {s95:.0f} | {self.failed} |"
        )


HEADER = (
    "| N | side | CPU cores | room CPU | RSS/push MiB | frames seen | "
    "pacing p50 / p99 / worst ms | start p50 / p95 ms | failed |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def percentile(values: list[float], p: float) -> float:
    """The value under which ``p`` percent of ``values`` lie (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


@contextmanager
def receivers(
    urls: list[str],
    workdir: Path,
    idle: float,
    stat_url: str,
    keep: Path | None = None,
    analyze: float = 1.0,
) -> Iterator[Callable[..., dict[str, Any]]]:
    """Viewers of ``urls`` in their own process; yields a function that collects their report.

    Yields once the room lists every viewer: one that joined after its publish began would
    wait for the next keyframe, and its frames before it would count as lost. ``keep``: a
    directory that gets a copy of the viewers' records.
    """
    out = workdir / f"arrivals-{time.monotonic_ns()}.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", "--out", str(out), "--idle", str(idle)]
        + ["--analyze", str(analyze), *urls],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": every viewer thread is started
    deadline = time.monotonic() + 30
    streams = [url.rsplit("/", 1)[1] for url in urls]
    while any(players_at(stat_url, s) == 0 for s in streams) and time.monotonic() < deadline:
        time.sleep(0.05)

    def collect(end: bool = False) -> dict[str, Any]:
        """The viewers' report once every stream went silent (``end``: now, for viewers of
        a stream that never ends)."""
        if end:
            proc.terminate()
        proc.wait(timeout=600)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, keep / out.name)
        return dict(json.loads(out.read_text()))

    try:
        yield collect
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def summarize(row: Row, seen: dict[str, Any], started: dict[str, float], frames: int) -> None:
    """Fill the viewer figures of ``row`` from the receivers' report."""
    errors: list[float] = []
    worst = 0.0
    starts = []
    got = 0
    for url, arrivals in seen.items():
        video = arrivals["video"]
        got += len(video)
        steady = pacing_errors(video, skip=STARTUP_SKIP)
        errors += steady
        worst = max([worst, *steady])
        begin = stream_start(video)
        if begin is not None and url in started:
            starts.append(begin - started[url])
        if arrivals["error"]:
            row.notes.append(f"{url}: {arrivals['error']}")
    row.frames = (got, frames * len(seen))
    row.pacing = (percentile(errors, 50), percentile(errors, 99), worst)
    row.start = (percentile(starts, 50), percentile(starts, 95))


#: Media seconds at the start of each stream left out of the pacing figures: the viewer's
#: stream analysis holds about the first second back.
STARTUP_SKIP = 2.0


# --- the two sides ---------------------------------------------------------------------------


@dataclass
class Stack:
    """What both sides push through: the room, the clip, and roomcast's service."""

    room: LocalRoom
    clip_url: str
    frames: int
    seconds: float
    api: Api
    workers: list[subprocess.Popen[bytes]]
    workdir: Path
    sample: int
    keep: Path | None = None
    #: Classroom mode: the clips, the seconds between switches, and a rendition to remux.
    clips: list[str] = field(default_factory=list)
    every: float = 0.0
    rendition_url: str = ""

    def room_pids(self) -> list[int]:
        """The room's nginx processes: the master and its workers."""
        master = int(self.room.pid_file.read_text().strip())
        return _pids_where(lambda pid, stat: master in (pid, int(stat[1])))

    def worker_pids(self) -> list[int]:
        """Every worker process (pool children included)."""
        return [pid for w in self.workers for pid in group_pids(w.pid)]

    def sampled(self, rooms: list[str]) -> list[str]:
        """Rooms that get a viewer: evenly spread over the batch."""
        step = max(1, math.ceil(len(rooms) / self.sample))
        return rooms[::step][: self.sample]


def job(stack: Stack, room: str) -> dict[str, Any]:
    """A remux push of the clip into ``room`` (a classroom: a switchable push of the clips
    that ends at its time limit)."""
    if not stack.clips:
        return push_job(stack.clip_url, room)
    return push_job(stack.clips[0], room, ClipId="c0", MaxDuration=stack.seconds)


def switch_all(stack: Stack, ids: list[str], until: float) -> None:
    """Every ``stack.every`` seconds, switch each push to its next clip, until ``until``."""
    due, turn = time.monotonic() + stack.every, 1
    while due < until:
        time.sleep(max(0.0, due - time.monotonic()))
        body = {"VideoSrc": stack.clips[turn % len(stack.clips)]}
        calls = [("POST", f"/v1/pushes/{rid}/switch", body) for rid in ids]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda call: stack.api.call(*call), calls))
        due, turn = due + stack.every, turn + 1


def ended_well(state: str, reason: str) -> bool:
    """Succeeded; or, for a classroom, stopped by its time limit."""
    return state == "succeeded" or (state == "stopped" and "time limit" in (reason or ""))


def run_roomcast(stack: Stack, n: int, tag: str) -> Row:
    """N pushes through the API; wait until every one has ended."""
    row = Row("roomcast", n)
    rooms = [f"rc{tag}_{n}_{i}" for i in range(n)]
    watched = stack.sampled(rooms)
    urls = {room: f"{stack.room.rtmp_base}/{room}" for room in watched}
    rest = rss_bytes(stack.worker_pids())
    with receivers(
        list(urls.values()),
        stack.workdir,
        idle=4.0,
        stat_url=stack.room.stat_url,
        keep=stack.keep,
    ) as collect:
        cpu0, room0 = cpu_seconds(stack.worker_pids()), cpu_seconds(stack.room_pids())
        t0 = time.monotonic()
        started: dict[str, float] = {}

        def submit(room: str) -> str:
            sent = time.monotonic()
            request_id = stack.api.submit(**job(stack, room))
            if room in urls:
                started[urls[room]] = sent
            return request_id

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(submit, rooms))
        switcher = None
        if stack.clips:
            until = t0 + stack.seconds - 1
            switcher = threading.Thread(target=switch_all, args=(stack, ids, until), daemon=True)
            switcher.start()
        # Memory at mid-run, when every push is under way.
        time.sleep(min(stack.seconds / 2, max(1.0, stack.seconds - 2)))
        row.rss_per_push = max(0, rss_bytes(stack.worker_pids()) - rest) / n
        if switcher is not None:
            switcher.join()
        states = wait_ended(
            stack.api, ids, timeout=stack.seconds * 3 + 60, not_before=t0 + stack.seconds
        )
        elapsed = time.monotonic() - t0
        row.cores = (cpu_seconds(stack.worker_pids()) - cpu0) / elapsed
        row.room_cores = (cpu_seconds(stack.room_pids()) - room0) / elapsed
        row.failed = sum(1 for state, reason in states if not ended_well(state, reason))
        reasons = {reason for state, reason in states if not ended_well(state, reason)}
        row.notes += [f"failed: {reason}" for reason in sorted(reasons)]
        summarize(row, collect(), started, stack.frames)
    return row


def wait_ended(
    api: Api, ids: list[str], timeout: float, not_before: float = 0.0
) -> list[tuple[str, str]]:
    """Poll the jobs until each has ended; their final states and reasons.

    No polling before ``not_before`` (a ``time.monotonic()`` instant): hundreds of status
    calls a second would cost the machine CPU that the pushes being measured need.
    """
    time.sleep(max(0.0, not_before - time.monotonic()))
    deadline = time.monotonic() + timeout
    pending = set(ids)
    ended: dict[str, tuple[str, str]] = {}
    while pending and time.monotonic() < deadline:
        for request_id in list(pending):
            status = api.status(request_id)
            if status["State"] in {"succeeded", "failed", "stopped"}:
                pending.discard(request_id)
                ended[request_id] = (status["State"], str(status.get("Reason") or ""))
                queued = _seconds_between(status.get("CreatedAt"), status.get("StartedAt"))
                if queued > 1.0:
                    print(f"{request_id} waited {queued:.1f} s for a worker", file=sys.stderr)
        time.sleep(1.0)
    return [ended.get(i, ("timed out", "still running")) for i in ids]


def _seconds_between(first: str | None, then: str | None) -> float:
    """Seconds between two of the API's ISO times (0 when either is missing)."""
    if not first or not then:
        return 0.0
    stamps = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (first, then)]
    return (stamps[1] - stamps[0]).total_seconds()


def ffmpeg_push(source: str, target: str, seconds: float | None = None) -> list[str]:
    """The reference: the ffmpeg command line doing the same remux push (for ``seconds``)."""
    limit = [] if seconds is None else ["-t", str(seconds)]
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", *limit, "-i", source,
        "-c", "copy", "-f", "flv", target,
    ]  # fmt: skip


def prepare_classroom(stack: Stack, size: str) -> None:
    """Three recorded clips, prepared once through the API; one rendition served for ffmpeg."""
    media = stack.room.media_dir
    for n in range(3):
        make_clip(media / f"lesson{n}.mp4", seconds=stack.seconds, size=size, bframes=3,
                  h264_profile="high")  # fmt: skip
    stack.clips = [stack.room.media_url(f"lesson{n}.mp4") for n in range(3)]
    answer = stack.api.call(
        "POST", "/v1/renditions", {"SdkAppId": 1400000001, "Clips": stack.clips}
    )
    request_id = answer.body["RequestId"]
    while (status := stack.api.call("GET", f"/v1/renditions/{request_id}").body)["State"] in (
        "queued",
        "running",
    ):
        time.sleep(1)
    if status["State"] != "succeeded":
        raise RuntimeError(f"the clips could not be prepared: {status}")
    # ffmpeg remuxes the first clip's rendition, as one worker prepared it.
    cache = stack.room.media_dir.parent / "renditions"
    rendition = max(cache.glob("*/*.mp4"), key=lambda p: p.stat().st_size)
    shutil.copy(rendition, media / "rendition.mp4")
    stack.rendition_url = stack.room.media_url("rendition.mp4")


def run_ffmpeg(stack: Stack, n: int, tag: str) -> Row:
    """N ffmpeg processes; wait until every one has exited."""
    row = Row("ffmpeg", n)
    rooms = [f"ff{tag}_{n}_{i}" for i in range(n)]
    watched = stack.sampled(rooms)
    urls = {room: f"{stack.room.rtmp_base}/{room}" for room in watched}
    with receivers(
        list(urls.values()),
        stack.workdir,
        idle=4.0,
        stat_url=stack.room.stat_url,
        keep=stack.keep,
    ) as collect:
        room0, t0 = cpu_seconds(stack.room_pids()), time.monotonic()
        started: dict[str, float] = {}
        procs = []
        for room in rooms:
            if room in urls:
                started[urls[room]] = time.monotonic()
            target = f"{stack.room.rtmp_base}/{room}?sdkappid=1400000001&userid=bench&usersig=x"
            source = stack.rendition_url or stack.clip_url
            procs.append(subprocess.Popen(ffmpeg_push(source, target, stack.seconds)))
        time.sleep(min(stack.seconds / 2, max(1.0, stack.seconds - 2)))
        row.rss_per_push = rss_bytes([p.pid for p in procs]) / n
        cpu = 0.0
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            row.failed += proc.returncode != 0
            cpu += usage.ru_utime + usage.ru_stime
        elapsed = time.monotonic() - t0
        row.cores = cpu / elapsed
        row.room_cores = (cpu_seconds(stack.room_pids()) - room0) / elapsed
        summarize(row, collect(), started, stack.frames)
    return row


def wait_publishing(stat_url: str, rooms: list[str], timeout: float = 60) -> None:
    """Until every room has its publisher."""
    deadline = time.monotonic() + timeout
    while any(publishers_at(stat_url, room) == 0 for room in rooms):
        if time.monotonic() > deadline:
            raise RuntimeError("the pushes did not start publishing")
        time.sleep(0.1)


def gone_after(stat_url: str, room: str, since: float) -> float:
    """Seconds from ``since`` until ``room`` has no publisher."""
    while publishers_at(stat_url, room) > 0:
        time.sleep(0.005)
    return time.monotonic() - since


def idle_cores(stack: Stack, seconds: float) -> float:
    """Cores the workers use over ``seconds`` with no push running."""
    time.sleep(2.0)  # the last pushes' tasks finish and report
    pids = stack.worker_pids()
    before, started = run_seconds(pids), time.monotonic()
    time.sleep(seconds)
    return (run_seconds(pids) - before) / (time.monotonic() - started)


def stop_latencies(stack: Stack, count: int) -> tuple[list[float], list[float]]:
    """Stop call → publisher gone, for roomcast's API and for ffmpeg's SIGINT."""
    stat = stack.room.stat_url
    rooms = [f"stop_{i}" for i in range(count)]
    ids = [stack.api.submit(**job(stack, room)) for room in rooms]
    wait_publishing(stat, rooms)
    ours = []
    for room, request_id in zip(rooms, ids, strict=True):
        t0 = time.monotonic()
        answer = stack.api.call("POST", f"/v1/pushes/{request_id}/stop")
        assert answer.status in (200, 202), answer.body
        ours.append(gone_after(stat, room, t0))
    rooms = [f"ffstop_{i}" for i in range(count)]
    procs = [
        subprocess.Popen(
            ffmpeg_push(stack.clip_url, f"{stack.room.rtmp_base}/{room}?sdkappid=1&userid=b")
        )
        for room in rooms
    ]
    wait_publishing(stat, rooms)
    theirs = []
    for room, proc in zip(rooms, procs, strict=True):
        t0 = time.monotonic()
        proc.send_signal(2)
        theirs.append(gone_after(stat, room, t0))
        proc.wait(10)
    return ours, theirs


# --- main ------------------------------------------------------------------------------------


def worker_setting(text: str) -> tuple[str, str]:
    """``ROOMCAST_X=VALUE`` as a (name, value) pair for the workers' environment."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("ROOMCAST_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not ROOMCAST_<SETTING>=<value>")
    return name, value


def _layout(args: argparse.Namespace) -> str:
    """How the workers run, in words: the default command, or what was asked for."""
    pool = args.pool or "the Procfile's pool"
    concurrency = args.concurrency or "the Procfile's concurrency"
    if args.pool is None and args.concurrency is None:
        return "the default command (Procfile worker line: threads pool, 25 pushes each)"
    return f"pool {pool}, {concurrency} pushes each"


def main(argv: list[str] | None = None) -> None:
    """Run the sweep and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", default="1,10,50,100,200")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: as scripts/dev sizes them, four per core)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="pushes per worker process (default: the Procfile's, 25)",
    )
    parser.add_argument(
        "--pool", default=None, help="Celery pool: threads or prefork (default: the Procfile's)"
    )
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--no-reference", action="store_true", help="skip the ffmpeg side")
    parser.add_argument(
        "--batch", type=float, default=None, help="ROOMCAST_PACE_BATCH_SECONDS for the workers"
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="copy the viewers' arrival records here"
    )
    parser.add_argument(
        "--idle", type=float, default=0.0, help="seconds to measure the idle workers' CPU"
    )
    parser.add_argument(
        "--classroom",
        type=float,
        default=None,
        metavar="EVERY",
        help="switchable classroom pushes of prepared clips, switched every EVERY seconds",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        type=worker_setting,
        metavar="ROOMCAST_X=VALUE",
        help="a worker setting, to compare a design choice with its alternative",
    )
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.pushes.split(",")]
    settings = dict(args.set)
    if args.batch is not None:
        settings["ROOMCAST_PACE_BATCH_SECONDS"] = str(args.batch)
    # The default command (the Procfile's worker line, as many as scripts/dev starts),
    # unless a layout is asked for.
    workers = args.workers if args.workers is not None else worker_processes()
    with running_service(workers, args.concurrency, args.pool, settings) as service:
        fps = 30
        make_clip(
            service.room.media_dir / "clip.mp4", seconds=args.seconds, size=args.size, fps=fps
        )
        stack = Stack(
            service.room,
            service.room.media_url("clip.mp4"),
            int(args.seconds * fps),
            args.seconds,
            service.api,
            service.workers,
            service.workdir,
            args.receivers,
            args.keep,
        )
        if args.classroom:
            stack.every = args.classroom
            prepare_classroom(stack, args.size)
            print(f"classroom: 3 clips prepared, a switch every {args.classroom:g} s")
        print(
            f"{os.cpu_count()} CPUs; clip {args.seconds:g} s {args.size} {fps} fps "
            f"H.264+AAC, remuxed; roomcast: {workers} worker processes, "
            f"{_layout(args)}; up to {args.receivers} viewers per row",
            flush=True,
        )
        print(HEADER, flush=True)
        for tag, n in enumerate(counts):
            for run in (run_roomcast, *(() if args.no_reference else (run_ffmpeg,))):
                row = run(stack, n, str(tag))
                print(row.line(), flush=True)
                for note in row.notes[:5]:
                    print(f"    note: {note}", flush=True)
        if args.stops:
            ours, theirs = stop_latencies(stack, args.stops)
            print(
                f"stop → publisher gone ({args.stops} each): roomcast p50 "
                f"{1000 * statistics.median(ours):.0f} ms, max {1000 * max(ours):.0f} "
                f"ms; ffmpeg SIGINT p50 {1000 * statistics.median(theirs):.0f} ms, "
                f"max {1000 * max(theirs):.0f} ms",
                flush=True,
            )
        if args.idle:
            cores = idle_cores(stack, args.idle)
            print(
                f"idle ({args.idle:g} s, no push running): {workers} workers "
                f"{cores:.4f} cores; ffmpeg: no process, 0",
                flush=True,
            )


if __name__ == "__main__":
    main()
