"""A fan-out push end to end: submitted with Targets through the API, run by a worker,
watched in every room; a room added through the API while it runs joins at a keyframe.

The pipeline's isolation (a room that cannot be reached, a frozen server, a room that falls
behind) is checked in tests/integration/test_fanout.py; the routes' answers and records in
tests/e2e/test_targets_api.py.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api
from ..viewer import FrameNumberViewer

FPS = 25
SECONDS = 8


@pytest.fixture(scope="module")
def clip(media: Path) -> str:
    """8 s, 25 fps, a keyframe every second (frame numbers 0…199)."""
    make_numbered_clip(media / "fanout_e2e.mp4", seconds=SECONDS, gop=FPS)
    return "fanout_e2e.mp4"


def events_of(api: Api, rid: str) -> list[dict[str, object]]:
    """The push's events, from its server-sent event stream (it has ended)."""
    with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("data:")]


def test_a_fanout_push_reaches_every_room_and_a_room_added_through_the_api_joins_it(
    api: Api, room: LocalRoom, room_name: str, clip: str
) -> None:
    rooms = {"main": room_name, "t1": f"{room_name}_b", "t2": f"{room_name}_c"}
    viewers = {key: FrameNumberViewer(room.play_url(name), idle=2.0) for key, name in rooms.items()}
    for viewer in viewers.values():
        viewer.start()
    time.sleep(0.3)
    target = {"StrRoomId": rooms["t1"], "UserId": "fan_b", "UserSig": "sig-b"}
    rid = api.submit(**job_for(room, clip, room_name, Targets=[target]))
    api.wait_state(rid, {"running"}, timeout=15)
    deadline = time.monotonic() + 15
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < 2.0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    added = {"StrRoomId": rooms["t2"], "UserId": "fan_c", "UserSig": "sig-c"}
    answer = api.call("POST", f"/v1/pushes/{rid}/targets", added)
    assert answer.status == 202, answer.body
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    for viewer in viewers.values():
        viewer.join(15)
    assert final["State"] == "succeeded", final
    every = list(range(SECONDS * FPS))
    assert viewers["main"].numbers == every
    assert viewers["t1"].numbers == every
    late = viewers["t2"].numbers
    assert late and late[0] % FPS == 0 and late == list(range(late[0], SECONDS * FPS))
    shown = final["Progress"]["Targets"]
    assert set(shown) == {"main", "t1", "t2"}
    assert {t["State"] for t in shown.values()} == {"live"}
    live = [e["TargetId"] for e in events_of(api, rid) if e["Event"] == "target-live"]
    assert sorted(live) == ["main", "t1", "t2"]
