"""The whole push path: HTTP job → Celery worker → PyAV → nginx-rtmp room → a viewer."""

from __future__ import annotations

import time

import pytest

from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api
from ..viewer import Viewer


def watch(room: LocalRoom, room_name: str) -> Viewer:
    viewer = Viewer(room.play_url(room_name))
    viewer.start()
    time.sleep(0.3)  # let the play session exist before the publish starts
    return viewer


def test_bframes_clip_arrives_reencoded_without_bframes_in_real_time(
    api: Api, room: LocalRoom, bframes_clip: str, room_name: str
) -> None:
    viewer = watch(room, room_name)
    rid = api.submit(**job_for(room, bframes_clip, room_name))
    assert api.status(rid)["State"] in {"queued", "running"}
    api.wait_state(rid, {"running"}, timeout=15)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=40)
    viewer.join(15)
    cap = viewer.capture

    assert final["State"] == "succeeded", final
    assert cap.error is None, cap.error
    assert cap.codecs == {"video": "h264", "audio": "aac"}
    assert not cap.has_b_frames()
    assert abs(cap.media_seconds("video") - 10) <= 0.5
    # Paced, not a burst: after the first second, arrival follows the timestamps. Never
    # ahead of them; behind by a little at most, as a busy CI machine starves the encoder
    # (9.9 s for 9 s of pictures beside the whole suite on two cores).
    video = [p for p in cap.of("video") if p.pts >= 1.0]
    wall = video[-1].arrival - video[0].arrival
    media = video[-1].pts - video[0].pts
    assert media - 0.5 < wall < media * 1.2, (wall, media)
    for kind in ("video", "audio"):
        dts = [p.dts for p in cap.of(kind)]
        assert dts == sorted(dts), f"{kind} timestamps go backwards"
    assert min(p.dts for p in cap.packets) < 0.2, "output timestamps start at 0"
    progress = final["Progress"]
    assert abs(progress["Position"] - progress["Duration"]) < 0.5, progress
    # Encoded once, picture and sound, into a rendition that later pushes of the file remux
    # (docs/renditions.md): the first push of it here, or a remux of an earlier one's.
    streams = progress["Streams"]
    assert {s["Type"]: s["Action"] for s in streams} == {"video": "transcode", "audio": "transcode"}
    assert all("rendition" in s["Reason"] for s in streams), streams
    assert progress["Renditions"]["Hits"] + progress["Renditions"]["Written"] == 1


def test_compatible_clip_is_remuxed_bit_for_bit(
    api: Api, room: LocalRoom, compat_clip: str, room_name: str, media
) -> None:
    import av

    viewer = Viewer(room.play_url(room_name), keep_data=True)
    viewer.start()
    time.sleep(0.3)
    rid = api.submit(**job_for(room, compat_clip, room_name))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=40)
    viewer.join(15)
    assert final["State"] == "succeeded", final
    actions = {s["Type"]: s["Action"] for s in final["Progress"]["Streams"]}
    assert actions == {"video": "remux", "audio": "remux"}

    with av.open(str(media / compat_clip)) as src:
        source_video = [bytes(p) for p in src.demux(video=0) if p.size]
    received = [p.data for p in viewer.capture.of("video")]
    assert len(received) >= len(source_video) - 35  # a viewer may join after the first GOP
    tail = received[-30:]
    assert tail == source_video[-30:], "remuxed video packets must pass through unchanged"


def test_numeric_room_id_is_pushed_into_the_string_room_of_its_digits(
    api: Api, room: LocalRoom, long_clip: str
) -> None:
    viewer = watch(room, "4242")
    job = job_for(room, long_clip, "unused", MaxDuration=2)
    del job["StrRoomId"]
    job["RoomId"] = 4242
    rid = api.submit(**job)
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    viewer.join(15)
    assert final["Room"]["RtmpRoom"] == "4242"
    assert "string room" in final["Room"]["Note"]
    assert viewer.capture.of("video"), viewer.capture.error


def test_room_id_wins_over_str_room_id(api: Api, room: LocalRoom, long_clip: str) -> None:
    rid = api.submit(**job_for(room, long_clip, "ignored_room", RoomId=77, MaxDuration=1))
    status = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    assert status["Room"]["RtmpRoom"] == "77"


def test_source_that_404s_fails_fast_with_a_reason(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    rid = api.submit(**job_for(room, "no-such-file.mp4", room_name))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=15)
    assert final["State"] == "failed"
    assert final["Error"]["Code"] == "SourceNotFound"
    assert "not found" in final["Error"]["Message"]


def test_source_that_is_not_media_fails_before_the_room_is_touched(
    api: Api, room: LocalRoom, media, room_name: str
) -> None:
    (media / "notes.mp4").write_text("this is not a video\n" * 50)
    rid = api.submit(**job_for(room, "notes.mp4", room_name))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=15)
    assert final["State"] == "failed"
    assert final["Error"]["Code"] == "SourceNotMedia", final["Error"]


def test_a_push_starts_at_its_start_point(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, short_clip, room_name, StartSeconds=2))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    assert final["State"] == "succeeded", final
    # 2 s of the 4 s clip were sent (remuxed: from the keyframe at or before 2 s).
    progress = final["Progress"]
    assert progress["Position"] == pytest.approx(4.0, abs=0.1)
    assert 1.5 <= progress["OutputTime"] <= 2.2, progress


def test_a_start_point_for_a_live_source_is_refused_naming_it(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    body = job_for(room, "x", room_name, Mode="live", VideoSrc="rtmp://127.0.0.1/live/x")
    answer = api.call("POST", "/v1/pushes", dict(body, StartSeconds=5))
    assert answer.status == 400 and answer.body["Error"]["Field"] == "StartSeconds"


def test_an_idle_timeout_for_a_file_is_refused_naming_it(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    answer = api.call(
        "POST", "/v1/pushes", job_for(room, short_clip, room_name, IdleTimeoutSeconds=5)
    )
    assert answer.status == 400 and answer.body["Error"]["Field"] == "IdleTimeoutSeconds"
