"""A push's heartbeat is one round trip to Redis, and survives Redis losing its scripts; the
watchdog finds the pushes whose worker went silent, one process at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from devstack.redis import RedisServer
from tests.records import running_job
from worker.jobs import JobStore, State, job_key, now


def _store(
    redis_server: RedisServer, requeue: Callable[[str], None] | None = None
) -> tuple[JobStore, Any]:
    # A database of its own: the watchdog reads every running job in it.
    client: Any = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/10")
    return JobStore(client, ttl=600, lost_after=30, requeue=requeue), client


def _script_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_script"))


def test_a_heartbeat_asks_redis_nothing_about_its_scripts(redis_server: RedisServer) -> None:
    store, client = _store(redis_server)
    request_id = running_job(store)
    store.heartbeat(request_id)  # the first may load the script
    before = _script_calls(client)
    for _ in range(5):
        assert store.heartbeat(request_id) == (True, "run-1")
    assert _script_calls(client) == before


def test_a_heartbeat_after_redis_lost_its_scripts_still_renews_the_lease(
    redis_server: RedisServer,
) -> None:
    store, client = _store(redis_server)
    request_id = running_job(store)
    client.script_flush()
    assert store.heartbeat(request_id) == (True, "run-1")
    assert store.heartbeat(request_id) == (True, "run-1")


def test_the_watchdog_hands_back_a_push_whose_heartbeat_stopped_and_leaves_the_beating_ones(
    redis_server: RedisServer,
) -> None:
    requeued: list[str] = []
    store, client = _store(redis_server, requeue=requeued.append)
    client.flushdb()
    beating, silent = running_job(store), running_job(store)
    store.heartbeat(beating)
    client.hset(job_key(silent), "heartbeat", now() - 31)
    assert store.reap_lost() == 1
    assert requeued == [silent]
    assert store.get(silent).state is State.QUEUED
    assert store.get(beating).state is State.RUNNING


def test_the_watchdog_judges_a_push_that_never_beat_by_its_start(
    redis_server: RedisServer,
) -> None:
    store, client = _store(redis_server)  # no requeue hook: a lost push fails
    client.flushdb()
    never_beat = running_job(store, created=now() - 31)
    just_started = running_job(store)
    store.reap_lost()
    lost = store.get(never_beat)
    assert lost.state is State.FAILED and lost.doc["Error"]["Code"] == "WorkerLost"
    assert store.get(just_started).state is State.RUNNING


def test_one_worker_process_at_a_time_looks_for_lost_pushes(redis_server: RedisServer) -> None:
    store, _ = _store(redis_server)
    assert store.take_watch("worker-a", 0.3)
    assert not store.take_watch("worker-b", 0.3)
    time.sleep(0.4)
    assert store.take_watch("worker-b", 0.3)
