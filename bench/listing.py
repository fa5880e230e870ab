"""Status listing with 100 000 job records in the store (a throwaway redis-server).

.venv/bin/python -m bench.listing [--records 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import redis

from devstack.redis import RedisServer
from jobs.records import JobRecord, JobSecrets, PushRoom
from jobs.states import State
from jobs.store import JobStore


def main() -> None:
    """Fill the store, then time the listings the API serves."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp)) as server:
        store = JobStore(redis.Redis.from_url(server.url), ttl=3 * 86400, lost_after=15)
        now = time.time()
        for i in range(args.records):
            record = JobRecord(
                CreatedAt=now - args.records + i,
                SdkAppId=1,
                UserId=f"u{i % 500}",
                # 999, not 1000: a (user, room) pair repeats only every 499 500 records, so
                # no record meets a queued one holding its publisher lease (a 409).
                Room=PushRoom(RtmpRoom=f"r{i % 999}"),
                VideoSrc="http://example.invalid/clip.mp4",
            )
            store.create(f"id{i}", record, JobSecrets(UserSig="x", VideoSrc=record.VideoSrc))
        for i in range(0, args.records, 7):
            store.transition(f"id{i}", (State.QUEUED,), State.SUCCEEDED)
        queries = {
            "newest": {},
            "State=succeeded": {"state": State.SUCCEEDED},
            "UserId": {"user": (1, "u7")},
            "Room": {"room": (1, "r9")},
        }
        print(f"{args.records} records; Limit=50 plus Stats, median of 5")
        for label, kwargs in queries.items():
            times = []
            for _ in range(5):
                start = time.perf_counter()
                store.list(limit=50, **kwargs)
                store.stats()
                times.append(time.perf_counter() - start)
            print(f"{label:<16} {sorted(times)[2] * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
