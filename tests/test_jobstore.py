"""A push's heartbeat is one round trip to Redis, and survives Redis losing its scripts."""

from __future__ import annotations

import uuid
from typing import Any

import redis

from devstack.redis import RedisServer
from worker.jobs import JobStore, State, now


def _store(redis_server: RedisServer) -> tuple[JobStore, Any]:
    client: Any = redis.Redis.from_url(redis_server.url)
    return JobStore(client, ttl=600, lost_after=30), client


def _job(store: JobStore) -> str:
    request_id = str(uuid.uuid4())
    room = f"beat_{request_id[:8]}"
    doc = {
        "Mode": "vod",
        "SdkAppId": 1400000001,
        "Room": {"StrRoomId": room, "RtmpRoom": room},
        "UserId": "beat",
        "VideoSrc": "http://example.invalid/clip.mp4",
        "Redis": False,
        "CreatedAt": now(),
    }
    store.create(request_id, doc, {"UserSig": "sig-for-tests"})
    store.transition(request_id, (State.QUEUED,), State.RUNNING, RunId="run-1")
    return request_id


def _script_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_script"))


def test_a_heartbeat_asks_redis_nothing_about_its_scripts(redis_server: RedisServer) -> None:
    store, client = _store(redis_server)
    request_id = _job(store)
    store.heartbeat(request_id)  # the first may load the script
    before = _script_calls(client)
    for _ in range(5):
        assert store.heartbeat(request_id) == (True, "run-1")
    assert _script_calls(client) == before


def test_a_heartbeat_after_redis_lost_its_scripts_still_renews_the_lease(
    redis_server: RedisServer,
) -> None:
    store, client = _store(redis_server)
    request_id = _job(store)
    client.script_flush()
    assert store.heartbeat(request_id) == (True, "run-1")
    assert store.heartbeat(request_id) == (True, "run-1")
