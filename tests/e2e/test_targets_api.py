"""A fan-out push's rooms while it runs, through the API: POST /v1/pushes/<id>/targets and
DELETE /v1/pushes/<id>/targets/<TargetId>, their record and their refusals.

What the rooms receive is tests/e2e's fan-out publishing test's business; here the record, the
secrets and the answers are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Answer, Api, start_api, start_worker, stop
from ..viewer import FrameNumberViewer

FINAL = {"succeeded", "failed", "stopped"}


@pytest.fixture
def fanout(api: Api, room: LocalRoom, long_clip: str, room_name: str) -> Iterator[str]:
    """A running fan-out push: its own room (main) and room ``<room_name>_b`` as t1."""
    rid = api.submit(
        **job_for(
            room,
            long_clip,
            room_name,
            MaxDuration=30,
            Targets=[{"StrRoomId": f"{room_name}_b", "UserId": "fan_b", "UserSig": "sig-b"}],
        )
    )
    api.wait_state(rid, {"running"}, timeout=15)
    yield rid
    api.call("POST", f"/v1/pushes/{rid}/stop")
    api.wait_state(rid, FINAL, timeout=15)


def add(api: Api, rid: str, **target: Any) -> Answer:
    return api.call("POST", f"/v1/pushes/{rid}/targets", target)


def remove(api: Api, rid: str, target_id: str) -> Answer:
    return api.call("DELETE", f"/v1/pushes/{rid}/targets/{target_id}")


def target_ids(api: Api, rid: str) -> list[str]:
    return [t["TargetId"] for t in api.status(rid)["Targets"]]


def assert_error(answer: Answer, status: int, code: str, field: str | None = None) -> None:
    assert answer.status == status, answer.body
    assert answer.body["Error"]["Code"] == code, answer.body
    assert answer.body["Error"].get("Field") == field, answer.body


def test_rooms_added_and_removed_while_the_push_runs_show_in_its_status(
    api: Api, fanout: str, room_name: str
) -> None:
    added = add(api, fanout, StrRoomId=f"{room_name}_c", UserId="fan_c", UserSig="sig-c")
    assert added.status == 202, added.body
    assert added.body == {"RequestId": fanout, "TargetId": "t2"}  # by position
    named = add(api, fanout, TargetId="lobby", RoomId=77, UserId="fan_d", UserSig="sig-d")
    assert named.status == 202 and named.body["TargetId"] == "lobby", named.body
    assert target_ids(api, fanout) == ["main", "t1", "t2", "lobby"]
    lobby = api.status(fanout)["Targets"][-1]
    assert lobby["Room"]["RtmpRoom"] == "77" and lobby["UserId"] == "fan_d"

    for gone in ("main", "t1"):
        answer = remove(api, fanout, gone)
        assert answer.status == 202 and answer.body["TargetId"] == gone, answer.body
    assert target_ids(api, fanout) == ["t2", "lobby"]


def test_removing_the_last_room_left_answers_409_stop_the_push_instead(
    api: Api, fanout: str
) -> None:
    assert remove(api, fanout, "main").status == 202
    answer = remove(api, fanout, "t1")
    assert_error(answer, 409, "LastTarget")
    assert "stop the push instead" in answer.body["Error"]["Message"]
    assert target_ids(api, fanout) == ["t1"]


def test_an_unknown_push_or_target_answers_404(api: Api, fanout: str) -> None:
    assert_error(add(api, "no-such-push", StrRoomId="r", UserId="u"), 404, "NotFound")
    assert_error(remove(api, "no-such-push", "t1"), 404, "NotFound")
    assert_error(remove(api, fanout, "t9"), 404, "NotFound")
    assert remove(api, fanout, "main").status == 202
    assert_error(remove(api, fanout, "main"), 404, "NotFound")  # removed already


def test_a_push_not_started_with_targets_answers_409_not_fanout(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, long_clip, room_name, MaxDuration=30))
    api.wait_state(rid, {"running"}, timeout=15)
    try:
        for answer in (add(api, rid, StrRoomId="r", UserId="u"), remove(api, rid, "main")):
            assert_error(answer, 409, "NotFanout")
            assert answer.body["Error"]["Message"] == (
                "this push was not started with Targets: give Targets (it may be []) to fan out"
            )
    finally:
        api.call("POST", f"/v1/pushes/{rid}/stop")


def test_a_push_that_is_not_running_answers_409_not_running(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    rid = api.submit(**job_for(room, "missing.mp4", room_name, Targets=[]))
    api.wait_state(rid, FINAL, timeout=30)
    assert_error(add(api, rid, StrRoomId="r", UserId="u", UserSig="s"), 409, "NotRunning")
    assert_error(remove(api, rid, "main"), 409, "NotRunning")


@pytest.mark.parametrize(
    ("target", "field"),
    [
        pytest.param({"StrRoomId": "r"}, "UserId", id="no_userid"),
        pytest.param({"UserId": "u", "UserSig": "s"}, "RoomId", id="no_room"),
        pytest.param({"RoomId": 1, "StrRoomId": "r", "UserId": "u"}, "StrRoomId", id="two_rooms"),
        pytest.param({"TargetId": "main", "StrRoomId": "r", "UserId": "u"}, "TargetId", id="main"),
        pytest.param({"TargetId": "t1", "StrRoomId": "r", "UserId": "u", "UserSig": "s"},
                     "TargetId", id="targetid_taken"),
        pytest.param({"StrRoomId": "r", "UserId": "u"}, "UserSig", id="no_usersig_to_sign"),
        pytest.param({"StrRoomId": "r", "UserId": "u", "Sig": "s"}, "Sig", id="unknown_field"),
    ],
)  # fmt: skip
def test_a_bad_or_taken_target_answers_400_naming_the_field(
    api: Api, fanout: str, target: dict[str, Any], field: str
) -> None:
    assert_error(add(api, fanout, **target), 400, "InvalidParameter", field)
    assert target_ids(api, fanout) == ["main", "t1"]


def test_a_room_its_user_publishes_into_already_answers_400(
    api: Api, fanout: str, room_name: str
) -> None:
    # t1 publishes as fan_b into <room_name>_b; main as pusher_1 into <room_name>.
    for room, user in ((f"{room_name}_b", "fan_b"), (room_name, "pusher_1")):
        answer = add(api, fanout, StrRoomId=room, UserId=user, UserSig="s")
        assert_error(answer, 400, "InvalidParameter", "UserId")
        assert "publish once per room" in answer.body["Error"]["Message"]
    assert target_ids(api, fanout) == ["main", "t1"]


def test_a_target_body_that_is_not_json_answers_415(api: Api, fanout: str) -> None:
    answer = api.call(
        "POST", f"/v1/pushes/{fanout}/targets", raw=b"x", headers={"Content-Type": "text/plain"}
    )
    assert_error(answer, 415, "UnsupportedMediaType")


# --- a push that waits for a worker -----------------------------------------------------


@pytest.fixture
def idle_stack(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Api, Callable[[], None]]]:
    """An API whose queue no worker serves yet (pushes wait, as one handed back by a worker
    that stopped does), and a way to start that worker."""
    env = dict(service_env, ROOMCAST_QUEUE="roomcast_idle_targets")
    api_proc, base = start_api(env, tmp_path / "api.log")
    workers: list[Any] = []
    try:
        yield Api(base), lambda: workers.append(start_worker(env, tmp_path / "w.log", "idle"))
    finally:
        stop(api_proc)
        for worker in workers:
            stop(worker)


def test_rooms_changed_while_the_push_waits_for_a_worker_are_where_it_publishes_when_it_runs(
    idle_stack: tuple[Api, Callable[[], None]], room: LocalRoom, short_clip: str, room_name: str
) -> None:
    api, start_the_worker = idle_stack
    first = {"StrRoomId": f"{room_name}_b", "UserId": "fan_b", "UserSig": "sig-b"}
    rid = api.submit(**job_for(room, short_clip, room_name, Targets=[first]))
    assert api.status(rid)["State"] == "queued"
    added = add(api, rid, StrRoomId=f"{room_name}_c", UserId="fan_c", UserSig="sig-c")
    assert added.status == 202, added.body
    assert remove(api, rid, "t1").status == 202
    assert target_ids(api, rid) == ["main", added.body["TargetId"]]
    viewer = FrameNumberViewer(room.play_url(f"{room_name}_c"), idle=2.0)
    viewer.start()
    start_the_worker()
    final = api.wait_state(rid, FINAL, timeout=60)
    viewer.join(15)
    assert final["State"] == "succeeded", final
    assert set(final["Progress"]["Targets"]) == {"main", added.body["TargetId"]}
    assert viewer.numbers, viewer.error  # the room added while it waited got the push


# --- one publisher per user and room, fan-out rooms included -----------------------------


def test_a_fanout_room_is_its_users_in_that_room_as_a_pushs_own_room_is(
    api: Api, fanout: str, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    taken = {"StrRoomId": f"{room_name}_b", "UserId": "fan_b"}  # the fanout's t1
    as_own_room = job_for(room, long_clip, taken["StrRoomId"], UserId="fan_b")
    assert_error(api.call("POST", "/v1/pushes", as_own_room), 409, "PublisherBusy")
    as_target = job_for(room, long_clip, f"{room_name}_x", Targets=[taken | {"UserSig": "s"}])
    busy = api.call("POST", "/v1/pushes", as_target)
    assert_error(busy, 409, "PublisherBusy")
    assert busy.body["Error"]["RequestId"] == fanout
    assert "target 't1'" in busy.body["Error"]["Message"]


def test_a_room_added_as_a_user_who_publishes_there_for_another_push_is_refused(
    api: Api, fanout: str, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    other = api.submit(**job_for(room, long_clip, f"{room_name}_y", MaxDuration=30, Targets=[]))
    try:
        api.wait_state(other, {"running"}, timeout=15)
        busy = add(api, other, StrRoomId=f"{room_name}_b", UserId="fan_b", UserSig="s")
        assert_error(busy, 409, "PublisherBusy")
        assert target_ids(api, other) == ["main"]
    finally:
        api.call("POST", f"/v1/pushes/{other}/stop")


def test_a_removed_fanout_room_is_free_for_another_push_at_once(
    api: Api, fanout: str, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    assert remove(api, fanout, "t1").status == 202
    rid = api.submit(**job_for(room, long_clip, f"{room_name}_b", UserId="fan_b", MaxDuration=30))
    api.call("POST", f"/v1/pushes/{rid}/stop")
