"""Renditions end to end: prepared through the API (and the CLI), then remuxed by a
switchable push whose switch the room sees on one unbroken publish.

How renditions are remuxed, bridged and recorded is checked against file rooms in
tests/integration/test_renditions.py; here, that the service wires it all together.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from api import cli
from devstack.ports import free_port
from devstack.room import LocalRoom

from ..conftest import CALLBACK_SECRET, job_for
from ..media import make_numbered_clip
from ..receiver import Receiver
from ..stack import Api
from .test_metrics import scrape, value
from .test_switch import assert_seamless, wait_position, watch

APP = 1400000001
ENDED = ("succeeded", "failed", "stopped")


@pytest.fixture(scope="module")
def lesson(media: Path) -> dict[str, str]:
    """Explanation (8 s) and question (4 s), 320x240 at 25 fps."""
    make_numbered_clip(media / "lesson1.mp4", seconds=8, clip_id=1, tone=440)
    make_numbered_clip(media / "lesson2.mp4", seconds=4, clip_id=2, tone=660)
    return {"explanation": "lesson1.mp4", "question": "lesson2.mp4"}


@pytest.fixture(scope="module")
def long_lesson(media: Path) -> str:
    """A minute at 640x360: long enough to be stopped while it encodes."""
    make_numbered_clip(media / "long_lesson.mp4", seconds=60, clip_id=3, size=(640, 360))
    return "long_lesson.mp4"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    backend = Receiver(free_port(), tmp_path / "received.jsonl", CALLBACK_SECRET)
    backend.start()
    yield backend
    backend.kill()


def wait_prepared(
    api: Api, request_id: str, timeout: float = 60, until: Any = None
) -> dict[str, Any]:
    """The preparation once it has ended (or once ``until(status)`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.call("GET", f"/v1/renditions/{request_id}")
        assert answer.status == 200, answer.body
        if until(answer.body) if until else answer.body["State"] in ENDED:
            return dict(answer.body)
        assert time.monotonic() < deadline, answer.body
        time.sleep(0.1)


def history(api: Api, request_id: str) -> list[dict[str, Any]]:
    """The preparation's events as the API streams them (it has ended: the stream ends)."""
    url = f"{api.base}/v1/renditions/{request_id}/events"
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


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
        (
            {"SdkAppId": APP, "Clips": ["https://host/a.mp4"], "CallbackUrl": "ftp://x/"},
            "CallbackUrl",
        ),
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


def test_a_preparations_events_reach_its_callback_url_signed_once_and_in_order(
    api: Api, room: LocalRoom, lesson: dict[str, str], receiver: Receiver
) -> None:
    urls = [room.media_url(lesson["explanation"]), room.media_url("missing.mp4")]
    body = {"SdkAppId": APP, "Clips": urls, "CallbackUrl": receiver.url}
    request_id = api.call("POST", "/v1/renditions", body).body["RequestId"]

    def delivered(status: dict[str, Any]) -> bool:
        return status["State"] in ENDED and status["Callbacks"]["State"] == "delivered"

    prepared = wait_prepared(api, request_id, until=delivered)
    events = history(api, request_id)
    assert [e["Event"] for e in events] == [
        "queued",
        "running",
        "clip-ready",
        "clip-failed",
        "failed",
    ]
    assert [e["Seq"] for e in events] == [1, 2, 3, 4, 5]
    ready, failed, end = events[2:]
    assert (ready["Clip"], ready["Seconds"], failed["Clip"]) == (
        0,
        prepared["Clips"][0]["Seconds"],
        1,
    )
    assert "404" in failed["Error"] and (end["Ready"], end["Failed"]) == (1, 1)
    got = receiver.acknowledged(request_id)
    assert list({e["Id"]: e for e in got}.values()) == events
    assert all(e["verified"] for e in receiver.entries()), "a signature did not verify"
    assert prepared["Callbacks"]["Delivered"] == 5
    assert "receiver-token" not in json.dumps(prepared)


def _stop_through_the_api(api: Api, request_id: str, service_env: dict[str, str]) -> None:
    answer = api.call("DELETE", f"/v1/renditions/{request_id}")
    assert answer.status in (200, 202), answer.body


def _revoke_through_celery(api: Api, request_id: str, service_env: dict[str, str]) -> None:
    url = service_env["ROOMCAST_REDIS_URL"]
    celery = Celery("a-user-s-client", broker=url, backend=url)
    try:
        celery.control.revoke(request_id)
    finally:
        celery.close()


@pytest.mark.parametrize(
    ("stop", "reason"),
    [
        (_stop_through_the_api, "stopped through the API"),
        (_revoke_through_celery, "revoked through Celery (revoke)"),
    ],
    ids=["api", "celery-revoke"],
)
def test_a_running_preparation_stops_and_leaves_no_half_rendition(
    api: Api,
    room: LocalRoom,
    long_lesson: str,
    service_env: dict[str, str],
    stop: Any,
    reason: str,
) -> None:
    cache = Path(service_env["ROOMCAST_RENDITIONS_DIR"])
    kept = sorted(cache.glob("*/*.mp4"))
    urls = [room.media_url(long_lesson), room.media_url(long_lesson) + "?again"]
    request_id = api.call("POST", "/v1/renditions", {"SdkAppId": APP, "Clips": urls}).body[
        "RequestId"
    ]
    wait_prepared(api, request_id, until=lambda s: (s["Clips"][0]["Progress"] or 0) > 0)
    stop(api, request_id, service_env)
    stopped = wait_prepared(api, request_id, timeout=15)
    assert (stopped["State"], stopped["Reason"]) == ("stopped", reason), stopped
    assert [c["State"] for c in stopped["Clips"]] == ["stopped", "stopped"]
    assert [e["Event"] for e in history(api, request_id)] == ["queued", "running", "stopped"]
    assert sorted(cache.glob("*/*.mp4")) == kept and not list(cache.glob("*/*.part"))
    result = Celery("a-user-s-client", backend=service_env["ROOMCAST_REDIS_URL"]).AsyncResult(
        request_id
    )
    assert (result.state, str(result.result)) == ("REVOKED", reason)
    assert api.call("DELETE", f"/v1/renditions/{request_id}").status == 200


def test_a_stop_of_a_preparation_that_ended_is_a_conflict(
    api: Api, room: LocalRoom, lesson: dict[str, str]
) -> None:
    body = {"SdkAppId": APP, "Clips": [room.media_url(lesson["question"])]}
    request_id = api.call("POST", "/v1/renditions", body).body["RequestId"]
    assert wait_prepared(api, request_id)["State"] == "succeeded"
    answer = api.call("DELETE", f"/v1/renditions/{request_id}")
    assert answer.status == 409 and answer.body["Error"]["Code"] == "AlreadyFinished"
    assert "preparation already ended in state succeeded" in answer.body["Error"]["Message"]
