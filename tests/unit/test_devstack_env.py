"""What the dev stack hands its honcho processes (devstack/stack.py): the workers publish
pushes with ``"Whip": "trtc"`` into the local WHIP ingest, and the console plays them."""

from __future__ import annotations

from pathlib import Path

from devstack.room import LocalRoom
from devstack.stack import DEV_SDK_APP_ID, DEV_SECRET_KEY, Endpoints, honcho_env
from devstack.whip import LocalWhip

from ..stack import settings_of


def test_the_dev_stack_points_whip_trtc_and_the_console_at_the_local_whip_ingest(
    tmp_path: Path,
) -> None:
    room = LocalRoom(tmp_path / "room", rtmp_port=1935, http_port=8080)
    whip = LocalWhip(tmp_path / "whip", port=8090)  # not started: only its URLs are read
    ends = Endpoints("redis://127.0.0.1:6379/0", "http://127.0.0.1:8000", "", room, whip)
    env = honcho_env(ends, 8000, 5555, {"PATH": "/usr/bin", "ROOMCAST_TRTC_WHIP_URL": "x"})
    assert env["ROOMCAST_TRTC_WHIP_URL"] == "http://127.0.0.1:8090/v2/pub"
    assert env["ROOMCAST_CONSOLE_WHIP_PREVIEW_URL"] == "http://127.0.0.1:8090/"
    assert env["ROOMCAST_CONSOLE_PREVIEW_URL"] == "http://127.0.0.1:8080/"
    assert env["ROOMCAST_SDK_SECRET_KEYS"] == f"{DEV_SDK_APP_ID}:{DEV_SECRET_KEY}"
    # What the API and the workers read from it.
    settings = settings_of(env)
    assert settings.trtc_whip_url == whip.pub_url
    assert settings.console_whip_preview_url == whip.preview_url
