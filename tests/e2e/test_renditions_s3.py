"""Renditions shared by worker machines through an S3-compatible store, as an operator runs
it: settings in the environment, credentials through boto3's chain, moto's S3 server.

Machine A's worker prepares a lesson's clips through the API; it is then gone, and machine
B's worker (a cache directory of its own, the same bucket) plays a switchable push of them
by remuxing what A encoded, downloaded from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_numbered_clip
from ..s3server import ACCESS_KEY, SECRET_KEY, aws_env, moto_server
from ..stack import Api, start_api, start_procfile_worker, stop
from .test_renditions import APP, wait_prepared
from .test_switch import wait_position

BUCKET = "school-renditions"


@pytest.fixture(scope="module")
def machines(
    service_env: dict[str, str],
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, str], dict[str, str], Path]]:
    """The environments of machines A and B (and where the logs go), on a Redis database
    and an S3 bucket of their own."""
    logs = tmp_path_factory.mktemp("s3-machines")
    with moto_server(logs / "moto.log") as endpoint:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_bucket(Bucket=BUCKET)
        shared = aws_env(service_env) | {
            # Its own broker and records: the session's worker must not take these tasks.
            "ROOMCAST_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/7",
            "ROOMCAST_RENDITIONS_S3": f"s3://{BUCKET}/classroom",
            "ROOMCAST_RENDITIONS_S3_ENDPOINT": endpoint,
            # A loaded test machine must not turn a fetch into a miss; the wait itself is
            # tests/integration/test_rendition_s3.py's.
            "ROOMCAST_RENDITIONS_S3_FETCH_WAIT_SECONDS": "30",
        }
        a = shared | {"ROOMCAST_RENDITIONS_DIR": str(logs / "cache-a")}
        b = shared | {"ROOMCAST_RENDITIONS_DIR": str(logs / "cache-b")}
        yield a, b, logs


def test_clips_prepared_on_one_machine_are_remuxed_by_a_push_on_another(
    machines: tuple[dict[str, str], dict[str, str], Path],
    room: LocalRoom,
    room_name: str,
    media: Path,
) -> None:
    env_a, env_b, logs = machines
    make_numbered_clip(media / "shared1.mp4", seconds=4, clip_id=21, tone=440)
    make_numbered_clip(media / "shared2.mp4", seconds=3, clip_id=22, tone=660)
    urls = [room.media_url("shared1.mp4"), room.media_url("shared2.mp4")]
    api_proc, base = start_api(env_a, logs / "api.log")
    api = Api(base)
    try:
        worker_a = start_procfile_worker(env_a, logs / "worker-a.log", "machine-a")
        try:
            answer = api.call("POST", "/v1/renditions", {"SdkAppId": APP, "Clips": urls})
            prepared = wait_prepared(api, answer.body["RequestId"])
        finally:
            stop(worker_a)
        assert prepared["State"] == "succeeded", prepared
        assert not list((logs / "cache-b").glob("*/*.mp4")), "machine B has nothing yet"

        worker_b = start_procfile_worker(env_b, logs / "worker-b.log", "machine-b")
        try:
            rid = api.submit(**job_for(room, "shared1.mp4", room_name, Switchable=True))
            wait_position(api, rid, 1.0)
            assert api.call("POST", f"/v1/pushes/{rid}/switch", {"VideoSrc": urls[1]}).status == 202
            final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        finally:
            stop(worker_b)
    finally:
        stop(api_proc)
    assert final["State"] == "succeeded", final
    found = final["Progress"]["Renditions"]
    assert (found["Hits"], found["Fetched"], found["Misses"], found["Reencoded"]) == (2, 2, 0, {})
    assert len(list((logs / "cache-b").glob("*/*.mp4"))) == 2
    logged = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    assert "fetched from s3://school-renditions/classroom" in logged
    assert SECRET_KEY not in logged and ACCESS_KEY not in logged
