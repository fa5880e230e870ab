"""An Engine=cloud stack: its own Redis, a Celery worker, two APIs (one with Tencent Cloud
credentials, one without), a local room that checks UserSigs, and the fake TRTC endpoint
(tests/trtc_fake.py) that checks every TC3-HMAC-SHA256 signature.

Used by tests/e2e/test_trtc_cloud.py and the secrets tests (tests/e2e/test_secrets.py): a
module fixture of each calls :func:`cloud_stack`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from .conftest import job_for
from .stack import Api, start_api, start_worker, stop
from .trtc_fake import FakeTrtc

APP = 1400000001
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
SECRET_ID = "AKIDroomcastCLOUD"
SECRET_KEY = "tc-secret-key-cloud-7e1"
ROBOT = "robot1"


@dataclass
class CloudStack:
    """The services these tests push through."""

    api: Api  # with TENCENTCLOUD_* credentials and a region
    bare_api: Api  # without credentials
    room: LocalRoom  # checks UserSigs, knows who publishes
    trtc: FakeTrtc
    redis: redis.Redis
    env: dict[str, str]
    work: Path
    #: Worker processes by Celery node name; a test may stop one and start another.
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def worker_log(self) -> Path:
        """The first worker's log."""
        return self.work / "worker.log"

    @property
    def api_log(self) -> Path:
        """The log of the API with credentials."""
        return self.work / "api.log"


@contextmanager
def cloud_stack(service_env: dict[str, str], work: Path) -> Iterator[CloudStack]:
    """Start the stack in ``work``; stop it at the end."""
    fake = FakeTrtc({SECRET_ID: SECRET_KEY}).start()
    with (
        RedisServer(work / "redis") as redis_server,
        LocalRoom(work / "room", secret_keys={APP: KEY}) as room,
    ):
        assert room.auth is not None
        auth = room.auth
        # TRTC sees in a room whoever publishes into the local room (and its ingest robots).
        fake.members = lambda app, name: set(auth.users_in(name)) if app == APP else set()
        env = dict(
            service_env,
            ROOMCAST_REDIS_URL=redis_server.url,
            ROOMCAST_RTMP_BASE=room.rtmp_base,
            ROOMCAST_USERSIG_CHECK="verify",
            ROOMCAST_SDK_SECRET_KEYS=f"{APP}:{KEY}",
            ROOMCAST_TRTC_ENDPOINT=fake.endpoint,
            ROOMCAST_TRTC_REGION="ap-guangzhou",
            ROOMCAST_TRTC_INGEST_POLL_SECONDS="0.2",
            ROOMCAST_TRTC_PRESENCE_SECONDS="0.5",
            TENCENTCLOUD_SECRET_ID=SECRET_ID,
            TENCENTCLOUD_SECRET_KEY=SECRET_KEY,
        )
        bare_env = {k: v for k, v in env.items() if not k.startswith("TENCENTCLOUD_")}
        worker = start_worker(env, work / "worker.log", "cloud")
        api, base = start_api(env, work / "api.log")
        bare_api, bare_base = start_api(bare_env, work / "bare-api.log")
        client = redis.Redis.from_url(redis_server.url)
        stack = CloudStack(Api(base), Api(bare_base), room, fake, client, env, work)
        stack.workers["cloud"] = worker
        try:
            yield stack
        finally:
            client.close()
            for proc in (bare_api, api, *stack.workers.values()):
                stop(proc)
            fake.stop()


def cloud_job(media_room: LocalRoom, room_name: str, **changes: Any) -> dict[str, Any]:
    """An Engine=cloud job; the UserSig is left for roomcast to sign (its key is configured)."""
    job = job_for(media_room, "film.mp4", room_name, UserId=ROBOT, UserSig=None, Engine="cloud")
    job.update(changes)
    return {k: v for k, v in job.items() if v is not None}
