"""Fan-out: one live 720p30 source into N rooms, three ways side by side in one run.

    .venv/bin/python -m bench.fanout [--rooms 1,10,50] [--seconds 30] [--size 1280x720]
        [--separate-max 50] [--repeat K]
    .venv/bin/python -m bench.fanout --isolation 200 [--receivers 20] [--seconds 40]
        [--servers 1]
    .venv/bin/python -m bench.fanout --transcode [--rooms 1,10,50] [--separate-max 1]

The source is the local room's ``live`` application, fed by ``ffmpeg -re -stream_loop -1``
(a 720p30 H.264/AAC clip the room takes as it is: remuxed). For each N:

- ``fan-out``: one roomcast push (``bench.push_one --fanout N``): the source read and muxed
  once, N RTMP publishes;
- ``separate``: N roomcast pushes, one process each (what one push per room costs);
- ``ffmpeg``: N ``ffmpeg -i SOURCE -c copy -f flv ROOM`` processes, the command line's way.

Reported: the share of a core each side used from ``--steady-after`` seconds to the end
(start-up left out: a worker is already running), summed over its processes; the ratio of
the fan-out at N to the fan-out at 1 (the issue's target: at most 1.5× at N = 50), and to
the other two sides at the same N. ``--repeat K``: the fan-out side K rounds, in
turn (N = 1, N = 50, N = 1, …), each round's ratio against its own N = 1, and their median.

``--transcode``: the source has B-frames, which the room rejects, so roomcast re-encodes it
(once for all rooms in the fan-out); ffmpeg's side re-encodes with the same x264 settings
(bench/cpu_per_push.py ``X264``). The issue's target: N = 50 at most 1.3× one push.

``--isolation N``: one fan-out push into N rooms plus one room on a second nginx-rtmp
server, twice: once as it is, once with that server frozen (SIGSTOP) for ``--freeze``
seconds from ``--steady-after``. ``--receivers`` viewers, spread over the N rooms, note
each picture's arrival (bench/receiver.py); reported: each run's pacing p50/p99 over them,
and how much the freeze moved any one room's p99 (the issue's target: at most 5 ms). One
more viewer pulls the source itself from the same server: its pacing is the floor that the
feeder, nginx and the viewers' process give on this machine. The rooms' server cuts no HLS
(that work is the room's, on other machines: nginx-rtmp writes 200 fragments at once at every
keyframe and stalls the later rooms by up to 0.2 s). ``--servers K`` spreads the N rooms over
K nginx-rtmp servers (one worker process each), as a room service spreads rooms over its
machines; the push's work is the same.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devstack.room import LocalRoom
from tests.media import make_clip

from .concurrency import STARTUP_SKIP, percentile, receivers
from .cpu_per_push import REPO, X264, _cpu_of
from .push_one import server_of
from .receiver import pacing_errors


def steady_share(commands: list[list[str]], seconds: float, steady_after: float) -> float:
    """Run ``commands`` together for ``seconds``; cores they used after ``steady_after``."""
    procs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for cmd in commands
    ]
    try:
        time.sleep(steady_after)
        start = time.monotonic()
        before = [_cpu_of(p.pid) or 0.0 for p in procs]
        time.sleep(seconds - steady_after - 1.0)
        after = [_cpu_of(p.pid) or 0.0 for p in procs]
        elapsed = time.monotonic() - start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return sum(b - a for a, b in zip(before, after, strict=True)) / elapsed


def fanout_share(room: LocalRoom, source: str, n: int, args: argparse.Namespace) -> float:
    """The share of a core one fan-out push into ``n`` rooms used in its steady state."""
    target = f"{room.rtmp_base}/fan{n}?sdkappid=1&userid=b&usersig=x"
    fanout = [sys.executable, "-m", "bench.push_one", source, target]
    fanout += ["--fanout", str(n), "--seconds", str(args.seconds + 5)]
    fanout += _pictures_per_send(args)
    return steady_share([fanout], args.seconds, args.steady_after)


def print_ratios(rounds: list[dict[int, float]]) -> None:
    """Each N's fan-out against N = 1 of the same round; with several rounds, each round's
    shares and ratio, and the ratios' median and range (this VM's runs move by a fifth)."""
    if any(1 not in shares for shares in rounds):
        return
    if len(rounds) > 1:
        for i, shares in enumerate(rounds, 1):
            cells = ", ".join(f"N={n} {share:.2%}" for n, share in shares.items())
            print(f"round {i}: {cells}")
    for n in (n for n in rounds[0] if n != 1):
        ratios = sorted(shares[n] / shares[1] for shares in rounds)
        line = f"fan-out at N={n} / fan-out at N=1: {statistics.median(ratios):.2f}×"
        if len(ratios) > 1:
            line += f" (median of {len(ratios)} rounds; {ratios[0]:.2f}–{ratios[-1]:.2f}×)"
        print(line)


def _pictures_per_send(args: argparse.Namespace) -> list[str]:
    """The fan-out's ``--pictures-per-send`` option for bench.push_one, if one was given."""
    n = args.pictures_per_send
    return [] if n is None else ["--pictures-per-send", str(n)]


def _server_pids(server: LocalRoom) -> list[int]:
    """An nginx-rtmp server's master and workers."""
    master = server._read_pid()  # noqa: SLF001 - the bench freezes the whole server
    assert master is not None
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


def isolation_run(
    servers: list[LocalRoom],
    other: LocalRoom,
    source: str,
    args: argparse.Namespace,
    freeze: bool,
    tag: str,
) -> dict[str, float]:
    """One fan-out push into ``args.isolation`` rooms, spread over ``servers`` (room n on
    server n mod their number; the source is on the first), and one on ``other``; each
    sampled room's pacing p99 (ms), and the whole sample's p50 and p99 under "all"."""
    n = args.isolation
    step = max(1, n // args.receivers)
    # Every step-th room, nudged so that the viewers fall on every server in turn.
    spots = (i * step + i % len(servers) for i in range(args.receivers))
    sample = [i for i in spots if i < n]
    watched = [
        [server.play_url(f"iso{tag}_{i}") for i in sample if server_of(i, len(servers)) == k]
        for k, server in enumerate(servers)
    ]
    room = servers[0]
    target = f"{room.rtmp_base}/iso{tag}?sdkappid=1&userid=b&usersig=x"
    push = [sys.executable, "-m", "bench.push_one", source, target, "--fanout", str(n)]
    push += ["--seconds", str(args.seconds), *_pictures_per_send(args)]
    push += ["--also", f"{other.rtmp_base}/frozen{tag}"]
    push += ["--servers", *(server.rtmp_base for server in servers[1:])]
    frozen: list[int] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as viewers,
        # Joined midway: analysed past a keyframe (one every 2 s), its start left out.
        receivers([source], Path(tmp), 4.0, room.stat_url, analyze=3.0) as reference,
    ):
        # One viewer process per server: it waits for its viewers to be on that server.
        collectors = [
            viewers.enter_context(receivers(urls, Path(tmp), 4.0, server.stat_url))
            for server, urls in zip(servers, watched, strict=True)
            if urls
        ]
        proc = subprocess.Popen(push, cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            if freeze:
                time.sleep(args.steady_after)
                frozen = _server_pids(other)
                for pid in frozen:
                    os.kill(pid, signal.SIGSTOP)
                time.sleep(args.freeze)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        proc.wait(args.seconds + 60)
        seen = {url: arrivals for collect in collectors for url, arrivals in collect().items()}
        source_seen = reference(end=True)[source]
    errors = pacing_errors(source_seen["video"], skip=STARTUP_SKIP + 3.0)
    figures: dict[str, float] = {
        "source p50": percentile(errors, 50) * 1000,
        "source p99": percentile(errors, 99) * 1000,
    }
    everything: list[float] = []
    for url, arrivals in seen.items():
        errors = pacing_errors(arrivals["video"], skip=STARTUP_SKIP)
        everything += errors
        figures[url.rsplit("_", 1)[1]] = percentile(errors, 99) * 1000 if errors else float("nan")
    figures["all p50"] = percentile(everything, 50) * 1000
    figures["all p99"] = percentile(everything, 99) * 1000
    return figures


def isolation(args: argparse.Namespace, room: LocalRoom, source: str, workdir: Path) -> None:
    """Print the pacing of N rooms as they are, with another room's server frozen, and as
    they are again: one room's p99, from some hundred pictures, moves between two calm runs
    too, and that spread is what a change must exceed to mean anything."""
    with contextlib.ExitStack() as stack:
        other = stack.enter_context(LocalRoom(workdir / "other", hls=False))
        servers = [room] + [
            stack.enter_context(LocalRoom(workdir / f"server{k}", hls=False))
            for k in range(1, args.servers)
        ]
        calm = isolation_run(servers, other, source, args, freeze=False, tag="a")
        frozen = isolation_run(servers, other, source, args, freeze=True, tag="b")
        again = isolation_run(servers, other, source, args, freeze=False, tag="c")
    rooms = [k for k in calm if not k.startswith(("all", "source"))]
    print(
        f"one fan-out push into {args.isolation} rooms on {args.servers} server(s) + 1 on "
        f"another server; {len(rooms)} viewers; pacing ms"
    )
    print("| run | p50 | p99 | worst room's p99 | the source's p50 / p99 |")
    print("|---|---|---|---|---|")
    runs = (("as it is", calm), (f"other server frozen {args.freeze:g} s", frozen))
    for name, run in (*runs, ("as it is, again", again)):
        worst = max(run[k] for k in rooms)
        print(
            f"| {name} | {run['all p50']:.1f} | {run['all p99']:.1f} | {worst:.1f} "
            f"| {run['source p50']:.1f} / {run['source p99']:.1f} |"
        )
    for name, a, b in (("frozen", calm, frozen), ("calm again", calm, again)):
        rise = max(rooms, key=lambda k: b[k] - a[k])
        fall = min(rooms, key=lambda k: b[k] - a[k])
        whole = b["all p99"] - a["all p99"]
        print(
            f"{name} against the first run: the sample's p99 {whole:+.1f} ms; each room's p99 "
            f"moved by {b[fall] - a[fall]:+.1f} ms (room {fall}) to "
            f"{b[rise] - a[rise]:+.1f} ms (room {rise})"
        )
    print("(target: one room's server frozen changes no other room's p99 by more than 5 ms)")


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", default="1,10,50")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--steady-after", type=float, default=8.0)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument(
        "--separate-max", type=int, default=50, help="no one-process-per-room sides above this"
    )
    parser.add_argument("--isolation", type=int, default=None, help="N rooms, one frozen")
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--freeze", type=float, default=10.0)
    parser.add_argument(
        "--servers", type=int, default=1, help="--isolation's rooms spread over this many nginx"
    )
    parser.add_argument("--transcode", action="store_true", help="a source roomcast re-encodes")
    parser.add_argument(
        "--pictures-per-send", type=int, default=None, help="the fan-out's (default: roomcast's)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the fan-out side, in turn (ratios' median)"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    with tempfile.TemporaryDirectory() as tmp, LocalRoom(Path(tmp) / "room", hls=False) as room:
        room.media_dir.mkdir(parents=True, exist_ok=True)
        bframes = 2 if args.transcode else 0
        clip = make_clip(
            room.media_dir / f"live_b{bframes}.mp4",
            seconds=20,
            size=args.size,
            gop=60,
            bframes=bframes,
        )
        encode = list(X264) if args.transcode else ["-c", "copy"]
        source = f"{room.live_base}/fanout_source"
        feeder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1"]
            + ["-i", str(clip), "-c", "copy", "-f", "flv", source],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(2.0)
            if args.isolation is not None:
                isolation(args, room, source, Path(tmp))
                return
            how = "re-encoded" if args.transcode else "remuxed"
            print(
                f"one live {args.size} 30 fps source ({how}) into N rooms of the local "
                f"nginx-rtmp; share of a core from {args.steady_after:g} s to "
                f"{args.seconds:g} s, summed over each side's processes"
            )
            print("| N | fan-out (1 process) | separate (N roomcast) | ffmpeg (N processes) |")
            print("|---|---|---|---|")
            shares: dict[int, float] = {}
            for n in counts:
                shares[n] = fanout_share(room, source, n, args)
                row = [f"{shares[n]:.1%}"]
                if n <= args.separate_max:
                    rooms = [
                        f"{room.rtmp_base}/sep{n}_{i}?sdkappid=1&userid=b&usersig=x"
                        for i in range(n)
                    ]
                    separate = [
                        [sys.executable, "-m", "bench.push_one", source, url]
                        + ["--seconds", str(args.seconds + 5)]
                        for url in rooms
                    ]
                    ffmpeg = [
                        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", source]
                        + [*encode, "-f", "flv", url.replace("/sep", "/ff")]
                        for url in rooms
                    ]
                    for commands in (separate, ffmpeg):
                        share = steady_share(commands, args.seconds, args.steady_after)
                        row.append(f"{share:.1%} (fan-out {shares[n] / share:.2f}×)")
                else:
                    row += ["—", "—"]
                print(f"| {n} | " + " | ".join(row) + " |")
            rounds = [shares]
            for _ in range(args.repeat - 1):
                rounds.append({n: fanout_share(room, source, n, args) for n in counts})
            print_ratios(rounds)
        finally:
            feeder.terminate()
            feeder.wait(10)


if __name__ == "__main__":
    main()
