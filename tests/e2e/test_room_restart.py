"""The room's ingest restarting mid-push: the push reconnects and goes on, or fails clearly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop
from ..viewer import Viewer


@pytest.fixture
def flaky_room(tmp_path: Path) -> Iterator[LocalRoom]:
    """A room of its own on fixed ports, so it can be restarted under a running push."""
    room = LocalRoom(tmp_path / "room", rtmp_port=free_port(), http_port=free_port())
    room.start()
    yield room
    room.stop()


@pytest.fixture
def flaky_stack(service_env: dict[str, str], flaky_room: LocalRoom, tmp_path: Path):
    """A worker and API (Redis db 6) that push into the flaky room."""
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=service_env["ROOMCAST_REDIS_URL"].rsplit("/", 1)[0] + "/6",
        ROOMCAST_RTMP_BASE=flaky_room.rtmp_base,
        ROOMCAST_ROOM_RECONNECT_SECONDS="4",
    )
    worker = start_worker(env, tmp_path / "worker.log", "flaky", concurrency=1)
    api_proc, base = start_api(env, tmp_path / "api.log")
    yield Api(base)
    stop(api_proc)
    stop(worker)


def wait_position(api: Api, rid: str, position: float) -> None:
    deadline = time.monotonic() + 20
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < position:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_room_restart_mid_push_is_survived_with_a_reconnect(
    flaky_stack: Api, flaky_room: LocalRoom, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    api = flaky_stack
    job = job_for(room, long_clip, room_name)  # the source is served by the session room
    rid = api.submit(**job)
    api.wait_state(rid, {"running"}, timeout=15)
    wait_position(api, rid, 2.0)
    flaky_room.stop()
    time.sleep(1.0)
    flaky_room.start()
    back = time.monotonic()
    viewer = Viewer(flaky_room.play_url(room_name), wait=10, idle=3)
    viewer.start()
    deadline = time.monotonic() + 10
    while not viewer.capture.packets:
        assert time.monotonic() < deadline, viewer.capture.error or "no media after the restart"
        time.sleep(0.05)
    first_packet = viewer.capture.packets[0].arrival
    print(f"\nroom back → first packet at a viewer: {first_packet - back:.2f} s")
    status = api.status(rid)
    api.call("POST", f"/v1/pushes/{rid}/stop")
    viewer.join(10)
    assert first_packet - back < 5.0
    assert status["State"] == "running"
    assert status["Progress"]["RoomReconnects"] >= 1
    dts = [p.dts for p in viewer.capture.of("video")]
    assert dts == sorted(dts) and dts[0] > 1.5, "timestamps continue after the reconnect"


def test_a_room_that_stays_away_fails_the_push_with_a_reason(
    flaky_stack: Api, flaky_room: LocalRoom, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    api = flaky_stack
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    wait_position(api, rid, 2.0)
    flaky_room.stop()
    final = api.wait_state(rid, {"failed", "succeeded", "stopped"}, timeout=30)
    assert final["State"] == "failed"
    assert final["Error"]["Code"] == "RoomDisconnected"
    assert "did not come back within 4 s" in final["Error"]["Message"]
