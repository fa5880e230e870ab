"""Session-wide real components: redis-server, the nginx-rtmp room, a Celery worker, the API.

Each starts on free loopback ports in a temp dir and is torn down at the end.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from .media import make_clip
from .stack import Api, start_api, start_procfile_worker, stop

_names = itertools.count()
CALLBACK_SECRET = "callback-secret-for-tests"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roomcast")


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    with RedisServer(workdir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def room(workdir: Path) -> Iterator[LocalRoom]:
    with LocalRoom(workdir / "room", media_dir=workdir / "media") as r:
        yield r


@pytest.fixture(scope="session")
def service_env(redis_server: RedisServer, room: LocalRoom) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update(
        {
            "ROOMCAST_REDIS_URL": redis_server.url,
            "ROOMCAST_RTMP_BASE": room.rtmp_base,
            "ROOMCAST_WORKER_LOST_SECONDS": "6",
            "ROOMCAST_HEARTBEAT_SECONDS": "1",
            "ROOMCAST_SOURCE_TIMEOUT_SECONDS": "5",
            "ROOMCAST_ROOM_TIMEOUT_SECONDS": "5",
            "ROOMCAST_LIVE_GRACE_SECONDS": "8",
            # The suite's jobs carry placeholder UserSigs ("sig-for-tests") into a room that
            # accepts any; tests/e2e/test_trtc.py runs its own API and room that check them.
            "ROOMCAST_USERSIG_CHECK": "off",
            "ROOMCAST_CALLBACK_SECRET": CALLBACK_SECRET,
            # Media, rooms and receivers are on loopback: the guard's own tests turn it on.
            "ROOMCAST_BLOCK_PRIVATE_ADDRESSES": "false",
            # The session's own rendition cache, empty at the start.
            "ROOMCAST_RENDITIONS_DIR": str(room.media_dir.parent / "renditions"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def worker_log(workdir: Path) -> Path:
    return workdir / "worker.log"


@pytest.fixture(scope="session")
def api_log(workdir: Path) -> Path:
    return workdir / "api.log"


@pytest.fixture(scope="session")
def events_log(workdir: Path) -> Path:
    return workdir / "events.log"


@pytest.fixture(scope="session")
def worker(service_env: dict[str, str], worker_log: Path, events_log: Path) -> Iterator[None]:
    """One worker process as a fresh install runs it: the Procfile's line (threads pool),
    and the Procfile's events worker, which delivers callbacks."""
    proc = start_procfile_worker(service_env, worker_log, "test")
    events = start_procfile_worker(service_env, events_log, "test-events", process="events")
    yield
    stop(events)
    stop(proc)


@pytest.fixture(scope="session")
def api(service_env: dict[str, str], api_log: Path, worker: None) -> Iterator[Api]:
    proc, base = start_api(service_env, api_log)
    yield Api(base)
    stop(proc)


@pytest.fixture(scope="session")
def media(room: LocalRoom) -> Path:
    room.media_dir.mkdir(parents=True, exist_ok=True)
    return room.media_dir


@pytest.fixture(scope="session")
def bframes_clip(media: Path) -> str:
    """10 s 720p30 H.264 High with B-frames + AAC 48 kHz: must be re-encoded."""
    make_clip(media / "bframes.mp4", seconds=10, bframes=3, h264_profile="high")
    return "bframes.mp4"


@pytest.fixture(scope="session")
def compat_clip(media: Path) -> str:
    """10 s 720p30 H.264 Main without B-frames + AAC 48 kHz: remuxed as it is."""
    make_clip(media / "compat.mp4", seconds=10, bframes=0, h264_profile="main")
    return "compat.mp4"


@pytest.fixture(scope="session")
def long_clip(media: Path) -> str:
    """60 s of a compatible clip at a small size, for stop tests."""
    make_clip(media / "long.mp4", seconds=60, size="320x240", fps=25)
    return "long.mp4"


@pytest.fixture(scope="session")
def short_clip(media: Path) -> str:
    """4 s of a compatible clip at a small size: a whole push that ends quickly."""
    make_clip(media / "short.mp4", seconds=4, size="320x240", fps=25)
    return "short.mp4"


@pytest.fixture
def room_name() -> str:
    """A fresh room per test, so viewers never see another test's stream."""
    return f"t{os.getpid()}_{next(_names)}"


def job_for(room_obj: LocalRoom, clip: str, room_name: str, **extra: object) -> dict[str, object]:
    """A valid template request pushing ``clip`` into ``room_name``."""
    job: dict[str, object] = {
        "VideoSrc": room_obj.media_url(clip),
        "SdkAppId": 1400000001,
        "StrRoomId": room_name,
        "UserId": "pusher_1",
        "UserSig": "sig-for-tests",
        "Mode": "vod",
    }
    job.update(extra)
    return job
