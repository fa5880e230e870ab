"""A push's heartbeat is one round trip to Redis, and survives Redis losing its scripts; the
watchdog finds the pushes whose worker went silent, one process at a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from devstack.redis import RedisServer
from jobs.keys import job_key
from jobs.records import JobRecord, JobSecrets, PushRoom
from jobs.states import State
from jobs.stops import Stop, StopCause
from jobs.store import Job, JobStore, control_channel, now
from tests.records import queued_job, running_job


def _store(
    redis_server: RedisServer, requeue: Callable[[Job], None] | None = None
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
    requeued: list[Job] = []
    store, client = _store(redis_server, requeue=requeued.append)
    client.flushdb()
    beating, silent = running_job(store), running_job(store)
    store.heartbeat(beating)
    client.hset(job_key(silent), "heartbeat", now() - 31)
    assert store.reap_lost() == 1
    assert [job.request_id for job in requeued] == [silent]
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
    assert lost.state is State.FAILED and lost.record.Error is not None
    assert lost.record.Error.Code == "WorkerLost"
    assert store.get(just_started).state is State.RUNNING


def test_one_worker_process_at_a_time_looks_for_lost_pushes(redis_server: RedisServer) -> None:
    store, _ = _store(redis_server)
    assert store.take_watch("worker-a", 0.3)
    assert not store.take_watch("worker-b", 0.3)
    time.sleep(0.4)
    assert store.take_watch("worker-b", 0.3)


def test_a_silent_push_that_was_asked_to_stop_ends_stopped_and_is_not_handed_back(
    redis_server: RedisServer,
) -> None:
    requeued: list[Job] = []
    store, client = _store(redis_server, requeue=requeued.append)
    client.flushdb()
    killed = running_job(store)
    # A terminate with SIGKILL: the stop recorded, then the process gone without a word.
    store.request_stop(killed, Stop(StopCause.TERMINATE, "SIGKILL"))
    client.hset(job_key(killed), "heartbeat", now() - 31)
    store.reap_lost()
    job = store.get(killed)
    assert job is not None and job.state is State.STOPPED
    assert job.record.Reason == (
        "terminated through Celery (revoke terminate=True, signal SIGKILL); "
        "its worker went silent while stopping"
    )
    assert requeued == []


def test_stopping_a_queued_job_ends_it_at_once_and_says_so_once(
    redis_server: RedisServer,
) -> None:
    store, client = _store(redis_server)
    queued = queued_job(store)
    assert store.stop(queued, Stop(StopCause.REVOKE)) is State.QUEUED
    # Every worker hears a revoke: the others find it stopped and leave it.
    assert store.stop(queued, Stop(StopCause.REVOKE)) is State.STOPPED
    job = store.get(queued)
    assert job is not None and job.state is State.STOPPED
    assert job.record.Reason == "revoked through Celery (revoke), before it started"
    assert job.record.StopCause == "revoke"


def test_stopping_a_running_job_asks_it_on_its_channel_and_leaves_a_flag(
    redis_server: RedisServer,
) -> None:
    store, client = _store(redis_server)
    running = running_job(store)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(control_channel(running))
    stop = Stop(StopCause.TERMINATE, "SIGTERM")
    assert store.stop(running, stop) is State.RUNNING
    message = None
    deadline = time.monotonic() + 2
    while message is None and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.1)
    listener.close()
    assert message is not None and Stop.from_json(message["data"]) == stop
    assert store.stop_requested(running) == stop
    assert store.get(running).state is State.RUNNING


def test_a_stop_someone_asked_for_stands_against_a_later_shutdown(
    redis_server: RedisServer,
) -> None:
    store, _ = _store(redis_server)
    running = running_job(store)
    store.request_stop(running, Stop(StopCause.REVOKE))
    store.request_stop(running, Stop(StopCause.SHUTDOWN))
    store.request_stop(running, Stop(StopCause.API))
    assert store.stop_requested(running) == Stop(StopCause.REVOKE)


def test_a_stop_someone_asks_for_during_a_shutdown_replaces_it(
    redis_server: RedisServer,
) -> None:
    store, _ = _store(redis_server)
    running = running_job(store)
    store.request_stop(running, Stop(StopCause.SHUTDOWN))
    store.request_stop(running, Stop(StopCause.TERMINATE, "SIGTERM"))
    assert store.stop_requested(running) == Stop(StopCause.TERMINATE, "SIGTERM")


def test_a_push_someone_asked_to_stop_is_never_handed_back(redis_server: RedisServer) -> None:
    requeued: list[Job] = []
    store, _ = _store(redis_server, requeue=requeued.append)
    running = running_job(store)
    store.request_stop(running, Stop(StopCause.SHUTDOWN))
    store.request_stop(running, Stop(StopCause.API))
    job = store.get(running)
    assert job is not None and not store.hand_back(job, "worker shut down: handed back")
    assert store.get(running).state is State.RUNNING and requeued == []


def test_a_push_handed_back_after_a_shutdown_starts_its_next_run_without_the_stop(
    redis_server: RedisServer,
) -> None:
    requeued: list[Job] = []
    store, _ = _store(redis_server, requeue=requeued.append)
    running = running_job(store)
    store.request_stop(running, Stop(StopCause.SHUTDOWN))
    job = store.get(running)
    assert job is not None and store.hand_back(job, "worker shut down: handed back")
    assert store.get(running).state is State.QUEUED
    assert store.stop_requested(running) is None
    assert [j.request_id for j in requeued] == [running]


def test_an_unknown_job_is_not_stopped(redis_server: RedisServer) -> None:
    store, _ = _store(redis_server)
    assert store.stop("no-such-job", Stop(StopCause.API)) is None


def test_a_record_reads_back_as_it_was_written_through_its_state_changes(
    redis_server: RedisServer,
) -> None:
    store, _ = _store(redis_server)
    source = "http://example.invalid/clip.mp4"
    record = JobRecord(
        SdkAppId=1,
        Room=PushRoom(StrRoomId="demo", RtmpRoom="demo"),
        UserId="writer",
        VideoSrc=source,
        Playlist=[],  # as the API writes it
        CreatedAt=now(),
    )
    store.create("as-written", record, JobSecrets(UserSig="s", VideoSrc=source))
    store.transition("as-written", (State.QUEUED,), State.RUNNING, RunId="run-1")
    store.finish("as-written", State.STOPPED, Reason="stopped through the API")
    job = store.get("as-written")
    assert job is not None and job.state is State.STOPPED
    # Redis's Lua cjson, which applied the changes, writes [] back as {}: still a list.
    assert job.record.Playlist == [] and job.record.Reason == "stopped through the API"
    assert job.as_status()["Room"] == {"StrRoomId": "demo", "RtmpRoom": "demo"}
