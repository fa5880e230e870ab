"""UserSig, RedisPassword and URL credentials never show: Flower, logs, results, status."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import redis

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api, start_flower, stop

USER_SIG = "USERSIG-SECRET-7781"
REDIS_PASSWORD = "REDISPW-SECRET-9932"
URL_TOKEN = "URLTOKEN-SECRET-4410"


def dump_redis(client: redis.Redis) -> str:
    """Every key and value in a Redis database, as text."""
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1)
        else:
            value = b""
        parts.append(f"{key!r}={value!r}")
    return "\n".join(parts)


def test_secrets_appear_nowhere_a_person_or_a_tool_can_look(
    api: Api,
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    redis_server: RedisServer,
    service_env: dict[str, str],
    worker_log: Path,
    api_log: Path,
    tmp_path: Path,
) -> None:
    flower, flower_url = start_flower(service_env, tmp_path / "flower.log")
    try:
        with RedisServer(tmp_path / "progress", password=REDIS_PASSWORD) as progress:
            job = job_for(
                room,
                long_clip,
                room_name,
                UserSig=USER_SIG,
                Redis=True,
                RedisHost="127.0.0.1",
                RedisPort=progress.port,
                RedisPassword=REDIS_PASSWORD,
                MaxDuration=3,
            )
            job["VideoSrc"] = f"{job['VideoSrc']}?token={URL_TOKEN}"
            rid = api.submit(**job)
            running = api.wait_state(rid, {"running"}, timeout=15)
            final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
            assert final["State"] == "stopped", final
            listing = api.call("GET", "/v1/pushes?Limit=5").body
            time.sleep(1.5)  # let Flower digest the task events
            flower_text = ""
            for path in ("/api/tasks", f"/api/task/info/{rid}", f"/api/task/result/{rid}"):
                with urllib.request.urlopen(f"{flower_url}{path}", timeout=10) as r:
                    flower_text += r.read().decode()
            assert rid in flower_text, "Flower must know the task, or this test proves nothing"
            seen = {
                "status": json.dumps([running, final, listing]),
                "flower": flower_text,
                "worker log": worker_log.read_text(errors="replace"),
                "api log": api_log.read_text(errors="replace"),
                "service redis": dump_redis(redis.Redis.from_url(redis_server.url)),
                "progress redis": dump_redis(
                    redis.Redis(port=progress.port, password=REDIS_PASSWORD)
                ),
            }
    finally:
        stop(flower)
    assert rid in seen["worker log"] and "usersig=***" in seen["worker log"]
    for where, text in seen.items():
        for secret in (USER_SIG, REDIS_PASSWORD, URL_TOKEN):
            assert secret not in text, f"{secret} leaked into the {where}"
