"""A push over WHIP through the API, as a user asks for it: ``Whip`` with the endpoint and
its token; the WebRTC viewer (tests/whipserver.py) sees every picture, and the token shows
nowhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api
from ..whipserver import whip_server
from .test_api_validation import assert_invalid
from .test_fanout import events_of

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
