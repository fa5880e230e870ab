"""The ``roomcast`` command, installed by the package, run as scripts run it: a subprocess
against the real API, judged by its exit code, its stdout (data) and its stderr (messages)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

from devstack.ports import free_port
from devstack.room import LocalRoom

from ..stack import BIN, Api

FINAL = {"succeeded", "failed", "stopped"}
SDKAPPID = "1400000001"


@dataclass
class Run:
    """What one ``roomcast`` call did."""

    code: int
    out: str
    err: str


def roomcast(api: Api | str, *args: str, timeout: float = 60) -> Run:
    """Run the installed console script against ``api`` (an Api or a base URL)."""
    base = api.base if isinstance(api, Api) else api
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update(ROOMCAST_API_URL=base, ROOMCAST_SDKAPPID=SDKAPPID)
    proc = subprocess.run(
        [str(BIN / "roomcast"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def push_args(room: LocalRoom, clip: str, room_name: str, *extra: str) -> list[str]:
    return ["push", room.media_url(clip), "--room", room_name, "--user", "cli_user",
            "--usersig", "sig-for-tests", *extra]  # fmt: skip


def test_push_follow_shows_progress_until_the_push_succeeds_and_exits_0(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    run = roomcast(api, *push_args(room, short_clip, room_name, "--follow"))
    assert run.code == 0, run
    request_id = run.out.strip()  # stdout holds the id only, for ID=$(roomcast push …)
    assert api.status(request_id)["State"] == "succeeded"
    lines = run.err.splitlines()
    assert any("running" in line and "/4.0 s" in line and "Mbit/s" in line for line in lines), lines
    assert "succeeded" in lines[-1] and "4.0/4.0 s" in lines[-1], lines


def test_follow_of_a_push_that_fails_exits_1_with_its_error(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    run = roomcast(api, *push_args(room, "missing.mp4", room_name, "--follow"))
    assert run.code == 1, run
    assert "SourceNotFound" in run.err


def test_a_refused_push_exits_3_and_names_the_field(api: Api, room: LocalRoom) -> None:
    run = roomcast(api, "push", room.media_url("x.mp4"), "--room-id", "0", "--user", "u")
    assert run.code == 3, run
    assert "InvalidParameter" in run.err and "(field RoomId)" in run.err
    assert run.out == ""

    run = roomcast(api, "push", room.media_url("x.mp4"), "--room", "no spaces", "--user", "u")
    assert run.code == 3 and "(field StrRoomId)" in run.err, run


def test_status_list_and_stop_of_a_running_push(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    started = roomcast(api, *push_args(room, long_clip, room_name))
    assert started.code == 0, started
    request_id = started.out.strip()
    api.wait_state(request_id, {"running"}, timeout=15)

    status = roomcast(api, "status", request_id)
    assert status.code == 0, status
    assert json.loads(status.out)["State"] == "running"

    api.wait_duration(request_id, timeout=15)

    listed = roomcast(api, "list", "--state", "running")
    assert listed.code == 0, listed
    row = next(line for line in listed.out.splitlines() if line.startswith(request_id))
    assert "running" in row and room_name in row and "/60.0 s" in row
    as_json = json.loads(roomcast(api, "list", "--state", "running", "--json").out)
    assert request_id in {p["RequestId"] for p in as_json["Pushes"]}

    stopped = roomcast(api, "stop", request_id)
    assert stopped.code == 0, stopped
    assert api.wait_state(request_id, FINAL, timeout=15)["State"] == "stopped"
    # Following a push that was stopped is not a success.
    assert roomcast(api, "status", request_id, "--follow").code == 1


def test_a_fanout_push_takes_targets_and_rooms_are_added_and_removed_from_the_cli(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    target = f"{room_name}_b:fan_b:sig-b"
    started = roomcast(api, *push_args(room, long_clip, room_name, "--target", target))
    assert started.code == 0, started
    request_id = started.out.strip()
    api.wait_state(request_id, {"running"}, timeout=15)
    try:
        added = roomcast(api, "target-add", request_id, "77", "fan_c", "--usersig", "sig-c")
        assert added.code == 0 and added.out.strip() == "t2", added
        named = ("target-add", request_id, f"{room_name}_d", "fan_d", "--target-id", "lobby")
        assert roomcast(api, *named, "--usersig", "sig-d").out.strip() == "lobby"
        removed = roomcast(api, "target-remove", request_id, "t1")
        assert removed.code == 0, removed
        targets = api.status(request_id)["Targets"]
        assert [(t["TargetId"], t["Room"]) for t in targets] == [
            ("main", {"StrRoomId": room_name, "RtmpRoom": room_name}),
            ("t2", {"RoomId": 77, "RtmpRoom": "77", "Note": targets[1]["Room"]["Note"]}),
            ("lobby", {"StrRoomId": f"{room_name}_d", "RtmpRoom": f"{room_name}_d"}),
        ]
        unknown = roomcast(api, "target-remove", request_id, "nope")
        assert unknown.code == 3 and "NotFound" in unknown.err, unknown
    finally:
        roomcast(api, "stop", request_id)


def test_unknown_push_exits_3_and_player_verbs_reach_the_api(api: Api) -> None:
    run = roomcast(api, "status", "no-such-push")
    assert run.code == 3 and "NotFound" in run.err, run
    run = roomcast(api, "pause", "no-such-push")
    assert run.code == 3 and "NotFound" in run.err, run


def test_usage_errors_exit_2(api: Api) -> None:
    assert roomcast(api, "push", "http://x/a.mp4", "--user", "u").code == 2  # no room
    assert roomcast(api, "seek", "some-id", "not-a-number").code == 2
    assert roomcast(api, "push", "http://x/a.mp4", "--room", "r", "--user", "u",
                    "--target", "room-without-user").code == 2  # fmt: skip
    assert roomcast(api, "frobnicate").code == 2


def test_an_unreachable_api_exits_4() -> None:
    run = roomcast(f"http://127.0.0.1:{free_port()}", "list")
    assert run.code == 4, run
    assert "cannot reach the API" in run.err
