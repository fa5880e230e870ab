"""A push over WHIP through the API, as a user asks for it: ``Whip`` with the endpoint and
its token, or ``"trtc"`` for TRTC's WHIP ingest; the WebRTC viewer (tests/whipserver.py)
sees every picture, and the token shows nowhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.room import LocalRoom
from jobs import usersig

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api, start_api, start_worker, stop
from ..whipserver import WhipServer, whip_server
from .test_api_validation import assert_invalid
from .test_fanout import events_of
from .test_live import live_job, publish, wait_publishing

TOKEN = "bearer-token-e2e-5150"


@pytest.fixture(scope="module")
def clip(media: Path) -> str:
    """4 s, 25 fps, numbered pictures."""
    make_numbered_clip(media / "whip_e2e.mp4", seconds=4, gop=25)
    return "whip_e2e.mp4"


def test_a_push_with_whip_publishes_over_webrtc_and_never_shows_the_token(
    api: Api, room: LocalRoom, room_name: str, clip: str, worker_log: Path
) -> None:
    with whip_server(token=TOKEN) as server:
        whip = {"Url": server.url(room_name), "Token": TOKEN}
        rid = api.submit(**job_for(room, clip, room_name, Whip=whip))
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        session = server.session(room_name)
        assert session.ended.wait(10)
    assert final["State"] == "succeeded", final
    assert session.numbers == list(range(4 * 25 - 1))  # aiortc keeps the last one
    assert final["Whip"] == f"http://127.0.0.1:{server.port}"  # a path may be a key
    assert TOKEN not in json.dumps(final)
    assert TOKEN not in json.dumps(events_of(api, rid))
    assert TOKEN not in worker_log.read_text()


def test_whip_with_targets_is_refused_naming_whip(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "x.mp4", "whip_targets", Whip={"Url": "https://sfu.example.com/whip"},
                   Targets=[])  # fmt: skip
    assert_invalid(api.call("POST", "/v1/pushes", body), "Whip")


def test_a_whip_endpoint_that_is_not_http_is_refused(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "x.mp4", "whip_scheme", Whip={"Url": "rtmp://sfu.example.com/whip"})
    assert_invalid(api.call("POST", "/v1/pushes", body), "Whip")


def test_a_whip_endpoint_with_a_fragment_is_refused(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "x.mp4", "whip_frag", Whip={"Url": "https://sfu.example.com/whip#x"})
    assert_invalid(api.call("POST", "/v1/pushes", body), "Whip")


# --- Whip "trtc": every room through TRTC's WHIP ingest -------------------------------

APP = 1400000001
APP_KEY = "trtc-whip-test-app-key"


@pytest.fixture(scope="module")
def trtc_whip(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, WhipServer, Path]]:
    """TRTC's WHIP ingest (tests/whipserver.py, checking UserSigs with the app's key), and a
    worker and an API that publish there (ROOMCAST_TRTC_WHIP_URL), on a queue of their own."""
    logs = tmp_path_factory.mktemp("trtc_whip")
    with whip_server(trtc_keys={APP: APP_KEY}) as server:
        env = dict(
            service_env,
            ROOMCAST_TRTC_WHIP_URL=server.trtc_url,
            ROOMCAST_QUEUE="roomcast_trtc_whip",
        )
        worker = start_worker(env, logs / "worker.log", "trtc_whip")
        api_proc, base = start_api(env, logs / "api.log")
        try:
            yield Api(base), server, logs / "worker.log"
        finally:
            stop(api_proc)
            stop(worker)


def test_whip_trtc_publishes_every_room_as_its_user_through_trtcs_whip_ingest(
    trtc_whip: tuple[Api, WhipServer, Path], room: LocalRoom, room_name: str, clip: str
) -> None:
    api, server, log = trtc_whip
    sig = usersig.generate(APP, APP_KEY, "teacher_bot")
    second = usersig.generate(APP, APP_KEY, "bot_2")
    forged = usersig.generate(APP, "not-the-apps-key", "bot_3")
    targets = [
        {"TargetId": "second", "StrRoomId": f"{room_name}_2", "UserId": "bot_2", "UserSig": second},
        {"TargetId": "forged", "RoomId": 4242, "UserId": "bot_3", "UserSig": forged},
    ]
    body = job_for(room, clip, room_name, SdkAppId=APP, UserId="teacher_bot", UserSig=sig,
                   Whip="trtc", Targets=targets)  # fmt: skip
    rid = api.submit(**body)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    sessions = [server.session(room_name), server.session(f"{room_name}_2")]
    for session in sessions:
        assert session.ended.wait(10)
    assert final["State"] == "succeeded", final
    assert [(s.stream, s.user) for s in sessions] == [
        (room_name, "teacher_bot"),
        (f"{room_name}_2", "bot_2"),
    ]
    for session in sessions:
        assert session.numbers == list(range(4 * 25 - 1))
        assert session.deleted
    assert final["Whip"] == "trtc"
    rooms = final["Progress"]["Targets"]
    assert rooms["forged"]["State"] == "failed" and "401" in rooms["forged"]["Error"]
    assert {rooms["main"]["State"], rooms["second"]["State"]} == {"live"}
    shown = json.dumps(final) + json.dumps(events_of(api, rid)) + log.read_text()
    assert not any(s in shown for s in (sig, second, forged))


def test_whip_trtc_needs_the_worker_engine(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "x.mp4", "whip_cloud", Whip="trtc", Engine="cloud")
    assert_invalid(api.call("POST", "/v1/pushes", body), "Whip")


def test_whip_names_trtc_or_an_endpoint(api: Api, room: LocalRoom) -> None:
    body = job_for(room, "x.mp4", "whip_name", Whip="livekit")
    assert_invalid(api.call("POST", "/v1/pushes", body), "Whip")


# --- the rest works as over RTMP: live, resume, stop ----------------------------------


def test_a_live_source_relayed_over_whip_plays_on_until_stopped_then_the_session_is_deleted(
    api: Api, room: LocalRoom, room_name: str, media: Path
) -> None:
    clip = make_numbered_clip(media / "whip_live_source.mp4", seconds=8, gop=25)
    src = f"{room_name}_src"
    publisher = publish(clip, f"{room.live_base}/{src}")
    try:
        wait_publishing(room, src)
        with whip_server() as server:
            body = live_job(room, src, room_name) | {"Whip": {"Url": server.url(room_name)}}
            rid = api.submit(**body)
            session = server.session(room_name)
            deadline = time.monotonic() + 15
            while len(session.numbers) < 50:  # two seconds of the relay
                assert time.monotonic() < deadline, "the relay never reached the viewer"
                time.sleep(0.1)
            assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
            final = api.wait_state(rid, {"stopped", "failed", "succeeded"}, timeout=15)
            assert session.ended.wait(10)
    finally:
        publisher.kill()
        publisher.wait()
    assert final["State"] == "stopped", final
    assert session.deleted  # the WHIP DELETE, as a stop ends an RTMP publish politely
    numbers = session.numbers
    assert numbers[0] % 25 == 0, "joined at a keyframe of the live source"
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_a_push_resumed_over_whip_starts_where_it_is_asked_to(
    api: Api, room: LocalRoom, room_name: str, clip: str
) -> None:
    with whip_server() as server:
        whip = {"Url": server.url(room_name)}
        rid = api.submit(**job_for(room, clip, room_name, Whip=whip, StartSeconds=2))
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        session = server.session(room_name)
        assert session.ended.wait(10)
    assert final["State"] == "succeeded", final
    assert session.numbers == list(range(50, 4 * 25 - 1))  # from 2 s (a keyframe) to the end


def test_a_room_added_to_a_running_whip_trtc_push_goes_through_trtcs_whip_ingest_too(
    trtc_whip: tuple[Api, WhipServer, Path], room: LocalRoom, room_name: str, media: Path
) -> None:
    api, server, _ = trtc_whip
    make_numbered_clip(media / "whip_trtc_long.mp4", seconds=8, gop=25)
    sig = usersig.generate(APP, APP_KEY, "teacher_bot")
    body = job_for(room, "whip_trtc_long.mp4", room_name, SdkAppId=APP, UserId="teacher_bot",
                   UserSig=sig, Whip="trtc", Targets=[])  # fmt: skip
    rid = api.submit(**body)
    api.wait_state(rid, {"running"}, timeout=15)
    server.session(room_name)
    added = {"StrRoomId": f"{room_name}_late", "UserId": "bot_late",
             "UserSig": usersig.generate(APP, APP_KEY, "bot_late")}  # fmt: skip
    assert api.call("POST", f"/v1/pushes/{rid}/targets", added).status == 202
    late = server.session(f"{room_name}_late")
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    assert late.ended.wait(10)
    assert final["State"] == "succeeded", final
    assert late.user == "bot_late"
    assert late.numbers and late.numbers[0] % 25 == 0  # joined at a keyframe, over WHIP
    assert late.numbers == list(range(late.numbers[0], 8 * 25 - 1))


def test_a_whip_push_with_redis_resumes_where_the_stopped_one_left_the_viewer(
    api: Api, room: LocalRoom, room_name: str, clip: str
) -> None:
    with whip_server() as server:
        job = job_for(room, clip, room_name, Whip={"Url": server.url(room_name)}, Redis=True)
        rid = api.submit(**job)
        first = server.session(room_name)
        deadline = time.monotonic() + 15
        while (api.status(rid).get("Progress") or {}).get("Position", 0) < 2.0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
        assert first.ended.wait(10)
        rid = api.submit(**job)
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        second = next(s for s in server.sessions if s is not first)
        assert second.ended.wait(10)
    assert final["State"] == "succeeded", final
    resumed = second.numbers[0]
    # Where the first stopped: after what its viewer saw (its last picture is never
    # decoded: the DELETE ends the track first), at most that one picture again.
    assert max(first.numbers) < resumed <= max(first.numbers) + 2
    assert second.numbers == list(range(resumed, 4 * 25 - 1))
