"""The template's Redis feature: progress saved as a push goes, and resumed precisely."""

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


#: The numbered clips' length, in seconds.
CLIP_SECONDS = 8


@pytest.fixture(scope="session")
def numbered_remux(media: Path) -> str:
    """8 s, 1 s GOP, no B-frames: remuxed."""
    make_numbered_clip(media / "numbered_remux.mp4", seconds=CLIP_SECONDS, gop=FPS)
    return "numbered_remux.mp4"


@pytest.fixture(scope="session")
def numbered_transcode(media: Path) -> str:
    """8 s with B-frames and a 2 s GOP: re-encoded."""
    make_numbered_clip(
        media / "numbered_transcode.mp4", seconds=CLIP_SECONDS, gop=2 * FPS, bframes=2
    )
    return "numbered_transcode.mp4"


@pytest.fixture(scope="session")
def service_redis(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


def named_redis_job(
    room: LocalRoom,
    clip: str,
    room_name: str,
    port: int,
    password: str | None = None,
    **extra: object,
) -> dict:
    """A Redis=true job whose bookmark goes to the Redis at 127.0.0.1:``port``."""
    job = job_for(room, clip, room_name, Redis=True, RedisHost="127.0.0.1", RedisPort=port, **extra)
    if password is not None:
        job["RedisPassword"] = password
    return job


def watch_numbers(room: LocalRoom, room_name: str) -> FrameNumberViewer:
    viewer = FrameNumberViewer(room.play_url(room_name))
    viewer.start()
    time.sleep(0.3)
    return viewer


def push_until(api: Api, job: dict, position: float) -> str:
    rid = api.submit(**job)
    api.wait_state(rid, {"running"}, timeout=15)
    deadline = time.monotonic() + 30
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < position:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    return rid


def test_a_stopped_push_resumes_where_it_stopped_then_forgets_its_bookmark(
    api: Api,
    room: LocalRoom,
    room_name: str,
    service_redis: redis.Redis,
    numbered_transcode: str,
) -> None:
    # The frame a resume starts on, remuxed and re-encoded, is checked in
    # tests/integration/test_resume_points.py; here, the bookmark's way through Redis and a worker.
    clip = numbered_transcode
    job = job_for(room, clip, room_name, Redis=True)
    key = bookmark_key(APP, room_name, room.media_url(clip))

    before = watch_numbers(room, room_name)
    push_until(api, job, 3.0)
    before.join(10)
    last_seen = before.numbers[-1]
    saved = float(service_redis.hget(key, "Position"))
    # The status's position is a second old at most, and a busy machine stops a little later.
    assert 2.9 <= saved <= 5.0
    assert round(saved * FPS) == last_seen + 1  # the bookmark is where the viewers are
    assert service_redis.ttl(key) > 0

    viewer = watch_numbers(room, room_name)
    started = time.monotonic()
    rid = api.submit(**job)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    elapsed = time.monotonic() - started
    viewer.join(10)
    assert final["State"] == "succeeded", final
    assert viewer.numbers[0] == last_seen + 1  # no frame twice, none missing
    assert CLIP_SECONDS - saved - 1.5 <= elapsed <= CLIP_SECONDS - saved + 3
    assert viewer.numbers[-1] == CLIP_SECONDS * FPS - 1
    assert not service_redis.exists(key)

    viewer = watch_numbers(room, room_name)
    rid = api.submit(**dict(job, MaxDuration=2))
    api.wait_state(rid, {"stopped"}, timeout=20)
    viewer.join(10)
    assert viewer.numbers and viewer.numbers[0] == 0, viewer.error


def test_without_redis_a_push_neither_reads_nor_writes_a_bookmark(
    api: Api, room: LocalRoom, room_name: str, service_redis: redis.Redis, numbered_remux: str
) -> None:
    key = bookmark_key(APP, room_name, room.media_url(numbered_remux))
    service_redis.hset(key, mapping={"Position": "12.0"})
    viewer = watch_numbers(room, room_name)
    rid = api.submit(**job_for(room, numbered_remux, room_name, MaxDuration=3))
    api.wait_state(rid, {"stopped"}, timeout=20)
    viewer.join(10)
    assert viewer.numbers and viewer.numbers[0] == 0, viewer.error
    assert service_redis.hget(key, "Position") == b"12.0"


def test_two_rooms_keep_separate_bookmarks_of_the_same_source(
    api: Api, room: LocalRoom, room_name: str, service_redis: redis.Redis, numbered_remux: str
) -> None:
    a, b = f"{room_name}_a", f"{room_name}_b"
    push_until(api, job_for(room, numbered_remux, a, Redis=True), 2.0)
    push_until(api, job_for(room, numbered_remux, b, Redis=True), 4.0)
    pos_a = float(
        service_redis.hget(bookmark_key(APP, a, room.media_url(numbered_remux)), "Position")
    )
    pos_b = float(
        service_redis.hget(bookmark_key(APP, b, room.media_url(numbered_remux)), "Position")
    )
    assert pos_a < 3.5 <= pos_b


@pytest.fixture(scope="module")
def guarded_redis(workdir: Path):
    with RedisServer(workdir / "guarded", password="PW-guarded-8831") as server:
        yield server


def test_a_password_protected_redis_named_in_the_request_holds_the_bookmark(
    api: Api, room: LocalRoom, room_name: str, guarded_redis: RedisServer, numbered_remux: str
) -> None:
    job = named_redis_job(
        room, numbered_remux, room_name, guarded_redis.port, password=guarded_redis.password
    )
    push_until(api, job, 2.0)
    client = redis.Redis(port=guarded_redis.port, password=guarded_redis.password)
    key = bookmark_key(APP, room_name, room.media_url(numbered_remux))
    assert float(client.hget(key, "Position")) >= 2.0


def test_a_wrong_redis_password_fails_the_job_with_a_reason_that_hides_it(
    api: Api, room: LocalRoom, room_name: str, guarded_redis: RedisServer, numbered_remux: str
) -> None:
    wrong = "WRONG-pw-55123"
    job = named_redis_job(room, numbered_remux, room_name, guarded_redis.port, password=wrong)
    rid = api.submit(**job)
    final = api.wait_state(rid, {"failed", "succeeded", "stopped"}, timeout=15)
    assert final["State"] == "failed"
    assert final["Error"]["Code"] == "ProgressStoreError"
    assert f"127.0.0.1:{guarded_redis.port}" in final["Error"]["Message"]
    assert "password" in final["Error"]["Message"]
    assert wrong not in str(final)


def test_an_unreachable_redis_fails_the_job_naming_the_host(
    api: Api, room: LocalRoom, room_name: str, numbered_remux: str
) -> None:
    from devstack.ports import free_port

    port = free_port()
    job = job_for(
        room, numbered_remux, room_name, Redis=True, RedisHost="127.0.0.1", RedisPort=port
    )
    final = api.wait_state(api.submit(**job), {"failed", "succeeded", "stopped"}, timeout=15)
    assert final["State"] == "failed"
    assert f"127.0.0.1:{port}" in final["Error"]["Message"]


def test_losing_the_progress_redis_mid_push_does_not_stop_the_push(
    api: Api, room: LocalRoom, room_name: str, workdir: Path, numbered_remux: str
) -> None:
    server = RedisServer(workdir / f"doomed_{room_name}")
    server.start()
    job = named_redis_job(room, numbered_remux, room_name, server.port, MaxDuration=6)
    rid = api.submit(**job)
    api.wait_state(rid, {"running"}, timeout=15)
    time.sleep(2)
    server.stop()
    # The status shows it from the progress report after the first failed save: reports come
    # about once a second, each taken when the push's thread wakes (up to 0.5 s later).
    deadline = time.monotonic() + 4
    while not api.status(rid)["Progress"]["ProgressSaving"].startswith(
        "progress is not being saved"
    ):
        assert time.monotonic() < deadline, api.status(rid)
        time.sleep(0.1)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    assert final["State"] == "stopped" and "time limit" in final["Reason"]
