"""Resume room by room: a fan-out push with Redis=true keeps a bookmark in each room, and a
later push of the same file starts each room where its viewers stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs.bookmarks import bookmark_key

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api
from ..viewer import FrameNumberViewer

APP = 1400000001
FPS = 25
SECONDS = 8


@pytest.fixture(scope="module")
def clip(media: Path) -> str:
    """8 s, 25 fps, a keyframe every second (frame numbers 0…199)."""
    make_numbered_clip(media / "fanout_resume.mp4", seconds=SECONDS, gop=FPS)
    return "fanout_resume.mp4"


def watch(room: LocalRoom, rooms: dict[str, str]) -> dict[str, FrameNumberViewer]:
    viewers = {key: FrameNumberViewer(room.play_url(name), idle=2.0) for key, name in rooms.items()}
    for viewer in viewers.values():
        viewer.start()
    time.sleep(0.3)
    return viewers


def wait_position(api: Api, rid: str, position: float) -> None:
    deadline = time.monotonic() + 20
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < position:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_fanout_push_resumes_each_room_from_where_its_viewers_stopped(
    api: Api, room: LocalRoom, room_name: str, clip: str, redis_server: RedisServer
) -> None:
    rooms = {"main": room_name, "t1": f"{room_name}_b", "t2": f"{room_name}_c"}
    targets = [
        {"TargetId": key, "StrRoomId": name, "UserId": f"fan_{key}", "UserSig": "sig"}
        for key, name in rooms.items()
        if key != "main"
    ]
    job = job_for(room, clip, room_name, Redis=True, Targets=targets)
    service_redis = redis.Redis.from_url(redis_server.url)
    keys = {key: bookmark_key(APP, name, room.media_url(clip)) for key, name in rooms.items()}

    # The first push: room t2 is removed about 2 s in, the push stopped about 4 s in.
    viewers = watch(room, rooms)
    rid = api.submit(**job)
    api.wait_state(rid, {"running"}, timeout=15)
    wait_position(api, rid, 2.0)
    assert api.call("DELETE", f"/v1/pushes/{rid}/targets/t2").status == 202
    wait_position(api, rid, 4.0)
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    api.wait_state(rid, {"stopped"}, timeout=15)
    for viewer in viewers.values():
        viewer.join(15)
    saved = {key: float(service_redis.hget(name, "Position") or -1) for key, name in keys.items()}
    last = {key: viewer.numbers[-1] for key, viewer in viewers.items()}
    assert saved["main"] == saved["t1"]
    assert round(saved["main"] * FPS) == last["main"] + 1  # where its viewers are
    # The removed room's is written each second while it is live: early by up to a report
    # (a second, more on a busy machine), never past what its viewers saw.
    assert last["t2"] + 1 - 2 * FPS <= round(saved["t2"] * FPS) <= last["t2"] + 1
    assert saved["t2"] < saved["main"] - 1

    # The same push again: two reads (two shards), each room from its own bookmark.
    viewers = watch(room, rooms)
    rid = api.submit(**job)
    status = api.wait_state(rid, {"running", "succeeded"}, timeout=15)
    assert [s["RequestId"] for s in status["Shards"]] == [rid, f"{rid}.2"]
    for viewer in viewers.values():
        viewer.join(20)
    for key, viewer in viewers.items():
        # Remuxed, a resume starts at the keyframe at or before the bookmark (one a second).
        start = round(saved[key] * FPS) // FPS * FPS
        assert viewer.numbers == list(range(start, SECONDS * FPS)), key
    deadline = time.monotonic() + 10
    while service_redis.exists(*keys.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not service_redis.exists(*keys.values())  # every room saw the end
