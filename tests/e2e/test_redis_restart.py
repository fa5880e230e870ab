"""The service's own Redis restarting mid-push: pushes go on, records survive, status catches up."""

from __future__ import annotations

import time
from pathlib import Path

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop


def test_a_redis_restart_mid_push_loses_neither_the_push_nor_its_record(
    service_env: dict[str, str], room: LocalRoom, long_clip: str, room_name: str, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    # A worker that hears nothing from Redis for (lost − heartbeat) seconds stops its pushes
    # (tests/e2e/test_partition.py); the suite's 6 s would leave little room for the restart.
    env = dict(service_env, ROOMCAST_REDIS_URL=server.url, ROOMCAST_WORKER_LOST_SECONDS="12")
    worker = start_worker(env, tmp_path / "worker.log", "redisless", concurrency=1)
    api_proc, base = start_api(env, tmp_path / "api.log")
    api = Api(base)
    try:
        rid = api.submit(**job_for(room, long_clip, room_name, MaxDuration=10))
        api.wait_state(rid, {"running"}, timeout=15)
        time.sleep(2)
        server.stop()
        time.sleep(3)
        server.start()
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=40)
    finally:
        stop(api_proc)
        stop(worker)
        server.stop()
    assert final["State"] == "stopped", final
    assert "time limit" in final["Reason"]
    assert final["Progress"]["OutputTime"] >= 9.5, "the push did not go on during the outage"
    assert "could not record progress (the push goes on)" in (tmp_path / "worker.log").read_text()
