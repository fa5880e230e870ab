"""A worker's warm shutdown (SIGTERM, e.g. a deploy) stops its pushes cleanly and fast."""

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


@pytest.fixture
def shutdown_stack(
    redis_server: RedisServer, service_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Api, subprocess.Popen[bytes], str]]:
    """A worker and API of their own (Redis db 5), so a test may shut the worker down."""
    url = redis_server.url.rsplit("/", 1)[0] + "/5"
    env = dict(service_env, ROOMCAST_REDIS_URL=url)
    worker = start_worker(env, tmp_path / "worker.log", "shutdown", concurrency=2)
    api_proc, base = start_api(env, tmp_path / "api.log")
    yield Api(base), worker, url
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
def test_a_warm_shutdown_stops_running_pushes_and_saves_their_bookmarks(
    shutdown_stack: tuple[Api, subprocess.Popen[bytes], str],
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    whole_group: bool,
) -> None:
    api, worker, url = shutdown_stack
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

    final = api.status(rid)
    assert final["State"] == "stopped", final
    assert final["Reason"] == "worker shutting down"
    assert final["FinishedAt"] is not None
    client = redis.Redis.from_url(url)
    saved = client.hget(bookmark_key(APP, room_name, room.media_url(long_clip)), "Position")
    assert saved is not None and float(saved) >= 3.0
    assert abs(float(saved) - final["Progress"]["Position"]) < 0.1
