"""A push over WHIP (pipeline/whip.py) into a WebRTC endpoint nobody here wrote the WebRTC
of (aiortc, tests/whipserver.py), watched by its decoder: every picture in order, the
sound as Opus at 48 kHz, the session ended with the WHIP DELETE."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from devstack.room import LocalRoom
from jobs.commands import Switch
from jobs.errors import RoomUnreachable, SourceHasNoMedia
from pipeline import Control, PushSpec, Timeouts, push
from pipeline.flv import FLV_HEADER, SinceKeyframe, keyframe_at, whole_tags
from pipeline.spec import Target
from pipeline.whip import endpoint_of, whip_url

from .. import corpus
from ..media import flv_of, make_clip, make_numbered_clip
from ..viewer import FrameNumberViewer
from ..whipserver import Session, whip_server

FPS = 25
SECONDS = 6
TOKEN = "whip-token-for-tests"
#: aiortc hands a picture on only once the next one arrives, and the DELETE ends the track:
#: the viewer never decodes the last picture sent.
UNDECODED_AT_END = 1
#: A flash and its beep at the player, as over RTMP (tests/integration/test_media_compat.py).
SYNC_TOLERANCE = 0.040
NO_THUMB = np.zeros((1, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def numbered(media: Path) -> str:
    """6 s, 25 fps, H.264 High (re-encoded for WebRTC), a keyframe every second."""
    make_numbered_clip(media / "whip_numbered.mp4", seconds=SECONDS, fps=FPS, gop=FPS)
    return "whip_numbered.mp4"


def test_a_file_pushed_over_whip_reaches_a_webrtc_viewer_picture_by_picture(
    room: LocalRoom, numbered: str
) -> None:
    with whip_server(token=TOKEN) as server:
        spec = PushSpec(
            source=room.media_url(numbered),
            target=whip_url(server.url("lesson"), TOKEN),
            secrets=(TOKEN,),
        )
        with Control() as control:
            result = push(spec, control)
        session = server.session("lesson")
        assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert session.deleted
    frames = SECONDS * FPS
    assert session.numbers == list(range(frames - UNDECODED_AT_END))
    assert session.sizes == {(320, 240)}
    assert session.sample_rates == {48_000}
    assert session.sound_frames >= SECONDS * 50 - 5  # 20 ms Opus frames
    video = result.progress.as_dict()["Streams"][0]
    assert video["Action"] == "transcode" and "constrained baseline" in video["Reason"]


def test_a_picture_lost_on_the_way_is_sent_again_when_the_endpoint_asks(
    room: LocalRoom, numbered: str
) -> None:
    with whip_server() as server:
        server.lose_video_packet = 60  # the endpoint asks for it again (NACK)
        spec = PushSpec(source=room.media_url(numbered), target=whip_url(server.url("lossy")))
        with Control() as control:
            result = push(spec, control)
        session = server.session("lossy")
        assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert server.lost == 1
    decoded = session.numbers
    assert decoded == list(range(len(decoded)))  # in order, none missing
    # aiortc's jitter buffer hands on one picture per packet added: what came while it
    # waited for the lost one drains only at pictures of several packets, and some may be
    # in it still at the DELETE. Without the retransmission, nothing after the loss.
    assert len(decoded) >= SECONDS * FPS - UNDECODED_AT_END - 10


def test_a_constrained_baseline_source_goes_over_whip_without_re_encoding(
    room: LocalRoom, media: Path
) -> None:
    make_clip(media / "whip_baseline.mp4", seconds=4, size="320x240", fps=25, gop=25,
              h264_profile="baseline")  # fmt: skip
    with whip_server() as server:
        spec = PushSpec(
            source=room.media_url("whip_baseline.mp4"), target=whip_url(server.url("b"))
        )
        with Control() as control:
            result = push(spec, control)
        session = server.session("b")
        assert session.ended.wait(10)
    video = result.progress.as_dict()["Streams"][0]
    assert video["Action"] == "remux", video
    assert len(session.arrivals) >= 4 * 25 - UNDECODED_AT_END


def test_a_refused_token_fails_the_push_at_once_with_the_endpoints_answer_and_no_token(
    room: LocalRoom, numbered: str
) -> None:
    wrong = "not-the-token-4242"
    with whip_server(token=TOKEN) as server:
        spec = PushSpec(
            source=room.media_url(numbered),
            target=whip_url(server.url("refused"), wrong),
            secrets=(wrong,),
            timeouts=Timeouts(room_open=3.0),
        )
        with Control() as control, pytest.raises(RoomUnreachable) as refused:
            push(spec, control)
    assert "401 Unauthorized" in refused.value.message
    assert wrong not in refused.value.message
    assert server.refused == 1


def test_a_whip_room_url_carries_its_endpoint_and_any_token_as_it_is() -> None:
    endpoint = "https://sfu.example.com/whip/room1?SessionID=7"
    for token in ("tok", "abc+def/ghi==", "a&b=c", "x%41y#z"):
        assert endpoint_of(whip_url(endpoint, token)) == (endpoint, token)
    assert endpoint_of(whip_url("http://h/w")) == ("http://h/w", None)


def test_a_source_without_pictures_fails_a_whip_push_at_once(room: LocalRoom, media: Path) -> None:
    make_clip(media / "whip_sound_only.mp4", seconds=3, video=False)
    with whip_server() as server:
        source = room.media_url("whip_sound_only.mp4")
        spec = PushSpec(source=source, target=whip_url(server.url("s")))
        with Control() as control, pytest.raises(SourceHasNoMedia, match="no video"):
            push(spec, control)
    assert not server.sessions


def test_pictures_without_sound_go_out_as_they_come(room: LocalRoom, media: Path) -> None:
    make_clip(media / "whip_silent.mp4", seconds=4, size="320x240", fps=25, gop=25,
              h264_profile="baseline", audio_rate=None)  # fmt: skip
    with whip_server() as server:
        spec = PushSpec(source=room.media_url("whip_silent.mp4"), target=whip_url(server.url("v")))
        started = time.monotonic()
        with Control() as control:
            push(spec, control)
        session = server.session("v")
        assert session.ended.wait(10)
    # Not held back for sound that never comes (FFmpeg's interleaving would wait 10 s).
    assert session.arrivals and session.arrivals[0] - started < 2.0
    assert len(session.arrivals) >= 4 * 25 - UNDECODED_AT_END
    assert session.sound_frames == 0


def test_a_switch_over_whip_is_seamless_on_one_session(room: LocalRoom, media: Path) -> None:
    make_numbered_clip(media / "whip_clip1.mp4", seconds=6, clip_id=1, tone=440)
    make_numbered_clip(media / "whip_clip3.mp4", seconds=2, clip_id=3, tone=880)
    with whip_server() as server:
        spec = PushSpec(
            source=room.media_url("whip_clip1.mp4"),
            target=whip_url(server.url("switch")),
            switchable=True,
        )
        with Control() as control:
            switched_at: list[float] = []

            def switch() -> None:
                time.sleep(2.0)
                switched_at.append(time.monotonic())
                control.send(Switch(VideoSrc=room.media_url("whip_clip3.mp4")))

            threading.Thread(target=switch, daemon=True).start()
            result = push(spec, control)
        session = server.session("switch")
        assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert len(server.sessions) == 1  # the viewer never saw the publisher leave
    new = session.clips.index(3)
    assert set(session.clips[:new]) == {1} and set(session.clips[new:]) == {3}
    assert session.numbers[new] <= 1  # the new clip from its start
    assert session.arrivals[new] - switched_at[0] < 0.5 + 0.1  # + the viewer's own delay
    gaps = [b - a for a, b in zip(session.times, session.times[1:], strict=False)]
    assert all(gap > 0 for gap in gaps), "picture times went back"
    assert max(gaps) <= 2 / FPS + 0.005, f"a picture gap of {max(gaps) * 1000:.0f} ms"


def test_a_session_the_endpoint_drops_is_replaced_by_a_new_one_at_a_keyframe(
    room: LocalRoom, numbered: str
) -> None:
    with whip_server() as server:
        spec = PushSpec(source=room.media_url(numbered), target=whip_url(server.url("drop")))
        with Control() as control:
            dropping = threading.Timer(2.5, server.drop, args=("drop",))
            dropping.start()
            result = push(spec, control)
            dropping.join()
        assert len(server.sessions) == 2
        first, second = server.sessions
        assert second.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert result.progress.room_reconnects == 1
    assert second.numbers[0] % FPS == 0  # a keyframe: one a second
    # To the end. Not every picture in order: under the whole suite's load aiortc's viewer
    # has shown pictures of the new session again, and older ones than its publisher was
    # ever given (what the push hands the publisher never goes back: checked by hand).
    assert max(second.numbers) == SECONDS * FPS - 1 - UNDECODED_AT_END
    # The viewer's gap: from the last picture of the dropped session to the new one's first.
    assert second.arrivals[0] - first.arrivals[-1] < 2.5


def test_a_fan_out_publishes_each_whip_room_on_its_own_session_and_a_refused_one_fails_alone(
    room: LocalRoom, room_name: str, numbered: str
) -> None:
    wrong = "not-the-token-4242"
    viewer = FrameNumberViewer(room.play_url(room_name), idle=2.0)
    viewer.start()
    time.sleep(0.3)  # the viewer is in the room before the push starts
    with whip_server(token=TOKEN) as server:
        targets = (
            Target("a", whip_url(server.url("a"), TOKEN)),
            Target("b", whip_url(server.url("b"), TOKEN)),
            Target("refused", whip_url(server.url("c"), wrong)),
            Target("rtmp", f"{room.rtmp_base}/{room_name}?sdkappid=1&userid=u&usersig=s"),
        )
        spec = PushSpec(
            source=room.media_url(numbered),
            target=targets[0].url,
            targets=targets,
            secrets=(TOKEN, wrong),
        )
        events: list[tuple[str, dict[str, str]]] = []
        with Control() as control:
            result = push(spec, control, on_event=lambda name, f: events.append((name, f)))
        sessions = [server.session(stream) for stream in ("a", "b")]
        for session in sessions:
            assert session.ended.wait(10)
    viewer.join(15)
    assert result.outcome.value == "completed", result.reason
    for session in sessions:
        assert session.numbers == list(range(SECONDS * FPS - UNDECODED_AT_END))
        assert session.deleted
    assert viewer.numbers == list(range(SECONDS * FPS))  # RTMP beside WHIP, from one read
    rooms = result.progress.targets
    assert rooms is not None
    assert rooms["refused"]["State"] == "failed"
    assert "401 Unauthorized" in rooms["refused"]["Error"] and wrong not in str(rooms)
    assert server.refused == 1  # refused once: not retried for ever
    assert [n for n, f in events if f["TargetId"] == "refused"][-1] == "target-failed"


def test_sound_and_pictures_stay_in_sync_at_a_webrtc_player(room: LocalRoom, media: Path) -> None:
    clip = corpus.build(media, ["sync_remux"])["sync_remux"]
    with whip_server() as server:
        spec = PushSpec(source=room.media_url(clip.name), target=whip_url(server.url("sync")))
        with Control() as control:
            result = push(spec, control)
        session = server.session("sync")
        assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert_in_sync(session)


def test_a_fan_outs_whip_rooms_get_one_opus_encoding_in_sync_with_the_pictures(
    room: LocalRoom, media: Path
) -> None:
    clip = corpus.build(media, ["sync_remux"])["sync_remux"]
    with whip_server() as server:
        targets = tuple(Target(n, whip_url(server.url(f"sync_{n}"))) for n in ("a", "b"))
        spec = PushSpec(source=room.media_url(clip.name), target=targets[0].url, targets=targets)
        with Control() as control:
            result = push(spec, control)
        sessions = [server.session(f"sync_{n}") for n in ("a", "b")]
        for session in sessions:
            assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    for session in sessions:
        assert_in_sync(session)


def assert_in_sync(session: Session) -> None:
    """Each flash and its beep within :data:`SYNC_TOLERANCE` at ``session``'s player, which
    lines them up as a WebRTC player does: each stream's RTP times on the sender's wall
    clock, through its RTCP sender reports."""
    video, sound = session.reports["video"], session.reports["audio"]
    pictures = [
        corpus.Picture(video.sender_time(pts), 0, 0, luma, NO_THUMB) for pts, luma in session.lumas
    ]
    sounds = [
        corpus.Sound(sound.sender_time(pts), rate, 1, samples)
        for pts, rate, samples in session.sounds
    ]
    offsets = corpus.sync_offsets(corpus.flash_times(pictures), corpus.beep_onsets(sounds))
    shown = [round(o * 1000) for o in offsets]
    assert len(offsets) >= 5, shown
    assert all(abs(o) <= SYNC_TOLERANCE for o in offsets), f"beep - flash (ms): {shown}"


def test_a_fan_out_room_whose_sessions_never_open_fails_after_its_reconnect_time(
    room: LocalRoom, media: Path
) -> None:
    make_numbered_clip(media / "whip_numbered_10.mp4", seconds=10, fps=FPS, gop=FPS)
    with whip_server() as server:
        server.unreachable.add("hole")
        a, hole = whip_url(server.url("a")), whip_url(server.url("hole"))
        spec = PushSpec(
            source=room.media_url("whip_numbered_10.mp4"),
            target=a,
            targets=(Target("a", a), Target("hole", hole)),
            timeouts=Timeouts(room_open=1.0, room_reconnect=1.5),
        )
        failed_at: list[float] = []

        def note(name: str, fields: dict[str, str]) -> None:
            if name == "target-failed" and fields["TargetId"] == "hole":
                failed_at.append(time.monotonic())

        started = time.monotonic()
        with Control() as control:
            result = push(spec, control, on_event=note)
        session = server.session("a")
        assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert session.numbers == list(range(10 * FPS - UNDECODED_AT_END))
    rooms = result.progress.targets
    assert rooms is not None and rooms["hole"]["State"] == "failed", rooms
    # The first try's handshake (room_open), then tries within room_reconnect, each a new
    # session that never opens; then the room is given up, long before the push ends.
    assert failed_at and failed_at[0] - started < 1.0 + 1.5 + 3.0
    assert 2 <= server.unreachable_offers <= 8, server.unreachable_offers


def test_a_fan_out_whip_room_the_endpoint_drops_comes_back_on_a_new_session_to_the_end(
    room: LocalRoom, numbered: str
) -> None:
    with whip_server() as server:
        a, b = whip_url(server.url("a")), whip_url(server.url("b"))
        spec = PushSpec(
            source=room.media_url(numbered), target=a, targets=(Target("a", a), Target("b", b))
        )
        with Control() as control:
            dropping = threading.Timer(2.5, server.drop, args=("b",))
            dropping.start()
            result = push(spec, control)
            dropping.join()
        sessions = [s for s in server.sessions if s.stream == "b"]
        for session in sessions:
            assert session.ended.wait(10)
    assert result.outcome.value == "completed", result.reason
    assert len(sessions) == 2
    rooms = result.progress.targets
    assert rooms is not None and rooms["b"]["Reconnects"] == 1, rooms
    # The new session's publisher lives on after the thread that opened it has ended.
    assert max(sessions[1].numbers) == SECONDS * FPS - 1 - UNDECODED_AT_END


def test_what_a_new_session_replays_starts_at_the_last_keyframe_sent_and_ends_with_the_last_tag(
    media: Path,
) -> None:
    flv = flv_of(make_numbered_clip(media / "whip_gop.mp4", seconds=3, fps=FPS, gop=FPS))
    kept = SinceKeyframe()
    cut = len(flv) * 2 // 3
    for start in range(0, cut, 1000):  # in pieces that split tags, as the muxer writes
        kept.feed(flv[start : min(start + 1000, cut)])
    replay = kept.replay()
    sent = flv[FLV_HEADER:cut]
    at = sent.rfind(replay)
    first = 11 + int.from_bytes(replay[1:4], "big") + 4  # the first tag's length
    assert replay and at > 0
    assert keyframe_at(replay) == 0  # a decoder can start from its first tag...
    assert keyframe_at(replay[first:]) is None  # ...the last keyframe that went out
    assert at + len(replay) == whole_tags(sent)  # and every whole tag since
