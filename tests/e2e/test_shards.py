"""A fan-out push split into shards (jobs/shards.py), run by three worker processes.

Shards of two rooms (``ROOMCAST_FANOUT_SHARD_ROOMS=2``) make a push into five rooms three
pushes, which Celery hands to three workers of one push each: every room gets every
picture, the push's status and events cover all five rooms, a room is added to and removed
from a shard through the push's own id, and Celery's revoke of that id stops every shard.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api, start_api, start_procfile_worker, stop
from ..viewer import FrameNumberViewer
from .test_fanout import events_of

FPS = 25
SECONDS = 8
WORKERS = ("shard_a", "shard_b", "shard_c")


@pytest.fixture(scope="module")
def clip(media: Path) -> str:
    """8 s, 25 fps, a keyframe every second (frame numbers 0…199)."""
    make_numbered_clip(media / "shards_e2e.mp4", seconds=SECONDS, gop=FPS)
    return "shards_e2e.mp4"


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, Celery]]:
    """Three workers of one push each (the Procfile's line), an API, shards of two rooms."""
    url = redis_server.url.rsplit("/", 1)[0] + "/13"
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=url,
        ROOMCAST_FANOUT_SHARD_ROOMS="2",
        ROOMCAST_WORKER_CONCURRENCY="1",
    )
    logs = tmp_path_factory.mktemp("shards")
    workers = [start_procfile_worker(env, logs / f"{name}.log", name) for name in WORKERS]
    api_proc, base = start_api(env, logs / "api.log")
    celery = Celery("a-user-s-client", broker=url, backend=url)
    try:
        yield Api(base), celery
    finally:
        celery.close()
        stop(api_proc)
        for worker in workers:
            stop(worker)


def five_rooms(room_name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The push's own room (main) and four more, as TargetId → room, and its Targets."""
    rooms = {"main": room_name, **{f"t{n}": f"{room_name}_{n}" for n in range(1, 5)}}
    targets = [
        {"TargetId": key, "StrRoomId": name, "UserId": f"fan_{key}", "UserSig": "sig"}
        for key, name in rooms.items()
        if key != "main"
    ]
    return rooms, targets


def submit_split(api: Api, room: LocalRoom, room_name: str, clip: str) -> str:
    """A push into five rooms (three shards of two) of ``clip``; its request id."""
    _, targets = five_rooms(room_name)
    return api.submit(**job_for(room, clip, room_name, Targets=targets))


def wait_all_running(api: Api, rid: str, shards: int) -> dict[str, Any]:
    """The push's status once it and all its shards run."""
    deadline = time.monotonic() + 20
    while True:
        status = api.status(rid)
        states = [s["State"] for s in status.get("Shards") or []]
        if len(states) == shards and set(states) == {"running"}:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_a_push_into_more_rooms_than_a_shard_runs_as_shards_on_several_workers(
    stack: tuple[Api, Celery], room: LocalRoom, room_name: str, clip: str
) -> None:
    api, _ = stack
    rooms, targets = five_rooms(room_name)
    viewers = {key: FrameNumberViewer(room.play_url(name), idle=2.0) for key, name in rooms.items()}
    for viewer in viewers.values():
        viewer.start()
    time.sleep(0.3)
    rid = api.submit(**job_for(room, clip, room_name, Targets=targets))
    running = wait_all_running(api, rid, shards=3)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    for viewer in viewers.values():
        viewer.join(15)
    assert final["State"] == "succeeded", final
    every = list(range(SECONDS * FPS))
    for key, viewer in viewers.items():
        assert viewer.numbers == every, key
    shards = running["Shards"]
    assert [s["RequestId"] for s in shards] == [rid, f"{rid}.2", f"{rid}.3"]
    assert [s["Rooms"] for s in shards] == [2, 2, 1]
    assert {s["Worker"].split("@", 1)[0] for s in shards} == set(WORKERS)
    assert [t["TargetId"] for t in final["Targets"]] == list(rooms)
    assert {k: t["State"] for k, t in final["Progress"]["Targets"].items()} == dict.fromkeys(
        rooms, "live"
    )
    assert api.status(f"{rid}.2")["ShardOf"] == rid
    listed = api.call("GET", f"/v1/pushes?SdkAppId=1400000001&Room={room_name}").body["Pushes"]
    assert [p["RequestId"] for p in listed] == [rid]  # its shards are part of it
    live = [e["TargetId"] for e in events_of(api, rid) if e["Event"] == "target-live"]
    assert sorted(live) == sorted(rooms)


def test_rooms_are_added_to_the_emptiest_shard_and_removed_from_theirs(
    stack: tuple[Api, Celery], room: LocalRoom, room_name: str, long_clip: str
) -> None:
    api, _ = stack
    rid = submit_split(api, room, room_name, long_clip)
    try:
        wait_all_running(api, rid, shards=3)
        added = {"StrRoomId": f"{room_name}_new", "UserId": "fan_new", "UserSig": "sig"}
        answer = api.call("POST", f"/v1/pushes/{rid}/targets", added)
        assert answer.status == 202, answer.body
        assert answer.body["TargetId"] == "t5"  # free across all shards, not only in .3
        assert [t["TargetId"] for t in api.status(f"{rid}.3")["Targets"]] == ["t4", "t5"]
        again = api.call("POST", f"/v1/pushes/{rid}/targets", dict(added, TargetId="other"))
        assert again.status == 400, again.body
        assert again.body["Error"]["Field"] == "UserId", again.body
        assert api.call("DELETE", f"/v1/pushes/{rid}/targets/t2").status == 202
        assert [t["TargetId"] for t in api.status(f"{rid}.2")["Targets"]] == ["t3"]
        # The last room of a shard ends that shard, not the push.
        assert api.call("DELETE", f"/v1/pushes/{rid}/targets/t3").status == 202
        api.wait_state(f"{rid}.2", {"stopped"}, timeout=10)
        assert api.status(rid)["State"] == "running"
    finally:
        api.call("POST", f"/v1/pushes/{rid}/stop")


def test_celerys_revoke_of_the_push_stops_every_shard(
    stack: tuple[Api, Celery], room: LocalRoom, room_name: str, long_clip: str
) -> None:
    api, celery = stack
    rid = submit_split(api, room, room_name, long_clip)
    wait_all_running(api, rid, shards=3)
    celery.control.revoke(rid)
    for shard in (rid, f"{rid}.2", f"{rid}.3"):
        final = api.wait_state(shard, {"succeeded", "failed", "stopped"}, timeout=15)
        assert final["State"] == "stopped", final
        assert final["Reason"] == "revoked through Celery (revoke)", final


def test_a_switchable_push_into_more_rooms_than_a_shard_is_refused(
    stack: tuple[Api, Celery], room: LocalRoom, room_name: str, clip: str
) -> None:
    api, _ = stack
    _, targets = five_rooms(room_name)
    body = job_for(room, clip, room_name, Targets=targets, Loop="all")
    answer = api.call("POST", "/v1/pushes", body)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == "Targets"
    assert "player commands reach one process" in answer.body["Error"]["Message"]


def test_stopping_a_push_whose_shards_wait_for_a_worker_leaves_celery_saying_revoked(
    stack: tuple[Api, Celery], room: LocalRoom, room_name: str, long_clip: str
) -> None:
    api, celery = stack
    busy = submit_split(api, room, room_name, long_clip)
    try:
        wait_all_running(api, busy, shards=3)  # every worker carries one of its shards
        waiting = submit_split(api, room, f"{room_name}w", long_clip)
        assert api.call("POST", f"/v1/pushes/{waiting}/stop").status == 200
        for shard in (waiting, f"{waiting}.2", f"{waiting}.3"):
            assert api.status(shard)["State"] == "stopped"
            assert celery.AsyncResult(shard).state == "REVOKED", shard
    finally:
        api.call("POST", f"/v1/pushes/{busy}/stop")
