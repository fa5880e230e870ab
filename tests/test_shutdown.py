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
from worker.progress_store import bookmark_key

from .conftest import job_for
from .stack import Api, start_api, start_worker, stop

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
    env = dict(service_env, ROOMCAST_REDIS_URL=url)
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
