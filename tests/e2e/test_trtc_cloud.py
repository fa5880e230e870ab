"""Engine=cloud (TRTC's cloud ingest, driven through roomcast's API) and Trtc.Presence.

Real processes, as in tests/e2e/test_trtc.py (tests/cloudstack.py): their own Redis, a Celery
worker, two APIs (one with Tencent Cloud credentials, one without), a local room that checks
UserSigs, and the fake TRTC endpoint (tests/trtc_fake.py) that checks every TC3-HMAC-SHA256
signature. The fake's room data sees whoever publishes into the local room, so presence is
checked end to end.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.responses import PushStatus
from devstack.room import LocalRoom
from jobs.usersig import decode, verify

from ..cloudstack import APP, KEY, ROBOT, SECRET_ID, SECRET_KEY, CloudStack, cloud_job, cloud_stack
from ..conftest import job_for
from ..stack import Api, start_worker, stop
from ..trtc_fake import Call, FakeTrtc

ENDED = {"succeeded", "failed", "stopped"}

_rooms = itertools.count()


@pytest.fixture(scope="module")
def cloud(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudStack]:
    with cloud_stack(service_env, tmp_path_factory.mktemp("cloud")) as stack:
        yield stack


@pytest.fixture
def name() -> str:
    """A fresh, short room name (the local room keeps 255 bytes of room + query)."""
    return f"c{next(_rooms)}"


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


def player_of(status: dict[str, Any]) -> dict[str, Any]:
    """Progress.Player of a status, or {}."""
    return dict((status.get("Progress") or {}).get("Player") or {})


def events_of(api: Api, rid: str) -> list[dict[str, Any]]:
    """The push's events as the API streams them (stopped first: the stream ends)."""
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=30) as answer:
        text = answer.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


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


@pytest.mark.parametrize(
    "field, value, sent",
    [
        ("Volume", 150, {"Volume": 150}),
        ("Tempo", 1.25, {"Tempo": 1.25}),
        ("RepeatNum", 3, {"RepeatNum": 3}),
        ("PrivateMapKey", "pmk-for-tests", {"PrivateMapKey": "pmk-for-tests"}),
        ("EnableProgress", True, {"EnableProgress": True}),
    ],
)
def test_per_push_fields_reach_startstreamingest_under_trtcs_names(
    cloud: CloudStack, room: LocalRoom, name: str, field: str, value: object, sent: dict
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, **{field: value}))
    params = start_call(cloud.trtc, in_progress(cloud.api, rid)).params
    assert {k: params.get(k) for k in sent} == sent
    assert "MaxDuration" not in params, "TRTC's MaxDuration is for RepeatNum -1 only"
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


def test_cloud_repeatnum_forever_is_bounded_by_maxduration_in_minutes(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, RepeatNum=-1, MaxDuration=3600))
    params = start_call(cloud.trtc, in_progress(cloud.api, rid)).params
    assert (params["RepeatNum"], params["MaxDuration"]) == (-1, 60)
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


@pytest.mark.parametrize(
    "field, value, others",
    [
        ("IdleTimeoutSeconds", 601, {"Mode": "live"}),
        ("RepeatNum", 2, {"Loop": "all"}),
        ("Tempo", 1.1, {}),
    ],
    ids=["idle_timeout_above_trtcs_600", "repeatnum_with_loop", "tempo_between_trtcs_steps"],
)
def test_engine_cloud_refuses_a_value_trtc_would_refuse_naming_its_field(
    cloud: CloudStack, room: LocalRoom, name: str, field: str, value: object, others: dict
) -> None:
    job = cloud_job(room, name, **{field: value}, **others)
    answer = cloud.api.call("POST", "/v1/pushes", job)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == field


# --- player commands: UpdateStreamIngest -------------------------------------------------------


def test_switch_on_a_cloud_push_is_updatestreamingests_streamurl(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    other = room.media_url("other.mp4")
    answer = cloud.api.call(
        "POST", f"/v1/pushes/{rid}/switch", {"VideoSrc": other, "ClipId": "feedback"}
    )
    assert answer.status == 200, answer.body
    assert (answer.body["Command"], answer.body["Trtc"]["Result"]) == ("switch", "ok")
    assert cloud.trtc.tasks[task_id].updates == [{"StreamUrl": other}]
    clip = player_of(cloud.api.status(rid))["Clip"]
    assert clip == {"Index": 1, "VideoSrc": other, "ClipId": "feedback"}
    assert cloud.api.status(rid)["Trtc"]["Cloud"]["Update"]["Command"] == "switch"
    events = [e for e in events_of(cloud.api, rid) if e["Event"].startswith("clip-")]
    assert [(e["Event"], e["Clip"]) for e in events] == [("clip-ended", 0), ("clip-started", 1)]
    assert (events[0]["How"], events[0]["To"], events[0]["ToClipId"]) == (
        "switched",
        other,
        "feedback",
    )


def test_pause_and_resume_on_a_cloud_push_are_updatestreamingests_ispause(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/pause").status == 200
    assert player_of(cloud.api.status(rid))["Paused"] is True
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/resume").status == 200
    assert player_of(cloud.api.status(rid))["Paused"] is False
    assert cloud.trtc.tasks[task_id].updates == [{"IsPause": True}, {"IsPause": False}]
    events = [e["Event"] for e in events_of(cloud.api, rid)]
    assert events == ["queued", "running", "pause", "resume", "stopped"]


def test_volume_on_a_cloud_push_is_updatestreamingests_volume(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, Volume=50))
    task_id = in_progress(cloud.api, rid)
    assert player_of(cloud.api.status(rid))["Volume"] == 50
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/volume", {"Volume": 180}).status == 200
    assert cloud.trtc.tasks[task_id].updates == [{"Volume": 180}]
    assert player_of(cloud.api.status(rid))["Volume"] == 180
    volume = [e for e in events_of(cloud.api, rid) if e["Event"] == "volume"]
    assert [e["Volume"] for e in volume] == [180]


def test_tempo_on_a_cloud_push_is_startstreamingests_then_updatestreamingests_tempo(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name, Tempo=1.5))
    task_id = in_progress(cloud.api, rid)
    assert start_call(cloud.trtc, task_id).params["Tempo"] == 1.5
    assert player_of(cloud.api.status(rid))["Tempo"] == 1.5
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/tempo", {"Tempo": 0.75}).status == 200
    assert cloud.trtc.tasks[task_id].updates == [{"Tempo": 0.75}]
    assert cloud.trtc.tasks[task_id].params["Tempo"] == 0.75
    assert player_of(cloud.api.status(rid))["Tempo"] == 0.75
    tempo = [e for e in events_of(cloud.api, rid) if e["Event"] == "tempo"]
    assert [e["Tempo"] for e in tempo] == [0.75]


def test_a_cloud_tempo_between_trtcs_steps_is_refused_naming_tempo_before_trtc_sees_it(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    answer = cloud.api.call("POST", f"/v1/pushes/{rid}/tempo", {"Tempo": 1.1})
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == "Tempo"
    assert "1.25" in answer.body["Error"]["Message"], "TRTC's steps are named"
    assert cloud.trtc.tasks[task_id].updates == []


def test_trtc_refusing_a_command_answers_502_with_trtcs_code_and_the_push_goes_on(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    in_progress(cloud.api, rid)
    cloud.trtc.fail["UpdateStreamIngest"] = ("InvalidParameter.StreamUrl", "StreamUrl is invalid")
    try:
        other = room.media_url("other.mp4")
        answer = cloud.api.call("POST", f"/v1/pushes/{rid}/switch", {"VideoSrc": other})
    finally:
        cloud.trtc.fail.pop("UpdateStreamIngest")
    assert answer.status == 502, answer.body
    error = answer.body["Error"]
    assert error["Code"] == "TrtcApiError"
    assert error["Message"].startswith(
        "TRTC UpdateStreamIngest failed: InvalidParameter.StreamUrl: StreamUrl is invalid"
    )
    assert error["Trtc"]["Error"]["Code"] == "InvalidParameter.StreamUrl"
    assert error["Trtc"]["RequestId"] in error["Message"], "TRTC's RequestId, for support"
    status = cloud.api.status(rid)
    assert status["State"] == "running", status
    assert status["Trtc"]["Cloud"]["Update"]["Result"] == "failed"
    assert player_of(status)["Clip"]["Index"] == 0, "nothing was switched"
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200


@pytest.mark.parametrize(
    "command, body",
    [("seek", {"Position": 3}), ("queue", {"Sources": []}), ("loop", {"Loop": "clip"})],
)
def test_a_command_trtcs_cloud_ingest_cannot_do_is_409_command_not_supported(
    cloud: CloudStack, room: LocalRoom, name: str, command: str, body: dict
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    in_progress(cloud.api, rid)
    answer = cloud.api.call("POST", f"/v1/pushes/{rid}/{command}", body)
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    assert answer.status == 409, answer.body
    assert answer.body["Error"]["Code"] == "CommandNotSupported"
    assert "Engine=worker" in answer.body["Error"]["Message"]


def test_a_cloud_switch_at_the_clips_end_is_refused_naming_when(
    cloud: CloudStack, room: LocalRoom, name: str
) -> None:
    rid = cloud.api.submit(**cloud_job(room, name))
    task_id = in_progress(cloud.api, rid)
    body = {"VideoSrc": room.media_url("other.mp4"), "When": "end"}
    answer = cloud.api.call("POST", f"/v1/pushes/{rid}/switch", body)
    assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == "When"
    assert cloud.trtc.tasks[task_id].updates == []


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
