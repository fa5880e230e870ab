"""Submissions per second: push requests sent as fast as possible to the API on loopback.

.venv/bin/python -m bench.submit_load [--requests 200] [--clients 16] [--web COMMAND]

Starts a throwaway redis-server and the API under gunicorn as the Procfile runs it (or as
``--web`` says), with no Celery worker: every push stays queued in Redis and nothing is
published. A thread pool of ``--clients`` clients (one keep-alive connection each) sends
``--requests`` valid requests, each for its own UserId so that no publisher lease refuses
one. Prints the rate, latency percentiles, the answers by status, and how many job records
Redis holds afterwards (it must equal the number of 202 answers: none lost, none doubled).
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench.service import api_alone
from devstack.redis import RedisServer

REPO = Path(__file__).resolve().parent.parent


@dataclass
class LoadResult:
    """What a burst of submissions got back."""

    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Answered submissions per second, over the whole burst."""
        return sum(self.statuses.values()) / self.seconds

    def percentile(self, p: float) -> float:
        """Latency (seconds) under which ``p`` percent of the answers came."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def request_bodies(count: int, prefix: str = "load") -> list[dict[str, Any]]:
    """``count`` valid requests into one room, each as its own user (no lease conflict)."""
    return [
        {
            "VideoSrc": "http://127.0.0.1:9/never-fetched.mp4",
            "SdkAppId": 1400000009,
            "StrRoomId": f"{prefix}_room",
            "UserId": f"{prefix}_{i}",
            "UserSig": "sig-for-load",
        }
        for i in range(count)
    ]


def submit_all(base_url: str, bodies: Sequence[dict[str, Any]], clients: int = 16) -> LoadResult:
    """POST every body to ``base_url``/v1/pushes from ``clients`` threads, as fast as possible.

    Each thread keeps one HTTP/1.1 connection open (reconnecting if the server closes it),
    so the figure is the API's, not TCP set-up's.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    local = threading.local()
    lock = threading.Lock()
    result = LoadResult(seconds=0.0)
    opened: list[http.client.HTTPConnection] = []

    def send(body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        for attempt in range(2):
            conn: http.client.HTTPConnection | None = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(host, port, timeout=30)
                with lock:
                    opened.append(conn)
            started = time.perf_counter()
            try:
                conn.request(
                    "POST",
                    "/v1/pushes",
                    body=payload,
                    headers={"Content-Type": "application/json"},
                )
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                local.conn = None
                if attempt == 0:
                    continue  # a kept-alive connection the server had closed: once more
                with lock:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                return
            elapsed = time.perf_counter() - started
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                local.conn = None
            with lock:
                result.statuses[resp.status] += 1
                result.latencies.append(elapsed)
                if resp.status == 202:
                    result.request_ids.append(json.loads(data)["RequestId"])
            return

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, bodies))
    result.seconds = time.perf_counter() - start
    for conn in opened:
        conn.close()
    return result


def count_records(redis_url: str) -> int:
    """How many job records the store's index holds."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard("roomcast:jobs"))
    finally:
        client.close()


def main() -> None:
    """Start Redis and the API, send the burst, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--web", help="the API's command line (default: the Procfile's web)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        with api_alone(server.url, args.web) as api:
            base = f"http://127.0.0.1:{api.port}"
            submit_all(base, request_bodies(20, "warmup"), args.clients)  # imports, pools
            before = count_records(server.url)
            result = submit_all(base, request_bodies(args.requests), args.clients)
            recorded = count_records(server.url) - before
    unique = len(set(result.request_ids))
    print(
        f"{args.requests} submissions, {args.clients} clients, "
        f"{args.web or 'Procfile web'}: {result.rate:.0f} submissions/s "
        f"({result.seconds:.2f} s)"
    )
    print(
        f"latency p50 {result.percentile(50) * 1000:.1f} ms, "
        f"p95 {result.percentile(95) * 1000:.1f} ms, max {max(result.latencies) * 1000:.1f} ms"
    )
    print(
        f"answers {dict(result.statuses)}, errors {len(result.errors)}, "
        f"distinct request ids {unique}, records added {recorded}"
    )


if __name__ == "__main__":
    main()
