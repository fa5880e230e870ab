"""The API's contract at its edges: what a bad request gets back, and what a good one does.

Nothing here needs media: a rejected request is never enqueued, and accepted ones point at a
file the room's web server does not have, so the worker fails them at once.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Answer, Api

#: Marks a field to leave out of the request body.
DROP = object()
SECRET_SIG = "SIG-VALIDATION-123"
STATES = {"queued", "running", "succeeded", "failed", "stopped"}


def request_body(room: LocalRoom, **changes: Any) -> dict[str, Any]:
    """A valid push request (of a source that does not exist), with ``changes`` applied."""
    # A fresh UserId each time: one user publishes into a room only once at a time (409).
    body = job_for(room, "missing.mp4", "validation_room", UserId=f"v_{uuid.uuid4().hex[:16]}")
    for name, value in changes.items():
        if value is DROP:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def assert_invalid(answer: Answer, field: str | None) -> None:
    """A 400 InvalidParameter answer that blames ``field`` (no Field when None)."""
    assert answer.status == 400, answer.body
    error = answer.body["Error"]
    assert error["Code"] == "InvalidParameter", error
    assert isinstance(error["Message"], str) and error["Message"], error
    if field is None:
        assert "Field" not in error, error
    else:
        assert error.get("Field") == field, error


def total_jobs(api: Api) -> int:
    """How many job records exist, in any state."""
    answer = api.call("GET", "/v1/pushes?Limit=1")
    assert answer.status == 200, answer.body
    return sum(answer.body["Stats"].values())


# --- 400: which field is blamed -----------------------------------------------------------


@pytest.mark.parametrize("field", ["VideoSrc", "SdkAppId", "UserId", "UserSig"])
def test_missing_required_field_is_rejected_naming_it(
    api: Api, room: LocalRoom, field: str
) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, **{field: DROP})), field)


def test_request_without_roomid_or_strroomid_is_rejected_naming_roomid(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room, StrRoomId=DROP, RoomId=DROP)
    assert_invalid(api.call("POST", "/v1/pushes", body), "RoomId")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("SdkAppId", "14e8", id="sdkappid_as_text_not_digits"),
        pytest.param("SdkAppId", " 1400", id="sdkappid_with_a_space"),
        pytest.param("SdkAppId", True, id="sdkappid_as_bool"),
        pytest.param("RoomId", 1.5, id="roomid_as_float"),
        pytest.param("RoomId", "0x10", id="roomid_as_hex_text"),
        pytest.param("Redis", "yes", id="redis_as_yes"),
        pytest.param("Redis", 1, id="redis_as_number"),
    ],
)
def test_field_of_the_wrong_type_is_rejected_without_coercion(
    api: Api, room: LocalRoom, field: str, value: object
) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, **{field: value})), field)


def test_numbers_and_booleans_sent_as_json_strings_are_taken_as_the_template_took_them(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room, SdkAppId="1400000001", StrRoomId=DROP, RoomId="1234")
    rid = api.submit(**body, Redis="false")
    status = api.status(rid)
    assert status["SdkAppId"] == 1400000001 and status["Room"]["RoomId"] == 1234


def test_a_userid_with_a_hyphen_is_accepted_as_trtc_accepts_it(api: Api, room: LocalRoom) -> None:
    rid = api.submit(**request_body(room, UserId=f"teacher-bot-{uuid.uuid4().hex[:8]}"))
    assert api.status(rid)["UserId"].startswith("teacher-bot-")


@pytest.mark.parametrize("room_id", [0, 4_294_967_296], ids=["zero", "above_uint32"])
def test_roomid_outside_uint32_from_one_is_rejected(
    api: Api, room: LocalRoom, room_id: int
) -> None:
    body = request_body(room, StrRoomId=DROP, RoomId=room_id)
    assert_invalid(api.call("POST", "/v1/pushes", body), "RoomId")


def test_roomid_at_uint32_max_is_accepted(api: Api, room: LocalRoom) -> None:
    answer = api.call(
        "POST", "/v1/pushes", request_body(room, StrRoomId=DROP, RoomId=4_294_967_295)
    )
    assert answer.status == 202, answer.body


@pytest.mark.parametrize(
    "str_room_id", ["room one", "room-one", "r" * 65], ids=["with_space", "with_dash", "65_chars"]
)
def test_strroomid_outside_the_rtmp_rule_is_rejected(
    api: Api, room: LocalRoom, str_room_id: str
) -> None:
    body = request_body(room, StrRoomId=str_room_id)
    assert_invalid(api.call("POST", "/v1/pushes", body), "StrRoomId")


def test_strroomid_of_64_chars_is_accepted(api: Api, room: LocalRoom) -> None:
    answer = api.call("POST", "/v1/pushes", request_body(room, StrRoomId="r" * 64))
    assert answer.status == 202, answer.body


@pytest.mark.parametrize("user_id", ["user@example", "u" * 33], ids=["with_at", "33_chars"])
def test_userid_outside_the_rtmp_rule_is_rejected(api: Api, room: LocalRoom, user_id: str) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, UserId=user_id)), "UserId")


def test_unknown_mode_is_rejected(api: Api, room: LocalRoom) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, Mode="file")), "Mode")


def test_unknown_field_is_rejected_naming_it(api: Api, room: LocalRoom) -> None:
    answer = api.call("POST", "/v1/pushes", request_body(room, Foo=1))
    assert_invalid(answer, "Foo")
    assert "Foo" in answer.body["Error"]["Message"]


@pytest.mark.parametrize(
    "src",
    ["file:///etc/passwd", "ftp://x/y.mp4", "not a url"],
    ids=["file_scheme", "ftp_scheme", "not_a_url"],
)
def test_videosrc_that_is_not_an_allowed_url_is_rejected(
    api: Api, room: LocalRoom, src: str
) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, VideoSrc=src)), "VideoSrc")


def test_redis_port_above_65535_is_rejected(api: Api, room: LocalRoom) -> None:
    body = request_body(room, Redis=True, RedisHost="127.0.0.1", RedisPort=70_000)
    assert_invalid(api.call("POST", "/v1/pushes", body), "RedisPort")


def test_redis_host_without_redis_true_is_rejected(api: Api, room: LocalRoom) -> None:
    body = request_body(room, Redis=False, RedisHost="127.0.0.1")
    assert_invalid(api.call("POST", "/v1/pushes", body), "RedisHost")


def test_redis_password_without_redis_host_is_rejected_naming_redis_host(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room, Redis=True, RedisPassword="pw")
    assert_invalid(api.call("POST", "/v1/pushes", body), "RedisHost")


def test_body_that_is_not_json_is_rejected(api: Api) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", raw=b"VideoSrc=http://x/y.mp4"), None)


def test_body_that_is_a_json_array_is_rejected(api: Api, room: LocalRoom) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", [request_body(room)]), None)


def test_rejected_request_records_no_job(api: Api, room: LocalRoom) -> None:
    before = total_jobs(api)
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, RoomId=0)), "RoomId")
    assert total_jobs(api) == before


# --- 202: an accepted request --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/pushes", "/"])
def test_valid_request_is_accepted_with_its_request_id_in_body_and_headers(
    api: Api, room: LocalRoom, path: str
) -> None:
    answer = api.call("POST", path, request_body(room))
    assert answer.status == 202, answer.body
    request_id = answer.body["RequestId"]
    assert str(uuid.UUID(request_id)) == request_id
    assert answer.body["Message"] == "Async run task submitted"
    headers = {k.lower(): v for k, v in answer.headers.items()}
    assert headers["x-request-id"] == request_id
    assert headers["x-scf-reqid"] == request_id


def test_status_never_contains_the_usersig(api: Api, room: LocalRoom) -> None:
    rid = api.submit(**request_body(room, UserSig=SECRET_SIG))
    assert SECRET_SIG not in json.dumps(api.status(rid))
    final = api.wait_state(rid, {"failed", "succeeded", "stopped"})
    assert SECRET_SIG not in json.dumps(final)
    listing = api.call("GET", "/v1/pushes?Limit=1000")
    assert SECRET_SIG not in json.dumps(listing.body)


# --- 404: unknown request ids --------------------------------------------------------------


def test_status_of_unknown_request_id_is_not_found(api: Api) -> None:
    answer = api.call("GET", f"/v1/pushes/{uuid.uuid4()}")
    assert answer.status == 404, answer.body
    assert answer.body["Error"]["Code"] == "NotFound"


@pytest.mark.parametrize(
    ("method", "suffix"), [("POST", "/stop"), ("DELETE", "")], ids=["post_stop", "delete"]
)
def test_stop_of_unknown_request_id_is_not_found(api: Api, method: str, suffix: str) -> None:
    answer = api.call(method, f"/v1/pushes/{uuid.uuid4()}{suffix}")
    assert answer.status == 404, answer.body
    assert answer.body["Error"]["Code"] == "NotFound"


# --- the listing -----------------------------------------------------------------------------


def test_listing_returns_pushes_newest_first(api: Api, room: LocalRoom) -> None:
    submitted = [api.submit(**request_body(room)) for _ in range(3)]
    answer = api.call("GET", "/v1/pushes?Limit=1000")
    assert answer.status == 200, answer.body
    listed = [p["RequestId"] for p in answer.body["Pushes"]]
    assert [rid for rid in listed if rid in submitted] == submitted[::-1]


def test_listing_stats_count_every_state(api: Api, room: LocalRoom) -> None:
    rid = api.submit(**request_body(room))
    api.wait_state(rid, {"failed"})
    answer = api.call("GET", "/v1/pushes")
    assert answer.status == 200, answer.body
    stats = answer.body["Stats"]
    assert set(stats) == STATES
    assert all(isinstance(n, int) and n >= 0 for n in stats.values()), stats
    assert stats["failed"] >= 1


def test_listing_with_unknown_state_is_rejected_naming_state(api: Api) -> None:
    assert_invalid(api.call("GET", "/v1/pushes?State=bogus"), "State")


def test_listing_filtered_by_state_returns_only_that_state(api: Api, room: LocalRoom) -> None:
    failed = [api.submit(**request_body(room)) for _ in range(2)]
    for rid in failed:
        api.wait_state(rid, {"failed"})
    answer = api.call("GET", "/v1/pushes?State=failed&Limit=1000")
    assert answer.status == 200, answer.body
    pushes = answer.body["Pushes"]
    assert {p["State"] for p in pushes} == {"failed"}
    assert set(failed) <= {p["RequestId"] for p in pushes}


# --- clip ids -------------------------------------------------------------------------------


def test_clip_ids_are_kept_with_their_clips(api: Api, room: LocalRoom) -> None:
    clips = [{"VideoSrc": room.media_url("q.mp4"), "ClipId": "question"}, room.media_url("a.mp4")]
    rid = api.submit(**request_body(room, ClipId="explanation", Playlist=clips))
    record = api.status(rid)
    assert record["ClipIds"] == ["explanation", "question", None]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ClipId": ""}, "ClipId"),
        ({"ClipId": "x" * 129}, "ClipId"),
        ({"Playlist": [{"VideoSrc": "file:///etc/passwd", "ClipId": "a"}]}, "Playlist"),
        ({"Playlist": [{"Url": "http://h/a.mp4"}]}, "Playlist"),
        ({"ClipEndingSeconds": -1}, "ClipEndingSeconds"),
        ({"ClipId": "a", "Mode": "live"}, "Mode"),
    ],
    ids=["empty", "too_long", "bad_url_in_object", "unknown_key", "negative_lead", "live"],
)
def test_a_bad_clip_id_or_clip_is_rejected_naming_its_field(
    api: Api, room: LocalRoom, changes: dict[str, Any], field: str
) -> None:
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, **changes)), field)


# --- Volume, Tempo, RepeatNum, PrivateMapKey (#35) ------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("Volume", 201, id="volume_above_200"),
        pytest.param("Volume", -1, id="volume_below_0"),
        pytest.param("Volume", 50.5, id="volume_not_an_integer"),
        pytest.param("Tempo", 2.5, id="tempo_above_2"),
        pytest.param("Tempo", 0.25, id="tempo_below_half"),
        pytest.param("RepeatNum", 0, id="repeatnum_zero"),
        pytest.param("RepeatNum", 1001, id="repeatnum_above_1000"),
        pytest.param("RepeatNum", -2, id="repeatnum_below_minus_one"),
        pytest.param("PrivateMapKey", "", id="privatemapkey_empty"),
    ],
)
def test_a_per_push_field_outside_trtcs_range_is_rejected_naming_it(
    api: Api, room: LocalRoom, field: str, value: object
) -> None:
    body = request_body(room, Engine="cloud", **{field: value})
    assert_invalid(api.call("POST", "/v1/pushes", body), field)


@pytest.mark.parametrize(("field", "value"), [("Volume", 150), ("Tempo", 1.5), ("RepeatNum", 3)])
def test_volume_tempo_or_repeatnum_on_engine_worker_cannot_resume_with_redis(
    api: Api, room: LocalRoom, field: str, value: float
) -> None:
    answer = api.call("POST", "/v1/pushes", request_body(room, Redis=True, **{field: value}))
    assert_invalid(answer, "Redis")
    assert "Volume, Tempo or RepeatNum on Engine=worker" in answer.body["Error"]["Message"]


def test_repeatnum_repeats_videosrc_alone_not_a_playlist(api: Api, room: LocalRoom) -> None:
    body = request_body(room, RepeatNum=2, Playlist=[room.media_url("clip.mp4")])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "RepeatNum")
    assert "Loop=all" in answer.body["Error"]["Message"]


def test_volume_tempo_and_repeatnum_at_their_defaults_are_accepted_with_engine_worker(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room, Volume=100, Tempo=1, RepeatNum=1)
    answer = api.call("POST", "/v1/pushes", body)
    assert answer.status == 202, answer.body


def test_privatemapkey_is_refused_with_engine_worker_whose_rtmp_ingest_takes_none(
    api: Api, room: LocalRoom
) -> None:
    answer = api.call("POST", "/v1/pushes", request_body(room, PrivateMapKey="PMK-SECRET-31"))
    assert_invalid(answer, "PrivateMapKey")
    assert "PMK-SECRET-31" not in json.dumps(answer.body), "a secret is not echoed"


def test_repeatnum_is_refused_for_a_live_source(api: Api, room: LocalRoom) -> None:
    body = request_body(room, Engine="cloud", Mode="live", RepeatNum=2)
    assert_invalid(api.call("POST", "/v1/pushes", body), "RepeatNum")


@pytest.mark.parametrize("engine", ["worker", "cloud"])
def test_tempo_is_refused_for_a_live_source_which_plays_at_its_own_pace(
    api: Api, room: LocalRoom, engine: str
) -> None:
    body = request_body(room, Engine=engine, Mode="live", Tempo=1.5)
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Tempo")
    assert "Tempo needs Mode=vod" in answer.body["Error"]["Message"]


@pytest.mark.parametrize(
    ("output", "named"),
    [
        ({"Width": 2000}, "Output.Width"),
        ({"Width": 641}, "Output.Width"),
        ({"Fps": 0}, "Output.Fps"),
        ({"VideoBitrate": 50_000}, "Output.VideoBitrate"),
        ({"GopSeconds": 10}, "Output.GopSeconds"),
        ({"Bitrate": 1}, "Output.Bitrate"),
    ],
)
def test_an_output_profile_outside_what_the_room_takes_names_its_member(
    api: Api, room: LocalRoom, output: dict[str, object], named: str
) -> None:
    answer = api.call("POST", "/v1/pushes", request_body(room, Output=output))
    assert_invalid(answer, "Output")
    assert named in answer.body["Error"]["Message"], answer.body


def test_an_output_profile_needs_engine_worker(api: Api, room: LocalRoom) -> None:
    body = request_body(room, Engine="cloud", Output={"Width": 640})
    assert_invalid(api.call("POST", "/v1/pushes", body), "Output")


# --- Targets: fan-out (#34) -------------------------------------------------------------------


def target(room_name: str = "fan_room", **changes: Any) -> dict[str, Any]:
    """A valid Targets item (a room of its own, a fresh user), with ``changes`` applied."""
    item: dict[str, Any] = {"StrRoomId": room_name, "UserId": f"f_{uuid.uuid4().hex[:12]}"}
    for name, value in changes.items():
        if value is DROP:
            item.pop(name, None)
        else:
            item[name] = value
    return item


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param({"UserId": DROP}, "Targets[1].UserId", id="userid_missing"),
        pytest.param({"UserId": "u@x"}, "Targets[1].UserId", id="userid_outside_the_rule"),
        pytest.param({"StrRoomId": DROP}, "Targets[1].RoomId", id="no_room"),
        pytest.param({"RoomId": 7}, "Targets[1].StrRoomId", id="both_rooms"),
        pytest.param({"StrRoomId": "a b"}, "Targets[1].StrRoomId", id="strroomid_outside_the_rule"),
        pytest.param({"StrRoomId": DROP, "RoomId": 0}, "Targets[1].RoomId", id="roomid_zero"),
        pytest.param({"TargetId": "a b"}, "Targets[1].TargetId", id="targetid_outside_pattern"),
        pytest.param({"TargetId": "t" * 65}, "Targets[1].TargetId", id="targetid_65_chars"),
        pytest.param({"TargetId": "main"}, "Targets[1].TargetId", id="targetid_main_reserved"),
        pytest.param({"UserSig": ""}, "Targets[1].UserSig", id="usersig_empty"),
        pytest.param({"Url": "rtmp://x/y"}, "Targets[1].Url", id="unknown_member"),
    ],
)
def test_a_bad_target_member_is_rejected_naming_it(
    api: Api, room: LocalRoom, changes: dict[str, Any], named: str
) -> None:
    body = request_body(room, Targets=[target("fan_a"), target("fan_b", **changes)])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    assert named in answer.body["Error"]["Message"], answer.body


def test_targets_need_engine_worker(api: Api, room: LocalRoom) -> None:
    body = request_body(room, Engine="cloud", Targets=[target()])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    assert "Engine=worker" in answer.body["Error"]["Message"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"TargetId": "room_a"}, {"TargetId": "room_a"}, id="given_twice"),
        pytest.param({"TargetId": "t2"}, {}, id="given_as_another_targets_default"),
    ],
)
def test_a_target_id_used_twice_is_rejected_naming_the_second(
    api: Api, room: LocalRoom, first: dict[str, Any], second: dict[str, Any]
) -> None:
    body = request_body(room, Targets=[target("fan_a", **first), target("fan_b", **second)])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    assert "Targets[1].TargetId" in answer.body["Error"]["Message"], answer.body


def test_a_target_publishing_as_the_pushs_own_user_into_its_own_room_is_rejected(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room)
    body["Targets"] = [target("fan_a"), {"StrRoomId": body["StrRoomId"], "UserId": body["UserId"]}]
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    message = answer.body["Error"]["Message"]
    assert "Targets[1].UserId" in message and "'main'" in message, message


def test_two_targets_publishing_as_one_user_into_one_room_are_rejected(
    api: Api, room: LocalRoom
) -> None:
    # RoomId 123 is pushed into string room "123": the same room as StrRoomId "123".
    first = {"RoomId": 123, "UserId": "fan_user"}
    body = request_body(room, Targets=[first, {"StrRoomId": "123", "UserId": "fan_user"}])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    assert "Targets[1].UserId" in answer.body["Error"]["Message"], answer.body


def test_more_than_2000_rooms_are_rejected(api: Api, room: LocalRoom) -> None:
    many = [{"StrRoomId": f"r{i}", "UserId": "u"} for i in range(2000)]
    assert_invalid(api.call("POST", "/v1/pushes", request_body(room, Targets=many)), "Targets")


def test_a_target_without_a_usersig_is_refused_when_none_can_be_signed(
    api: Api, room: LocalRoom
) -> None:
    # The suite's API holds no secret key: nothing can sign the target's UserSig.
    body = request_body(room, Targets=[target("fan_a", UserSig="sig-a"), target("fan_b")])
    answer = api.call("POST", "/v1/pushes", body)
    assert_invalid(answer, "Targets")
    assert "Targets[1].UserSig is required" in answer.body["Error"]["Message"], answer.body


def test_the_status_shows_each_target_with_its_own_room_first_and_no_usersig(
    api: Api, room: LocalRoom
) -> None:
    body = request_body(room, UserSig=SECRET_SIG)
    named = target("fan_a", TargetId="lobby", UserSig=f"{SECRET_SIG}-lobby")
    numeric = {"RoomId": 4321, "UserId": "fan_user", "UserSig": f"{SECRET_SIG}-numeric"}
    rid = api.submit(**body, Targets=[named, numeric])
    status = api.status(rid)
    assert status["Targets"] == [
        {"TargetId": "main", "Room": status["Room"], "UserId": body["UserId"]},
        {"TargetId": "lobby", "Room": {"StrRoomId": "fan_a", "RtmpRoom": "fan_a"},
         "UserId": named["UserId"]},
        {"TargetId": "t2", "Room": {"RoomId": 4321, "RtmpRoom": "4321",
         "Note": "TRTC's RTMP ingest takes string rooms only: pushed into string room '4321'"},
         "UserId": "fan_user"},
    ]  # fmt: skip
    listing = api.call("GET", "/v1/pushes?Limit=20").body
    assert SECRET_SIG not in json.dumps([status, listing])


def test_a_push_without_targets_shows_none(api: Api, room: LocalRoom) -> None:
    assert "Targets" not in api.status(api.submit(**request_body(room)))
