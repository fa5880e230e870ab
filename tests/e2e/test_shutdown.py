"""A worker's warm shutdown (SIGTERM, e.g. a deploy) hands its pushes back, fast and clean."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs.bookmarks import bookmark_key

from ..conftest import job_for
from ..media import make_clip
from ..sources import stalling_source
from ..stack import Api, start_api, start_worker, stop

APP = 1400000001
#: honcho sends SIGKILL 5 s after SIGTERM; leave room for a slow test machine.
EXIT_WITHIN = 10.0


@pytest.fixture(params=["prefork", "threads"])
def shutdown_stack(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    service_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[tuple[Api, subprocess.Popen[bytes], str, dict[str, str], Path]]:
    """A worker (of each pool roomcast ships) and API of their own (Redis db 5), so a test
    may shut the worker down."""
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    # A push held up by a stalled source starts once 3 s of it are read (the probe).
    env = dict(service_env, ROOMCAST_REDIS_URL=url, ROOMCAST_MAX_REMUX_GOP_SECONDS="2")
    worker = start_worker(env, tmp_path / "worker.log", "shutdown", 2, request.param)
    api_proc, base = start_api(env, tmp_path / "api.log")
    yield Api(base), worker, url, env, tmp_path / "worker.log"
    stop(api_proc)
    stop(worker, sig=9)


def wait_position(api: Api, rid: str, position: float, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < position:
        assert time.monotonic() < deadline, f"the push did not reach {position} s"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "whole_group",
    [
        # honcho and systemd signal the whole process group: the pool children get it too.
        pytest.param(True, id="process_group"),
        # `kill <pid>` or a container runtime signals the main process only.
        pytest.param(False, id="main_process_only"),
    ],
)
def test_a_warm_shutdown_hands_running_pushes_back_with_their_position(
    shutdown_stack: tuple[Api, subprocess.Popen[bytes], str, dict[str, str], Path],
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    whole_group: bool,
) -> None:
    api, worker, url, env, log = shutdown_stack
    job = job_for(room, long_clip, room_name, Redis=True)
    rid = api.submit(**job)
    api.wait_state(rid, {"running"}, timeout=15)
    wait_position(api, rid, 3.0)

    if whole_group:
        os.killpg(worker.pid, signal.SIGTERM)
    else:
        worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    worker.wait(EXIT_WITHIN)
    assert time.monotonic() - signalled < EXIT_WITHIN

    handed = api.status(rid)
    assert handed["State"] == "queued", handed
    assert handed["Reason"] == "worker shut down: handed back"
    assert handed["FinishedAt"] is None
    client = redis.Redis.from_url(url)
    saved = client.hget(bookmark_key(APP, room_name, room.media_url(long_clip)), "Position")
    assert saved is not None and float(saved) >= 3.0
    assert abs(float(saved) - handed["Progress"]["Position"]) < 0.1

    # The next worker (after the deploy) continues the push from where it was.
    replacement = start_worker(env, log.with_name("replacement.log"), "replacement")
    try:
        api.wait_state(rid, {"running"}, timeout=20)
        wait_position(api, rid, float(saved) + 0.5)
        resumed = api.status(rid)
        assert resumed["Attempts"] == 2
        assert resumed["Progress"]["OutputTime"] < resumed["Progress"]["Position"] - 1.0
    finally:
        api.call("POST", f"/v1/pushes/{rid}/stop")
        stop(replacement)


def test_a_stop_asked_for_during_a_shutdown_ends_the_push_instead_of_handing_it_back(
    shutdown_stack: tuple[Api, subprocess.Popen[bytes], str, dict[str, str], Path],
    room: LocalRoom,
    room_name: str,
    tmp_path: Path,
) -> None:
    api, worker, _, _, _ = shutdown_stack
    clip = make_clip(tmp_path / "stalls.mp4", seconds=6, size="320x240", fps=25, gop=25)
    # The push is held up in a read of its stalled source, so the shutdown cannot end it at
    # once: the stop the API records meanwhile must win over the shutdown's hand-back.
    with stalling_source(clip.read_bytes(), stall_at=0.7) as source:
        rid = api.submit(**job_for(room, "unused", room_name, VideoSrc=source))
        api.wait_state(rid, {"running"}, timeout=15)
        wait_position(api, rid, 2.0)
        time.sleep(1.5)  # past what was read ahead: the read waits for the stalled source
        os.killpg(worker.pid, signal.SIGTERM)
        time.sleep(0.5)
        assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
    worker.wait(EXIT_WITHIN)
    final = api.status(rid)
    assert (final["State"], final["Reason"]) == ("stopped", "stopped through the API"), final
    assert final["Attempts"] == 1
