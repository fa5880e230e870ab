"""Celery's own tools stop pushes and tell the truth about them, on both pools roomcast ships.

Users of a Celery app stop a task with ``celery control revoke``, ``revoke(terminate=True)``
with a signal of their choice, stamped revokes, or Flower's Revoke and Terminate buttons,
and they read ``AsyncResult`` and Flower. Each is driven here as a user drives it, against
real processes: a worker started from the Procfile's own line (prefork, then threads), the
API, and Flower with basic auth on. "Stopped" is checked from outside: the record's state,
the room's publisher count (nginx-rtmp's), ``AsyncResult`` and Flower's view of the task.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_clip
from ..sources import stalling_source
from ..stack import BIN, REPO, Api, start_api, start_flower, start_procfile_worker, stop
from ..viewer import Viewer

APP = 1400000001
FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-password-for-tests"
#: The issue's bound: every stop path ends the push within this.
STOP_WITHIN = 2.0
TERMINATED = "terminated through Celery (revoke terminate=True, signal {})"
FINAL = {"succeeded", "failed", "stopped"}
#: Redis databases of the two stacks (others are taken by other modules).
DATABASES = {"prefork": 12, "threads": 13}


@dataclass
class Stack:
    """One pool's two workers (from the Procfile line, one push each: every revoke reaches
    both), the API, Flower and a Celery client."""

    pool: str
    env: dict[str, str]
    api: Api
    flower: str
    celery: Celery
    redis: Any


@pytest.fixture(scope="module", params=["prefork", "threads"])
def stack(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    pool = request.param
    url = f"{redis_server.url.rsplit('/', 1)[0]}/{DATABASES[pool]}"
    client: Any = redis.Redis.from_url(url)
    client.flushdb()
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=url,
        ROOMCAST_WORKER_POOL=pool,
        ROOMCAST_WORKER_CONCURRENCY="1",
        ROOMCAST_TASK_STATE_SECONDS="0.5",
        # The stalled push below starts once 3 s of its source are read (the probe).
        ROOMCAST_MAX_REMUX_GOP_SECONDS="2",
    )
    logs = tmp_path_factory.mktemp(f"celery-{pool}")
    workers = [start_procfile_worker(env, logs / f"worker{n}.log", f"{pool}.{n}") for n in (1, 2)]
    api_proc, base = start_api(env, logs / "api.log")
    flower_proc, flower = start_flower(
        env, logs / "flower.log", basic_auth=f"{FLOWER_USER}:{FLOWER_PASSWORD}"
    )
    celery = Celery("a-user-s-client", broker=url, backend=url)
    try:
        yield Stack(pool, env, Api(base), flower, celery, client)
    finally:
        celery.close()
        stop(flower_proc)
        stop(api_proc)
        for worker in workers:
            stop(worker)
        client.close()


# --- helpers ---------------------------------------------------------------------------


def running(stack: Stack, room: LocalRoom, clip: str, room_name: str, **extra: Any) -> str:
    """Submit a push and return its id once the room shows its publisher."""
    rid = stack.api.submit(**job_for(room, clip, room_name, **extra))
    stack.api.wait_state(rid, {"running"}, timeout=15)
    _until(lambda: room.publishers(room_name) == 1, 10, "the publisher never appeared")
    return rid


def stopped_within(
    stack: Stack, room: LocalRoom, rid: str, room_name: str, since: float
) -> dict[str, Any]:
    """The push's status once it is ``stopped`` and its publisher gone, both by
    :data:`STOP_WITHIN` after ``since``."""
    deadline = since + STOP_WITHIN
    status = stack.api.status(rid)
    while status["State"] != "stopped" or room.publishers(room_name) != 0:
        assert time.monotonic() < deadline, (
            f"{time.monotonic() - since:.2f} s after the stop: {status['State']}, "
            f"{room.publishers(room_name)} publisher(s): {status}"
        )
        time.sleep(0.05)
        status = stack.api.status(rid)
    return status


def celery_says(stack: Stack, rid: str, state: str) -> Any:
    """``AsyncResult(rid)`` once it is in ``state`` (within 3 s)."""
    result = stack.celery.AsyncResult(rid)
    _until(lambda: result.state == state, 3, f"AsyncResult stayed {result.state}, not {state}")
    return result


def revoked_with(stack: Stack, rid: str, reason: str) -> None:
    """``AsyncResult(rid)`` is ``REVOKED`` with ``reason`` (within 3 s: a terminated task's
    result is written by Celery, then given the push's reason by the worker)."""

    def says() -> tuple[str, str]:
        result = stack.celery.AsyncResult(rid)  # a new one: a ready result is cached
        return result.state, str(result.result)

    _until(lambda: says() == ("REVOKED", reason), 3, f"AsyncResult says {says()}, not {reason}")


def flower(stack: Stack, method: str, path: str, auth: bool = True, **form: str) -> Any:
    """Call Flower's HTTP API as its own pages do (basic auth, form-encoded POSTs)."""
    headers = {}
    if auth:
        token = base64.b64encode(f"{FLOWER_USER}:{FLOWER_PASSWORD}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = urllib.parse.urlencode(form).encode() if method == "POST" else None
    req = urllib.request.Request(stack.flower + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def flower_says(stack: Stack, rid: str, state: str) -> dict[str, Any]:
    """Flower's view of the task (its events) once it is in ``state`` (within 3 s)."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal seen
        try:
            seen = flower(stack, "GET", f"/api/task/info/{rid}")
        except urllib.error.HTTPError as unknown:  # not known to Flower yet
            unknown.close()
            return False
        return bool(seen.get("state") == state)

    _until(reached, 3, lambda: f"Flower shows {seen.get('state')}, not {state}")
    return seen


def fill_the_workers(stack: Stack, room: LocalRoom, clip: str, room_name: str) -> list[str]:
    """Two running pushes: both workers' slots taken."""
    return [running(stack, room, clip, f"{room_name}_{n}") for n in range(2)]


def end(stack: Stack, *rids: str) -> None:
    for rid in rids:
        stack.api.call("POST", f"/v1/pushes/{rid}/stop")


def _until(check: Callable[[], bool], seconds: float, why: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, why() if callable(why) else why
        time.sleep(0.05)


# --- stopping a running push ----------------------------------------------------------


@pytest.mark.parametrize(
    "command, reason",
    [
        (["revoke"], "revoked through Celery (revoke)"),
        (["terminate", "SIGTERM"], TERMINATED.format("SIGTERM")),
    ],
    ids=["revoke", "terminate"],
)
def test_celery_control_on_the_command_line_stops_a_running_push(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str, command: list[str], reason: str
) -> None:
    rid = running(stack, room, long_clip, room_name)
    line = [str(BIN / "celery"), "-A", "worker", "control", *command, rid]
    done = subprocess.run(line, env=stack.env, cwd=REPO, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    status = stopped_within(stack, room, rid, room_name, time.monotonic())
    assert status["Reason"] == reason
    revoked_with(stack, rid, reason)
    flower_says(stack, rid, "REVOKED")


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGKILL", "SIGINT", "SIGUSR1", "SIGHUP"])
def test_revoke_with_terminate_stops_a_running_push_whatever_the_signal(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str, signal: str
) -> None:
    rid = running(stack, room, long_clip, room_name)
    sent = time.monotonic()
    stack.celery.control.revoke(rid, terminate=True, signal=signal)
    status = stopped_within(stack, room, rid, room_name, sent)
    reason = TERMINATED.format(signal)
    assert status["Reason"] == reason
    revoked_with(stack, rid, reason)


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
def test_terminate_ends_a_push_held_up_by_a_stalled_source_within_two_seconds(
    stack: Stack, room: LocalRoom, room_name: str, tmp_path: Path, signal: str
) -> None:
    clip = make_clip(tmp_path / "stalls.mp4", seconds=6, size="320x240", fps=25, gop=25)
    # The source's server sends 70% of the file, then holds the connection without a byte
    # more: the push's thread waits in FFmpeg's read, where no stop reaches it.
    with stalling_source(clip.read_bytes(), stall_at=0.7) as source:
        rid = stack.api.submit(**job_for(room, "unused", room_name, VideoSrc=source))
        _until(lambda: room.publishers(room_name) == 1, 15, "the publisher never appeared")
        _until(lambda: _stalled(stack, rid), 15, "the push never stalled")
        sent = time.monotonic()
        # Not ended by the stop it is asked for: the signal follows a second later (prefork:
        # SIGKILL kills the child, SIGTERM is caught and changes nothing; threads: nothing
        # can be signalled), and the worker's main process ends the record.
        stack.celery.control.revoke(rid, terminate=True, signal=signal)
        status = stopped_within(stack, room, rid, room_name, sent)
        assert status["Reason"] == TERMINATED.format(signal)
        revoked_with(stack, rid, TERMINATED.format(signal))
    # Its source answers again: a thread that was held (threads pool) ends and frees its slot.
    _until(lambda: not _active(stack, rid), 10, "the push's task never ended")
    # The worker lives on (prefork: the killed child is replaced) and takes new pushes.
    rid = stack.api.submit(**job_for(room, "missing.mp4", room_name))
    assert stack.api.wait_state(rid, FINAL, timeout=15)["State"] == "failed"


def _active(stack: Stack, rid: str) -> bool:
    """Whether a worker still runs the push's task (Celery's ``inspect active``)."""
    active = stack.celery.control.inspect(timeout=0.5).active() or {}
    return any(task["id"] == rid for tasks in active.values() for task in tasks)


def _stalled(stack: Stack, rid: str) -> bool:
    """Whether the push's position has not moved for longer than a progress report takes."""
    before = (stack.api.status(rid)["Progress"] or {}).get("Position", 0)
    time.sleep(1.5)
    after = (stack.api.status(rid)["Progress"] or {}).get("Position", 0)
    return bool(after > 2 and after == before)


def test_revoke_by_stamped_headers_stops_every_push_of_a_user(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    user = f"bot_{room_name}"
    rooms = [room_name, f"{room_name}_b"]
    rids = [running(stack, room, long_clip, r, UserId=user) for r in rooms]
    sent = time.monotonic()
    stack.celery.control.revoke_by_stamped_headers({"userid": f"{APP}:{user}"})
    for rid, r in zip(rids, rooms, strict=True):
        status = stopped_within(stack, room, rid, r, sent)
        assert status["Reason"] == (
            f"revoked through Celery by stamped headers (userid={APP}:{user})"
        )
        celery_says(stack, rid, "REVOKED")
    # The stamps are not remembered: the same user's next push runs.
    again = running(stack, room, long_clip, room_name, UserId=user)
    end(stack, again)


def test_revoke_by_stamped_headers_of_a_room_stops_its_pushes_and_no_other(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    target, other = room_name, f"{room_name}_other"
    rids = [running(stack, room, long_clip, r) for r in (target, other)]
    sent = time.monotonic()
    stack.celery.control.revoke_by_stamped_headers({"room": [f"{APP}:{target}"]})
    stopped_within(stack, room, rids[0], target, sent)
    time.sleep(0.5)
    assert stack.api.status(rids[1])["State"] == "running"
    end(stack, rids[1])


@pytest.mark.parametrize("terminate", ["false", "true"], ids=["revoke_button", "terminate_button"])
def test_flowers_buttons_stop_a_running_push(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str, terminate: str
) -> None:
    rid = running(stack, room, long_clip, room_name)
    flower_says(stack, rid, "STARTED")
    sent = time.monotonic()
    # What the task page's buttons post (flower/static/js/flower.js).
    flower(stack, "POST", f"/api/task/revoke/{rid}", terminate=terminate)
    status = stopped_within(stack, room, rid, room_name, sent)
    assert status["Reason"] == (
        "terminated through Celery (revoke terminate=True, signal SIGTERM)"
        if terminate == "true"
        else "revoked through Celery (revoke)"
    )
    flower_says(stack, rid, "REVOKED")


def test_flowers_api_needs_its_credentials(stack: Stack) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        flower(stack, "GET", "/api/workers", auth=False)
    refused.value.close()
    assert refused.value.code == 401


def test_the_stop_api_leaves_celery_saying_revoked(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = running(stack, room, long_clip, room_name)
    assert stack.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    revoked_with(stack, rid, "stopped through the API")
    flower_says(stack, rid, "REVOKED")


# --- stopping a queued push -----------------------------------------------------------


QUEUED_STOPS = {
    "api": "stopped through the API",
    "revoke": "revoked through Celery (revoke)",
    "terminate": "terminated through Celery (revoke terminate=True, signal SIGTERM)",
    "flower_revoke": "revoked through Celery (revoke)",
}


@pytest.mark.parametrize("how", list(QUEUED_STOPS))
def test_stopping_a_queued_push_ends_it_before_it_ever_publishes(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str, how: str
) -> None:
    busy = fill_the_workers(stack, room, long_clip, room_name)
    # A viewer waiting in the room would see any frame the push ever sent.
    viewer = Viewer(room.play_url(room_name), wait=3)
    viewer.start()
    try:
        rid = stack.api.submit(**job_for(room, long_clip, room_name))
        assert stack.api.status(rid)["State"] == "queued"
        sent = time.monotonic()
        if how == "api":
            answer = stack.api.call("POST", f"/v1/pushes/{rid}/stop")
            assert answer.status == 200 and answer.body["State"] == "stopped", answer.body
        elif how == "flower_revoke":
            flower(stack, "POST", f"/api/task/revoke/{rid}", terminate="false")
        else:
            stack.celery.control.revoke(rid, terminate=how == "terminate")
        status = stopped_within(stack, room, rid, room_name, sent)
        assert status["Reason"] == f"{QUEUED_STOPS[how]}, before it started"
        assert status["StartedAt"] is None
        celery_says(stack, rid, "REVOKED")
        flower_says(stack, rid, "REVOKED")
    finally:
        end(stack, *busy)
    # The worker's slots are free now: the stopped push's message is dropped, never run.
    viewer.join(15)
    assert not viewer.capture.packets
    assert stack.api.status(rid)["State"] == "stopped"


def test_pushes_wait_in_roomcasts_own_queue_stamped_with_what_they_are(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    busy = fill_the_workers(stack, room, long_clip, room_name)
    try:
        rid = stack.api.submit(**job_for(room, long_clip, room_name, UserId="waiting_1"))
        waiting = [json.loads(m) for m in stack.redis.lrange("roomcast", 0, -1)]
        assert [m["headers"]["id"] for m in waiting] == [rid]
        assert waiting[0]["headers"]["stamps"] == {
            "sdkappid": str(APP),
            "room": f"{APP}:{room_name}",
            "userid": f"{APP}:waiting_1",
        }
        assert stack.redis.llen("celery") == 0
    finally:
        end(stack, rid, *busy)


# --- Celery's state is the push's state -----------------------------------------------


def test_a_failed_push_is_a_celery_failure_with_its_error_code_and_message(
    stack: Stack, room: LocalRoom, room_name: str
) -> None:
    rid = stack.api.submit(**job_for(room, "missing.mp4", room_name))
    error = stack.api.wait_state(rid, FINAL, timeout=15)["Error"]
    result = celery_says(stack, rid, "FAILURE")
    assert str(result.result) == f"{error['Code']}: {error['Message']}"
    assert error["Code"] == "SourceNotFound"
    assert flower_says(stack, rid, "FAILURE")["exception"].startswith("PushFailed(")


def test_a_push_that_plays_to_its_end_is_a_celery_success(
    stack: Stack, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = stack.api.submit(**job_for(room, short_clip, room_name))
    assert stack.api.wait_state(rid, FINAL, timeout=20)["State"] == "succeeded"
    result = celery_says(stack, rid, "SUCCESS")
    assert result.result["State"] == "succeeded" and result.result["Position"] > 3
    flower_says(stack, rid, "SUCCESS")


def test_a_running_push_shows_its_progress_room_and_source_in_celery_without_secrets(
    stack: Stack, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    secret = "sign-value-that-must-not-show"
    source = f"{room.media_url(long_clip)}?sign={secret}&quality=hd"
    rid = running(stack, room, long_clip, room_name, VideoSrc=source)
    try:
        result = stack.celery.AsyncResult(rid)
        # The bitrate is measured between two progress reports, a second apart.
        _until(lambda: result.state == "PROGRESS" and result.info["Bitrate"], 5, "no PROGRESS")
        meta = result.info
        assert meta["Room"] == room_name and meta["UserId"] == "pusher_1"
        assert meta["Position"] > 0 and meta["SdkAppId"] == APP
        assert meta["VideoSrc"].startswith(room.media_url(long_clip))
        assert "quality=hd" in meta["VideoSrc"] and secret not in meta["VideoSrc"]
        # Flower's task page shows the same summary as the task's result while it runs.
        seen = flower_says(stack, rid, "STARTED")
        _until(
            lambda: "Position" in (flower(stack, "GET", f"/api/task/info/{rid}")["result"] or ""),
            3,
            "Flower shows no progress",
        )
        shown = flower(stack, "GET", f"/api/task/info/{rid}")
        assert room_name in shown["result"] and secret not in json.dumps(shown)
        assert shown["started"] == seen["started"]  # the start time is kept
    finally:
        end(stack, rid)
