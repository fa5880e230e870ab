"""Event followers and status calls together: N SSE followers held open while GET status
is timed, on the API as the Procfile runs it.

    .venv/bin/python -m bench.sse [--followers 500] [--seconds 20] [--rate 250]
        [--web "gunicorn … api:create_app()"]

Starts a throwaway redis-server and the API: the Procfile's ``web`` line (gevent workers),
then, as the reference in the same run, the previous default (``--workers 2 --threads 4``);
``--web`` measures one command instead. Each records one queued push per follower
straight into Redis, and opens ``--followers`` ``GET /v1/pushes/<id>/events`` streams from
a separate process (asyncio, one connection each). While they are open, events are
appended at ``--rate`` per second spread over the pushes, and 4 clients call
``GET /v1/pushes/<id>`` back to back for ``--seconds``.

Reported: followers that got their stream's first event (the ``queued`` event every push
starts with), status calls per second and their latency p50/p99/max, the delay of each
appended event to its follower p50/p99, and the API's CPU (cores).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.concurrency import cpu_seconds, group_pids, percentile
from bench.service import api_alone
from devstack.layout import procfile_command
from devstack.redis import RedisServer
from jobs.settings import Settings
from jobs.store import open_store
from tests.records import queued_job

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# --- the followers' process -------------------------------------------------------------


async def follow(port: int, rid: str, seen: dict[str, Any], deadline: float) -> None:
    """One SSE follower: note when each event arrives (and its ``At``)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        seen["errors"].append(repr(exc))
        return
    writer.write(f"GET /v1/pushes/{rid}/events HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    try:
        while time.time() < deadline:
            line = await asyncio.wait_for(reader.readline(), deadline - time.time())
            if not line:
                break
            if line.startswith(b"data: "):
                event = json.loads(line[6:])
                if event["Event"] == "queued":
                    seen["connected"] += 1
                else:
                    seen["delays"].append(time.time() - event["At"])
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def follow_all(port: int, rids: list[str], seconds: float) -> dict[str, Any]:
    seen: dict[str, Any] = {"connected": 0, "delays": [], "errors": []}
    deadline = time.time() + seconds
    await asyncio.gather(*(follow(port, rid, seen, deadline) for rid in rids))
    return seen


def followers_main(port: int, ids_file: Path, seconds: float, out: Path) -> None:
    """Entry of the followers' process."""
    rids = ids_file.read_text().split()
    out.write_text(json.dumps(asyncio.run(follow_all(port, rids, seconds))))


# --- the benchmark ----------------------------------------------------------------------


def time_status(port: int, rids: list[str], until: float, latencies: list[float]) -> None:
    """GET status back to back on one keep-alive connection until ``until``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            conn.request("GET", f"/v1/pushes/{random.choice(rids)}")
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                raise http.client.HTTPException(f"answered {answer.status}")
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            latencies.append(float("inf"))
            continue
        latencies.append(time.monotonic() - started)


#: The API's previous default (threads): the reference each run is compared with.
THREADS_WEB = (
    "gunicorn --bind 127.0.0.1:${PORT:-8000} --workers 2 --threads 4 --access-logfile - "
    '"api:create_app()"'
)


def measure(web: str, args: argparse.Namespace) -> None:
    """Start the API as ``web``, hold the followers, time status calls; print the row."""
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        store = open_store(Settings(redis_url=server.url))
        rids = [queued_job(store) for _ in range(args.followers)]
        ids_file = Path(tmp) / "ids"
        ids_file.write_text("\n".join(rids))
        with api_alone(server.url, web) as api:
            out = Path(tmp) / "followers.json"
            hold = args.seconds + 10
            followers = subprocess.Popen(
                [sys.executable, "-m", "bench.sse", "--followers-of", str(api.port),
                 str(ids_file), str(hold), str(out)],
                cwd=REPO,
            )  # fmt: skip
            time.sleep(5)  # the followers connect
            api_cpu = cpu_seconds(group_pids(api.proc.pid))
            until = time.monotonic() + args.seconds
            latencies: list[list[float]] = [[] for _ in range(4)]
            callers = [
                threading.Thread(target=time_status, args=(api.port, rids, until, mine))
                for mine in latencies
            ]
            for caller in callers:
                caller.start()
            appended = 0
            started = time.monotonic()
            while time.monotonic() < until:
                store.events.append(random.choice(rids), "bench", N=appended)
                appended += 1
                time.sleep(max(0.0, started + appended / args.rate - time.monotonic()))
            for caller in callers:
                caller.join()
            api_cores = (cpu_seconds(group_pids(api.proc.pid)) - api_cpu) / args.seconds
            followers.wait(hold + 30)
            seen = json.loads(out.read_text())
    calls = [s for mine in latencies for s in mine]
    failed = sum(s == float("inf") for s in calls)
    ms = sorted(s * 1000 for s in calls if s != float("inf"))
    delays = [d * 1000 for d in seen["delays"]]
    print(f"web: {web}")
    print(
        f"  followers {seen['connected']} of {args.followers} streaming "
        f"({len(seen['errors'])} could not connect); events appended {appended} "
        f"({args.rate:g}/s), received {len(delays)}"
    )
    print(
        f"  GET status: {len(ms) / args.seconds:.0f}/s, p50 {percentile(ms, 50):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {max(ms, default=0):.1f} ms, failed {failed}"
    )
    print(
        f"  event -> follower: p50 {percentile(delays, 50):.1f} ms, "
        f"p99 {percentile(delays, 99):.1f} ms; API CPU {api_cores:.2f} cores"
    )


def main(argv: list[str] | None = None) -> None:
    """The Procfile's API, then the threads reference (or only ``--web``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--followers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=250.0, help="events appended per second")
    parser.add_argument("--web", default=None, help="only this API command")
    args = parser.parse_args(argv)
    for web in [args.web] if args.web else [procfile_command("web"), THREADS_WEB]:
        measure(web, args)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--followers-of":
        followers_main(int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]))
    else:
        main()
