"""Stopping pushes by request id, and status tracking that never shows a stale 'running'."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop
from ..viewer import Viewer


def test_stopping_a_running_push_ends_the_publish_within_a_second(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    viewer = Viewer(room.play_url(room_name), idle=3)
    viewer.start()
    time.sleep(0.3)
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    deadline = time.monotonic() + 15
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < 3:
        assert time.monotonic() < deadline, "the push did not reach 3 s"
        time.sleep(0.1)

    stopped_at = time.monotonic()
    answer = api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status == 200, answer.body
    assert answer.body["State"] == "stopped"
    assert room.publishers(room_name) == 0
    viewer.join(10)
    last = viewer.capture.last_arrival
    assert last is not None and last - stopped_at < 1.0
    final = api.status(rid)
    assert final["State"] == "stopped"
    assert 2.5 <= final["Progress"]["Position"] <= 5.0, final["Progress"]
    assert final["Reason"] == "stopped through the API"
    assert final["FinishedAt"] is not None


def test_stop_is_idempotent_and_delete_is_an_alias(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    assert api.call("DELETE", f"/v1/pushes/{rid}").status == 200
    again = api.call("POST", f"/v1/pushes/{rid}/stop")
    assert again.status == 200 and again.body["State"] == "stopped"


def test_stopping_a_finished_push_answers_409(api: Api, room: LocalRoom, room_name: str) -> None:
    rid = api.submit(**job_for(room, "missing.mp4", room_name))
    api.wait_state(rid, {"failed"}, timeout=15)
    answer = api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status == 409
    assert "failed" in answer.body["Error"]["Message"]


def test_stopping_an_unknown_push_answers_404(api: Api) -> None:
    assert api.call("POST", "/v1/pushes/nope/stop").status == 404


def test_a_push_reaching_its_max_duration_stops_with_that_reason(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, long_clip, room_name, MaxDuration=2))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    assert final["State"] == "stopped"
    assert "time limit" in final["Reason"]
    assert 1.5 <= final["Progress"]["OutputTime"] <= 2.1


@pytest.fixture
def own_stack(redis_server: RedisServer, service_env: dict[str, str], tmp_path: Path):
    """Two workers and an API of their own (Redis db 3), so a test may kill a worker."""
    env = dict(service_env, ROOMCAST_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/3")
    workers = {
        name: start_worker(env, tmp_path / f"{name}.log", name, concurrency=1)
        for name in ("killable_a", "killable_b")
    }
    api_proc, base = start_api(env, tmp_path / "api.log")
    yield Api(base), workers, env
    stop(api_proc)
    for worker in workers.values():
        stop(worker, sig=9)


def test_a_push_whose_worker_is_killed_continues_on_another_worker_within_30_seconds(
    own_stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    api, workers, _ = own_stack
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    deadline = time.monotonic() + 15
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first = api.status(rid)
    victim = first["Worker"].split("@", 1)[0]
    stop(workers[victim], sig=9)
    killed = time.monotonic()
    deadline = killed + 30
    while True:
        status = api.status(rid)
        if status["State"] == "running" and status["Worker"] != first["Worker"]:
            print(
                f"\nworker killed → running on the other worker: {time.monotonic() - killed:.1f} s"
            )
            break
        assert time.monotonic() < deadline, f"not taken over within 30 s: {status}"
        time.sleep(0.2)
    assert status["Attempts"] == 2
    time.sleep(3)
    again = api.status(rid)
    api.call("POST", f"/v1/pushes/{rid}/stop")
    # Continues from where the lost worker was (a remux resumes on the keyframe before).
    progress = again["Progress"]
    assert progress["Position"] >= first["Progress"]["Position"] - 2.5, again
    assert progress["Position"] - progress["OutputTime"] > 1.5, again
