"""The service a benchmark measures: its own Redis, the local room, the API and workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.layout import procfile_command, worker_processes
from devstack.ports import free_port, wait_for_port
from devstack.redis import RedisServer
from devstack.room import LocalRoom
from tests.stack import REPO, Api, start_api, start_procfile_worker, stop


@dataclass
class Service:
    """A running roomcast: what a benchmark pushes through and measures."""

    workdir: Path
    redis: RedisServer
    room: LocalRoom
    api: Api
    workers: list[subprocess.Popen[bytes]]


@dataclass
class LoneApi:
    """The API process and the port it listens on."""

    proc: subprocess.Popen[bytes]
    port: int


@contextmanager
def api_alone(redis_url: str, web: str | None = None) -> Iterator[LoneApi]:
    """The API alone (no worker) as the Procfile's ``web`` line (or ``web``) runs it, on a
    free ``$PORT``, its output discarded; killed with its workers at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update(
        ROOMCAST_REDIS_URL=redis_url,
        ROOMCAST_LOG_LEVEL="WARNING",
        ROOMCAST_USERSIG_CHECK="off",
        ROOMCAST_BLOCK_PRIVATE_ADDRESSES="false",
        PORT=str(port),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {web or procfile_command('web')}"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 30)
        yield LoneApi(proc, port)
    finally:
        # Followers still waiting would hold gunicorn's graceful stop: this is a throwaway.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def push_job(video_src: str, room: str, **fields: Any) -> dict[str, Any]:
    """A vod push request of ``video_src`` into ``room``, with any further ``fields``."""
    return {
        "VideoSrc": video_src,
        "SdkAppId": 1400000001,
        "StrRoomId": room,
        "UserId": "bench",
        "UserSig": "sig-for-bench",
        "Mode": "vod",
        **fields,
    }


def service_env(redis_url: str, room: LocalRoom) -> dict[str, str]:
    """The service's settings for a benchmark: defaults, plus where Redis and the room are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update(
        {
            "ROOMCAST_REDIS_URL": redis_url,
            "ROOMCAST_RTMP_BASE": room.rtmp_base,
            "ROOMCAST_USERSIG_CHECK": "off",
            "ROOMCAST_BLOCK_PRIVATE_ADDRESSES": "false",  # the room serves clips on loopback
            # The bench's own rendition cache, beside the room.
            "ROOMCAST_RENDITIONS_DIR": str(room.media_dir.parent / "renditions"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def running_service(
    workers: int | None = None,
    concurrency: int | None = None,
    pool: str | None = None,
    settings: Mapping[str, str] | None = None,
    events: bool = False,
) -> Iterator[Service]:
    """Redis, a room without HLS, the API and the workers, in a temp dir.

    The workers are the Procfile's ``worker`` line, started as ``scripts/dev`` starts it:
    by default as many as ``devstack/layout.py`` sizes for this machine, each in its default
    pool and concurrency (the measured best layout). ``workers``, ``concurrency`` and
    ``pool`` change it, for a benchmark comparing layouts. ``events`` starts the Procfile's
    ``events`` worker too, which delivers callbacks.

    The room cuts no HLS: nginx-rtmp writes each TS packet with its own system call, CPU
    that a benchmark would take from the pushes it measures (docs/benchmarks.md).
    """
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis") as redis_server:
        workdir = Path(tmp)
        with LocalRoom(workdir / "room", hls=False) as room:
            room.media_dir.mkdir(parents=True, exist_ok=True)
            env = service_env(redis_server.url, room)
            env.update(settings or {})
            if concurrency is not None:
                env["ROOMCAST_WORKER_CONCURRENCY"] = str(concurrency)
            if pool is not None:
                env["ROOMCAST_WORKER_POOL"] = pool
            count = workers if workers is not None else worker_processes()
            api_proc, base = start_api(env, workdir / "api.log")
            procs: list[subprocess.Popen[bytes]] = []
            try:
                for i in range(1, count + 1):
                    log = workdir / f"worker.{i}.log"
                    procs.append(start_procfile_worker(env, log, f"worker.{i}"))
                if events:
                    log = workdir / "events.1.log"
                    procs.append(start_procfile_worker(env, log, "events.1", "events"))
                yield Service(workdir, redis_server, room, Api(base), procs)
            finally:
                for proc in procs:
                    stop(proc)
                stop(api_proc)
