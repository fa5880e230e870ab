"""A worker process hears and beats for all its pushes on one Redis subscription.

Real Redis, real threads: the hub here is the one the worker runs, given jobs of its own.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.redis import RedisServer
from jobs.commands import (
    ADD_TARGET,
    REMOVE_TARGET,
    Command,
    Pause,
    Switch,
    target_message,
    to_message,
)
from jobs.keys import job_key
from jobs.records import PushRoom
from jobs.rooms import push_url
from jobs.stops import Stop, StopCause
from jobs.store import Beat, JobStore, control_channel
from pipeline.control import Control
from pipeline.spec import Target
from tests.records import running_job
from worker.hub import Attached, ControlHub
from worker.ingest import Ingest

RTMP_BASE = "rtmp://room.test/push"


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    client: Any = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/11")
    yield JobStore(client, ttl=600, lost_after=30)
    client.close()


@pytest.fixture
def hub(store: JobStore) -> Iterator[ControlHub]:
    hub = ControlHub(store, heartbeat=0.2, fence_after=None, ingest=Ingest(RTMP_BASE))
    hub.start()
    yield hub
    hub.close()


def _eventually(check: Callable[[], object], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def _listeners(store: JobStore, request_id: str) -> int:
    return int(
        dict(store.redis.pubsub_numsub(control_channel(request_id)))[
            control_channel(request_id).encode()
        ]
    )


def _attach(hub: ControlHub, store: JobStore, count: int) -> list[Attached]:
    """``count`` new running jobs attached, once the hub listens for each."""
    pushes = [hub.attach(running_job(store), Control(), "run-1") for _ in range(count)]
    for push in pushes:
        _eventually(lambda rid=push.request_id: _listeners(store, rid) == 1)
    return pushes


def test_every_push_of_a_process_is_heard_on_one_redis_connection(
    store: JobStore, hub: ControlHub
) -> None:
    pushes = _attach(hub, store, 3)
    subscribed = [c for c in store.redis.client_list() if int(c["sub"]) > 0]
    # The three pushes' channels and the hub's own wake-up channel.
    assert sum(int(c["sub"]) == 4 for c in subscribed) == 1
    for push in pushes:
        push.control.close()


def test_a_stop_message_stops_its_push_and_no_other(store: JobStore, hub: ControlHub) -> None:
    first, other = _attach(hub, store, 2)
    store.request_stop(first.request_id, Stop(StopCause.API))
    _eventually(lambda: first.control.stop_requested)
    time.sleep(0.3)
    assert first.control.stop_cause == Stop(StopCause.API)
    assert other.control.stop_cause is None


def test_a_stop_sent_before_the_push_listened_is_acted_on(store: JobStore, hub: ControlHub) -> None:
    request_id = running_job(store)
    store.request_stop(request_id, Stop(StopCause.REVOKE))
    control = Control()
    hub.attach(request_id, control, "run-1")
    _eventually(lambda: control.stop_cause == Stop(StopCause.REVOKE))


def test_a_player_command_reaches_its_push_and_counts_one_listener(
    store: JobStore, hub: ControlHub
) -> None:
    [push] = _attach(hub, store, 1)
    command = Switch(VideoSrc="https://cdn.example/next.mp4", When="end")
    assert store.send_command(push.request_id, to_message(command)) == 1
    received: list[Command] = []
    _eventually(lambda: received.extend(push.control.commands()) or received)
    assert received == [command]


def test_a_malformed_or_unknown_command_is_dropped_and_the_push_goes_on(
    store: JobStore, hub: ControlHub
) -> None:
    [push] = _attach(hub, store, 1)
    for message in ({"Command": "switch", "Index": 2}, {"Command": "rewind"}, ["not", "a", "map"]):
        store.redis.publish(control_channel(push.request_id), json.dumps(message))
    store.send_command(push.request_id, to_message(Pause()))
    received: list[Command] = []
    _eventually(lambda: received.extend(push.control.commands()) or received)
    assert received == [Pause()]
    assert not push.control.stop_requested


def test_a_detached_push_is_no_longer_listened_for(store: JobStore, hub: ControlHub) -> None:
    [push] = _attach(hub, store, 1)
    hub.detach(push)
    _eventually(lambda: _listeners(store, push.request_id) == 0)
    assert hub.attached() == []


def test_one_beat_keeps_every_attached_push_alive(store: JobStore, hub: ControlHub) -> None:
    pushes = _attach(hub, store, 3)

    def beats() -> list[float]:
        return [float(store.redis.hget(job_key(p.request_id), "heartbeat") or 0) for p in pushes]

    _eventually(lambda: all(beats()))
    first = beats()
    _eventually(lambda: all(b > a for a, b in zip(first, beats(), strict=True)))


def test_a_push_whose_job_runs_elsewhere_now_is_stopped(store: JobStore, hub: ControlHub) -> None:
    [push] = _attach(hub, store, 1)
    # Another worker took the job for lost and started run 2 of it.
    key = job_key(push.request_id)
    store.redis.hset(
        key, "doc", json.dumps({**json.loads(store.redis.hget(key, "doc")), "RunId": "run-2"})
    )
    _eventually(lambda: push.control.stop_cause == Stop(StopCause.TAKEN_OVER))


def test_pushes_in_a_process_cut_off_from_redis_stop_once_silent_too_long() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    client: Any = redis.Redis(
        port=port, socket_timeout=0.2, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    hub = ControlHub(JobStore(client, ttl=600, lost_after=30), heartbeat=0.2, fence_after=0.6)
    hub.start()
    try:
        control = Control()
        started = time.monotonic()
        hub.attach("cut-off", control, "run-1")
        _eventually(lambda: control.stop_requested)
        assert control.stop_cause == Stop(StopCause.FENCED)
        assert 0.6 <= time.monotonic() - started < 1.5
    finally:
        hub.close()
        client.close()


def test_many_heartbeats_go_in_one_call_and_say_each_push_holds_its_lease(
    store: JobStore,
) -> None:
    ids = [running_job(store) for _ in range(3)]
    assert store.heartbeats(ids) == {rid: Beat(True, "run-1", None) for rid in ids}


def test_a_stop_whose_message_was_missed_is_found_by_the_next_beat(
    store: JobStore, hub: ControlHub
) -> None:
    [push] = _attach(hub, store, 1)
    # The flag without the message: what a subscription dropped and renewed leaves.
    stop = Stop(StopCause.STAMPED, "room=1:a")
    store.redis.hset(job_key(push.request_id), "stop", stop.to_json())
    _eventually(lambda: push.control.stop_cause == stop)


def test_a_record_that_cannot_be_beaten_costs_the_other_pushes_nothing(
    store: JobStore, hub: ControlHub
) -> None:
    broken = str(uuid.uuid4())
    store.redis.set(job_key(broken), "not a job's hash")
    hub.attach(broken, Control(), "run-1")
    [push] = _attach(hub, store, 1)
    key = job_key(push.request_id)
    before = float(store.redis.hget(key, "heartbeat") or 0)
    _eventually(lambda: float(store.redis.hget(key, "heartbeat") or 0) > before)
    assert push.control.stop_cause is None


def test_the_next_run_of_a_job_in_the_same_process_is_heard_after_the_last_one_ends(
    store: JobStore, hub: ControlHub
) -> None:
    # Run 1 was taken for lost but is still ending here; run 2 started in this process.
    request_id = running_job(store, run_id="run-2")
    old, new = Control(), Control()
    old_push = hub.attach(request_id, old, "run-1")
    hub.attach(request_id, new, "run-2")
    _eventually(lambda: old.stop_cause == Stop(StopCause.TAKEN_OVER))
    hub.detach(old_push)
    time.sleep(0.5)  # a beat or two and a wake-up: the channel must stay subscribed
    assert _listeners(store, request_id) == 1
    store.request_stop(request_id, Stop(StopCause.API))
    _eventually(lambda: new.stop_cause == Stop(StopCause.API))


def _fanout(hub: ControlHub, store: JobStore) -> tuple[str, list[tuple[Target | None, str | None]]]:
    """A running fan-out push attached to the hub, and the target changes its pipeline got."""
    request_id = running_job(store, fanout=True)
    control = Control()
    changes: list[tuple[Target | None, str | None]] = []
    control.on_targets(lambda add, remove: changes.append((add, remove)))
    hub.attach(request_id, control, "run-1")
    _eventually(lambda: _listeners(store, request_id) == 1)
    return request_id, changes


def test_an_added_room_reaches_its_push_with_the_usersig_read_from_redis(
    store: JobStore, hub: ControlHub
) -> None:
    request_id, changes = _fanout(hub, store)
    room = PushRoom(StrRoomId="hall", RtmpRoom="hall")
    target_id = store.add_target(request_id, None, room, "fan_a", "SIG-A")
    # The message names the room only: its UserSig stays in Redis.
    assert store.send_command(request_id, target_message(ADD_TARGET, target_id)) == 1
    _eventually(lambda: changes)
    url = push_url(RTMP_BASE, "hall", 1400000001, "fan_a", "SIG-A")
    assert changes == [(Target("t1", url), None)]


def test_a_removed_room_reaches_its_push_by_its_id(store: JobStore, hub: ControlHub) -> None:
    request_id, changes = _fanout(hub, store)
    store.send_command(request_id, target_message(REMOVE_TARGET, "main"))
    _eventually(lambda: changes)
    assert changes == [(None, "main")]


def test_an_added_room_missing_from_the_record_is_not_added_and_the_push_goes_on(
    store: JobStore, hub: ControlHub
) -> None:
    request_id, changes = _fanout(hub, store)
    store.send_command(request_id, target_message(ADD_TARGET, "t7"))
    store.send_command(request_id, target_message(REMOVE_TARGET, "t7"))
    _eventually(lambda: changes)
    assert changes == [(None, "t7")]  # the add was dropped, the next message still heard
