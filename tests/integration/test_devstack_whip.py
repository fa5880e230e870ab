"""The dev stack's WHIP endpoint (devstack/whip.py, run as its child process): roomcast's
pipeline publishes into it as into TRTC's WHIP ingest (``Whip: "trtc"``'s URL, a UserSig of
the dev app), a forged UserSig is refused as TRTC refuses it, and a WHEP viewer (aiortc,
written here) receives the pictures in order."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from devstack.room import LocalRoom
from devstack.whip import LocalWhip
from jobs.errors import RoomUnreachable
from jobs.rooms import trtc_whip_endpoint
from jobs.usersig import generate
from pipeline import Control, PushResult, PushSpec, Timeouts, push
from pipeline.whip import whip_url

from ..media import make_numbered_clip, read_frame_number
from ..whipserver import frames

APP = 1400000000
KEY = "devstack-whip-test-key"
USER = "whip_bot"
FPS = 25
SECONDS = 8


@pytest.fixture(scope="module")
def clip(media: Path) -> str:
    make_numbered_clip(media / "devstack_whip.mp4", seconds=SECONDS, fps=FPS, gop=FPS)
    return "devstack_whip.mp4"


@pytest.fixture
def ingest(tmp_path: Path) -> Any:
    with LocalWhip(tmp_path, secret_keys={APP: KEY}, log=tmp_path / "whip.log") as endpoint:
        yield endpoint


def spec_for(room: LocalRoom, clip: str, ingest: LocalWhip, name: str, sig: str) -> PushSpec:
    """A push as the worker builds it for ``Whip: "trtc"`` (worker/runner.py)."""
    endpoint = trtc_whip_endpoint(ingest.pub_url, name, APP, USER)
    return PushSpec(
        source=room.media_url(clip),
        target=whip_url(endpoint, sig),
        secrets=(sig,),
        timeouts=Timeouts(room_open=5.0),
    )


def rooms(ingest: LocalWhip) -> list[dict[str, Any]]:
    with urllib.request.urlopen(ingest.rooms_url, timeout=5) as resp:
        listed: list[dict[str, Any]] = json.load(resp)
        return listed


def wait_published(ingest: LocalWhip, name: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for session in rooms(ingest):
            if session["Room"] == name and session["Pictures"] > 0:
                return session
        time.sleep(0.1)
    raise AssertionError(f"nobody published pictures into {name}: {rooms(ingest)}")


async def watch(url: str, publisher_done: threading.Event) -> tuple[list[int], int, int]:
    """A WHEP viewer: the frame numbers it decodes, its sound frames, and the HTTP status of
    its DELETE, watching until its tracks end or a second after the publisher is done."""
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer.addTransceiver("video", direction="recvonly")
    peer.addTransceiver("audio", direction="recvonly")
    numbers: list[int] = []
    sound = [0]
    tasks: list[asyncio.Future[None]] = []

    async def consume(track: Any) -> None:
        async for frame in frames(track):
            if track.kind == "video":
                numbers.append(read_frame_number(frame))
            else:
                sound[0] += 1

    peer.on("track", lambda track: tasks.append(asyncio.ensure_future(consume(track))))
    await peer.setLocalDescription(await peer.createOffer())  # every candidate in it
    async with aiohttp.ClientSession() as http:
        headers = {"Content-Type": "application/sdp"}
        async with http.post(url, data=peer.localDescription.sdp, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            assert resp.content_type == "application/sdp"
            answer, location = await resp.text(), resp.headers["Location"]
        await peer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        ended = asyncio.ensure_future(asyncio.wait(tasks))
        done = asyncio.ensure_future(asyncio.to_thread(publisher_done.wait, 30))
        await asyncio.wait([ended, done], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(1.0)  # what is on its way still arrives
        async with http.delete(url.split("/v2/")[0] + location) as resp:
            deleted = resp.status
    await peer.close()
    ended.cancel()
    return numbers, sound[0], deleted


def test_a_forged_usersig_is_refused_with_401_as_trtc_refuses_it(
    room: LocalRoom, clip: str, ingest: LocalWhip
) -> None:
    forged = generate(APP, "not-the-apps-key", USER)
    spec = spec_for(room, clip, ingest, "forged", forged)
    with Control() as control, pytest.raises(RoomUnreachable) as refused:
        push(spec, control)
    assert "401 Unauthorized" in refused.value.message
    assert rooms(ingest) == []
    logged = ingest.log.read_text() if ingest.log else ""
    assert "publish refused: room forged user whip_bot" in logged
    assert forged not in logged


def test_a_push_into_the_dev_whip_ingest_plays_to_a_whep_viewer_in_order(
    room: LocalRoom, clip: str, ingest: LocalWhip
) -> None:
    sig = generate(APP, KEY, USER)
    spec = spec_for(room, clip, ingest, "lesson", sig)
    results: list[PushResult] = []
    pushed = threading.Event()

    def publish() -> None:
        try:
            with Control() as control:
                results.append(push(spec, control))
        finally:
            pushed.set()

    publisher = threading.Thread(target=publish, name="whip-push", daemon=True)
    publisher.start()
    session = wait_published(ingest, "lesson")
    assert (session["SdkAppId"], session["UserId"], session["Audio"]) == (APP, USER, True)
    assert session["Video"] == "320x240"
    numbers, sound, deleted = asyncio.run(watch(ingest.sub_url(APP, "lesson", USER), pushed))
    publisher.join(15)
    assert results and results[0].outcome.value == "completed", results
    assert numbers, "the viewer decoded no picture"
    assert all(b > a for a, b in zip(numbers, numbers[1:], strict=False)), numbers
    # From where the viewer came in to the end, few pictures lost on the way (re-encoded).
    assert numbers[-1] >= SECONDS * FPS - 5, numbers[-5:]
    assert len(numbers) >= 0.8 * (numbers[-1] - numbers[0] + 1), len(numbers)
    assert sound > 50  # 20 ms Opus frames
    # The publisher's DELETE ended its session, and its viewers' with it.
    assert deleted == 404
    assert rooms(ingest) == []
    logged = ingest.log.read_text() if ingest.log else ""
    assert "publish start: room lesson user whip_bot app 1400000000" in logged
    assert "publish end: room lesson user whip_bot" in logged and "(DELETE)" in logged
    assert sig not in logged


def test_nobody_publishing_answers_404_and_the_preview_page_is_served(
    ingest: LocalWhip,
) -> None:
    request = urllib.request.Request(
        ingest.sub_url(APP, "empty"), data=b"v=0\r\n", method="POST",
        headers={"Content-Type": "application/sdp"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    assert answer.value.code == 404
    answer.value.close()
    for path, kind in (("/", "text/html"), ("/app.js", "text/javascript"),
                       ("/whep.js", "text/javascript"), ("/style.css", "text/css")):  # fmt: skip
        with urllib.request.urlopen(ingest.base + path, timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith(kind), path
