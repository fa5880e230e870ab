"""Renditions end to end: prepared through the API (and the CLI), then remuxed by a
switchable push whose switch the room sees on one unbroken publish.

How renditions are remuxed, bridged and recorded is checked against file rooms in
tests/integration/test_renditions.py; here, that the service wires it all together.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from api import cli
from devstack.room import LocalRoom

from ..conftest import job_for
from ..media import make_numbered_clip
from ..stack import Api
from .test_metrics import scrape, value
from .test_switch import assert_seamless, wait_position, watch

APP = 1400000001


@pytest.fixture(scope="module")
def lesson(media: Path) -> dict[str, str]:
    """Explanation (8 s) and question (4 s), 320x240 at 25 fps."""
    make_numbered_clip(media / "lesson1.mp4", seconds=8, clip_id=1, tone=440)
    make_numbered_clip(media / "lesson2.mp4", seconds=4, clip_id=2, tone=660)
    return {"explanation": "lesson1.mp4", "question": "lesson2.mp4"}


def wait_prepared(api: Api, request_id: str, timeout: float = 60) -> dict[str, Any]:
    """The preparation once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.call("GET", f"/v1/renditions/{request_id}")
        assert answer.status == 200, answer.body
        if answer.body["State"] in ("succeeded", "failed"):
            return dict(answer.body)
        assert time.monotonic() < deadline, answer.body
        time.sleep(0.2)


def test_prepared_clips_are_remuxed_by_a_push_that_switches_seamlessly(
    api: Api, room: LocalRoom, room_name: str, lesson: dict[str, str]
) -> None:
    before = scrape(api.base)[2]
    urls = [room.media_url(lesson["explanation"]), room.media_url(lesson["question"])]
    answer = api.call("POST", "/v1/renditions", {"SdkAppId": APP, "Clips": urls})
    assert answer.status == 202, answer.body
    assert answer.headers["Location"] == f"/v1/renditions/{answer.body['RequestId']}"
    prepared = wait_prepared(api, answer.body["RequestId"])
    assert prepared["State"] == "succeeded", prepared
    assert prepared["Format"] == {"Width": 320, "Height": 240, "Fps": 25.0}
    assert [c["State"] for c in prepared["Clips"]] == ["ready", "ready"]
    assert [round(c["Seconds"]) for c in prepared["Clips"]] == [8, 4]

    watcher = watch(room, room_name)
    rid = api.submit(**job_for(room, lesson["explanation"], room_name, Switchable=True))
    wait_position(api, rid, 2.0)
    switch = {"VideoSrc": urls[1]}
    assert api.call("POST", f"/v1/pushes/{rid}/switch", switch).status == 202
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    watcher.join(15)
    assert final["State"] == "succeeded", final
    renditions = final["Progress"]["Renditions"]
    assert (renditions["Hits"], renditions["Misses"], renditions["Reencoded"]) == (2, 0, {})
    shown = [(p.clip, p.frame) for p in watcher.pictures]
    first_new = next(i for i, (clip, _) in enumerate(shown) if clip == 2)
    assert shown[first_new:] == [(2, n) for n in range(4 * 25)]
    assert_seamless(watcher)
    after = scrape(api.base)[2]
    for name, more in (
        ("roomcast_rendition_hits_total", 2),
        ("roomcast_renditions_prepared_total", 2),
    ):
        assert value(after, name) - value(before, name) == more, name


def test_the_cli_prepares_and_waits_until_the_clips_are_ready(
    api: Api, room: LocalRoom, lesson: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = room.media_url(lesson["question"]) + "?sign=SECRET-SIGNATURE"
    code = cli.run(["--api", api.base, "prepare", url, "--sdkappid", str(APP), "--wait"])
    out, err = capsys.readouterr()
    assert code == cli.OK, err
    request_id = out.strip()
    assert "ready" in err and "SECRET-SIGNATURE" not in err
    status = api.call("GET", f"/v1/renditions/{request_id}").body
    assert "SECRET-SIGNATURE" not in str(status)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"SdkAppId": APP, "Clips": []}, "Clips"),
        ({"SdkAppId": APP, "Clips": ["rtmp://host/live/x"]}, "Clips"),
        ({"SdkAppId": APP, "Clips": ["https://host/a.mp4"], "Width": 640}, "Height"),
        (
            {
                "SdkAppId": APP,
                "Clips": ["https://host/a.mp4"],
                "Width": 641,
                "Height": 480,
                "Fps": 25,
            },
            "Width",
        ),  # fmt: skip
        ({"Clips": ["https://host/a.mp4"]}, "SdkAppId"),
    ],
)
def test_a_bad_preparation_is_refused_naming_its_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    answer = api.call("POST", "/v1/renditions", body)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == field


def test_an_unknown_preparation_is_not_found(api: Api) -> None:
    assert api.call("GET", "/v1/renditions/no-such-id").status == 404


def test_a_clip_that_cannot_be_prepared_fails_alone_with_its_reason(
    api: Api, room: LocalRoom, lesson: dict[str, str]
) -> None:
    urls = [room.media_url("missing.mp4"), room.media_url(lesson["question"])]
    answer = api.call("POST", "/v1/renditions", {"SdkAppId": APP, "Clips": urls})
    prepared = wait_prepared(api, answer.body["RequestId"])
    assert prepared["State"] == "failed"
    missing, question = prepared["Clips"]
    assert missing["State"] == "failed" and "404" in missing["Error"], missing
    assert question["State"] == "ready"
