"""Engine=cloud (TRTC's cloud ingest, driven through roomcast's API) and Trtc.Presence.

Real processes, as in tests/e2e/test_trtc.py: their own Redis, a Celery worker, two APIs (one
with Tencent Cloud credentials, one without), a local room that checks UserSigs, and the fake
TRTC endpoint (tests/trtc_fake.py) that checks every TC3-HMAC-SHA256 signature. The fake's
room data sees whoever publishes into the local room, so presence is checked end to end.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from api.responses import PushStatus
from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs.usersig import decode, verify

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop
from ..trtc_fake import Call, FakeTrtc

APP = 1400000001
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
SECRET_ID = "AKIDroomcastCLOUD"
SECRET_KEY = "tc-secret-key-cloud-7e1"
ROBOT = "robot1"
ENDED = {"succeeded", "failed", "stopped"}

_rooms = itertools.count()


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


@pytest.fixture(scope="module")
def cloud(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudStack]:
    work = tmp_path_factory.mktemp("cloud")
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


@pytest.fixture
def name() -> str:
    """A fresh, short room name (the local room keeps 255 bytes of room + query)."""
    return f"c{next(_rooms)}"


def cloud_job(media_room: LocalRoom, room_name: str, **changes: Any) -> dict[str, Any]:
    """An Engine=cloud job; the UserSig is left for roomcast to sign (its key is configured)."""
    job = job_for(media_room, "film.mp4", room_name, UserId=ROBOT, UserSig=None, Engine="cloud")
    job.update(changes)
    return {k: v for k, v in job.items() if v is not None}


def wait_for(
    api: Api, rid: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Poll the status until ``check`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        status = api.status(rid)
        if check(status):
            return status
        if time.monotonic() > deadline or status["State"] in ENDED:
            raise AssertionError(f"condition never held: {status}")
        time.sleep(0.1)


def task_of(status: dict[str, Any]) -> dict[str, Any]:
    """Progress.Cloud of a status, or {}."""
    return dict((status.get("Progress") or {}).get("Cloud") or {})


def in_progress(api: Api, rid: str) -> str:
    """Wait until TRTC reports the push's task InProgress; its TaskId."""
    status = wait_for(api, rid, lambda s: task_of(s).get("Status") == "InProgress")
    assert status["State"] == "running", status
    return str(task_of(status)["TaskId"])


def start_call(fake: FakeTrtc, task_id: str) -> Call:
    """The StartStreamIngest call that created ``task_id``."""
    return next(c for c in fake.of("StartStreamIngest") if fake.tasks[task_id].params is c.params)


def stop_calls(fake: FakeTrtc, task_id: str) -> list[Call]:
    """The StopStreamIngest calls for ``task_id``."""
    return [c for c in fake.of("StopStreamIngest") if c.params.get("TaskId") == task_id]


# --- Engine=cloud ----------------------------------------------------------------------------


def test_cloud_push_runs_trtcs_ingest_task_until_stopped_with_stopstreamingest(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    job = cloud_job(room, name)
    rid = cloud.api.submit(**job)
    task_id = in_progress(cloud.api, rid)
    start = start_call(cloud.trtc, task_id)
    params = dict(start.params)
    sig = params.pop("UserSig")
    assert params == {
        "SdkAppId": APP,
        "RoomId": name,
        "RoomIdType": 0,
        "UserId": ROBOT,
        "StreamUrl": job["VideoSrc"],
    }
    assert (decode(sig).identifier, decode(sig).sdkappid) == (ROBOT, APP) and verify(sig, KEY)
    assert start.region == "ap-guangzhou"
    answer = cloud.api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status == 200, answer.body
    final = cloud.api.wait_state(rid, ENDED)
    assert (final["State"], final["Reason"]) == ("stopped", "stopped through the API"), final
    assert [c.params for c in stop_calls(cloud.trtc, task_id)] == [
        {"SdkAppId": APP, "TaskId": task_id}
    ]
    assert final["Trtc"]["Cloud"]["Stop"]["Result"] == "ok"
    assert final["Trtc"]["Cloud"]["Start"]["TaskId"] == task_id
    PushStatus.model_validate(final)  # the documented answer describes cloud pushes too
    assert sig not in json.dumps(final)


def test_cloud_push_is_the_celery_push_task_and_is_listed(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    # What Flower shows: the push task's PROGRESS meta in Celery's result store.
    meta = json.loads(cloud.redis.get(f"celery-task-meta-{rid}") or b"{}")
    assert meta["status"] == "PROGRESS", meta
    assert meta["result"]["Cloud"]["TaskId"] == task_id
    listing = cloud.api.call("GET", "/v1/pushes?State=running").body
    assert rid in [p["RequestId"] for p in listing["Pushes"]]
    assert cloud.api.call("DELETE", f"/v1/pushes/{rid}").status == 200


def test_cloud_push_with_a_numeric_roomid_enters_the_numeric_room(
    cloud: CloudStack, room: LocalRoom
) -> None:
    rid = cloud.api.submit(**cloud_job(room, "x", StrRoomId=None, RoomId=4242))
    task_id = in_progress(cloud.api, rid)
    params = start_call(cloud.trtc, task_id).params
    assert (params["RoomId"], params["RoomIdType"]) == ("4242", 1)
    assert "numeric room 4242" in cloud.api.status(rid)["Room"]["Note"]
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_cloud_loop_is_repeatnum_minus_one_bounded_by_maxduration_in_minutes(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, Loop="all", MaxDuration=90))
    params = start_call(cloud.trtc, in_progress(cloud.api, rid)).params
    assert (params["RepeatNum"], params["MaxDuration"]) == (-1, 2)
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_cloud_start_point_is_trtcs_seeksecond(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, StartSeconds=42.7))
    params = start_call(cloud.trtc, in_progress(cloud.api, rid)).params
    assert params["SeekSecond"] == 42
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_cloud_idle_timeout_is_trtcs_idletimeout(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, Mode="live", IdleTimeoutSeconds=30))
    params = start_call(cloud.trtc, in_progress(cloud.api, rid)).params
    assert params["IdleTimeout"] == 30
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_cloud_push_reaching_maxduration_stops_its_task(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, MaxDuration=1))
    task_id = in_progress(cloud.api, rid)
    final = cloud.api.wait_state(rid, ENDED, timeout=10)
    assert (final["State"], final["Reason"]) == ("stopped", "time limit reached (1 s)"), final
    assert len(stop_calls(cloud.trtc, task_id)) == 1
    assert "MaxDuration" not in start_call(cloud.trtc, task_id).params, "TRTC's is for loops"


def test_cloud_ingest_ended_by_trtc_ends_the_push(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    cloud.trtc.end_task(task_id)
    final = cloud.api.wait_state(rid, ENDED, timeout=10)
    assert final["State"] == "succeeded", final
    assert "NotExist" in final["Reason"]
    assert task_of(final)["Status"] == "NotExist"
    assert stop_calls(cloud.trtc, task_id) == [], "a task TRTC ended is not stopped again"


REFUSALS = {
    "auth": ("AuthFailure.SignatureFailure", "the request signature does not match"),
    "quota": ("LimitExceeded", "the number of ingest tasks exceeds the limit"),
    "room": ("InvalidParameter.RoomId", "RoomId is invalid"),
}


@pytest.mark.parametrize("code, message", REFUSALS.values(), ids=REFUSALS.keys())
def test_trtc_refusing_the_start_fails_the_push_with_trtcs_code(
    cloud: CloudStack, room: LocalRoom, name: str, code: str, message: str
) -> None:
    fake = cloud.trtc
    if code.startswith("AuthFailure"):
        fake.credentials[SECRET_ID] = "the key was rotated"  # the worker signs with the old one
    else:
        fake.fail["StartStreamIngest"] = (code, message)
    try:
        rid = cloud.api.submit(**cloud_job(room, name))
        final = cloud.api.wait_state(rid, ENDED, timeout=10)
    finally:
        fake.credentials[SECRET_ID] = SECRET_KEY
        fake.fail.pop("StartStreamIngest", None)
    assert final["State"] == "failed", final
    assert final["Error"]["Code"] == "TrtcApiError"
    assert f"TRTC StartStreamIngest failed: {code}: {message}" in final["Error"]["Message"]
    start = final["Trtc"]["Cloud"]["Start"]
    assert (start["Result"], start["Error"]["Code"]) == ("failed", code)
    assert start["RequestId"], "TRTC's request id is kept for support requests"


def test_trtc_refusing_the_status_query_fails_the_push_and_stops_its_task(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    cloud.trtc.fail["DescribeStreamIngest"] = ("FailedOperation.QueryTaskInfoFailed", "no info")
    try:
        final = cloud.api.wait_state(rid, ENDED, timeout=10)
    finally:
        cloud.trtc.fail.pop("DescribeStreamIngest")
    assert final["State"] == "failed", final
    assert "FailedOperation.QueryTaskInfoFailed" in final["Error"]["Message"]
    assert len(stop_calls(cloud.trtc, task_id)) == 1, "TRTC must not push for a failed push"


def test_worker_shutdown_hands_a_cloud_push_back_and_the_next_worker_follows_the_same_task(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    cloud.workers["cloud2"] = start_worker(cloud.env, cloud.work / "worker2.log", "cloud2", 1)
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    first = cloud.api.status(rid)["Worker"]
    # A deploy: SIGTERM to the worker running it (its process group, as honcho does).
    stop(cloud.workers.pop(first.partition("@")[0]))
    status = wait_for(
        cloud.api, rid, lambda s: s["Worker"] != first and s["State"] == "running", timeout=15
    )
    assert status["Attempts"] == 2, status
    assert task_of(status)["TaskId"] == task_id
    starts = [c for c in cloud.trtc.of("StartStreamIngest") if c.params["RoomId"] == name]
    assert len(starts) == 1 and stop_calls(cloud.trtc, task_id) == [], "TRTC pushed on"
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    assert len(stop_calls(cloud.trtc, task_id)) == 1


def test_engine_cloud_without_credentials_is_refused_naming_engine(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    answer = cloud.bare_api.call("POST", "/v1/pushes", cloud_job(room, name))
    assert answer.status == 400, answer.body
    error = answer.body["Error"]
    assert (error["Code"], error["Field"]) == ("InvalidParameter", "Engine")
    assert "TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY" in error["Message"]


@pytest.mark.parametrize(
    "field, value",
    [("Playlist", ["http://127.0.0.1/b.mp4"]), ("Switchable", True), ("Redis", True)],
)
def test_engine_cloud_refuses_a_field_it_cannot_honour_naming_it(
    cloud: CloudStack, room: LocalRoom, name: str, field: str, value: object
) -> None:
    answer = cloud.api.call("POST", "/v1/pushes", cloud_job(room, name, **{field: value}))
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == field
    assert "Engine=worker" in answer.body["Error"]["Message"]


# --- Trtc.Presence ---------------------------------------------------------------------------


def presence_of(status: dict[str, Any]) -> dict[str, Any]:
    """Trtc.Presence of a status, or {}."""
    return dict((status.get("Trtc") or {}).get("Presence") or {})


def test_presence_shows_the_pushing_user_in_the_room(
    cloud: CloudStack, room: LocalRoom, long_clip: str, name: str
) -> None:
    job = job_for(room, long_clip, name, UserId="pres1")
    job.pop("UserSig")
    rid = cloud.api.submit(**job)
    status = wait_for(cloud.api, rid, lambda s: presence_of(s).get("InRoom") is True)
    presence = presence_of(status)
    assert presence["CommId"].startswith(f"{APP}_{name}_") and "Error" not in presence
    assert cloud.room.auth is not None and "pres1" in cloud.room.auth.users_in(name)
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_presence_shows_a_user_trtc_does_not_see_as_absent(
    cloud: CloudStack, room: LocalRoom, long_clip: str, name: str
) -> None:
    cloud.trtc.hidden.add("ghost1")
    try:
        job = job_for(room, long_clip, name, UserId="ghost1")
        job.pop("UserSig")
        rid = cloud.api.submit(**job)
        auth = cloud.room.auth
        assert auth is not None
        wait_for(cloud.api, rid, lambda s: "ghost1" in auth.users_in(name))
        # Two checks after the user is in the local room: the second began after it was.
        for _ in range(2):
            seen = presence_of(cloud.api.status(rid)).get("CheckedAt")
            status = wait_for(
                cloud.api, rid, lambda s, seen=seen: presence_of(s).get("CheckedAt") != seen
            )
        assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    finally:
        cloud.trtc.hidden.discard("ghost1")
    assert status["State"] == "running"
    assert presence_of(status)["InRoom"] is False, status["Trtc"]
