"""Real-world media in, a clean stream the room accepts out.

Each input of the corpus (tests/corpus.py), served over HTTP by the local room's nginx, is
pushed by the real pipeline into a file room on a virtual clock (tests/filerooms.py), and
what it wrote is decoded as a viewer decodes it. The first test that needs them pushes
every input the selected tests use, one after another (each takes only its media work);
each test then checks one input's outcome. The same path through the API, a worker and the
room is checked end to end by tests/e2e/test_push_e2e.py.

Every push must deliver H.264 without B-frames and AAC (or only the track the source has),
the source's duration (±0.5 s) with timestamps that never go back, upright even-sized
pictures, and a progress naming each stream's decision and its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.room import LocalRoom

from .. import corpus
from ..corpus import Clip, DecodingViewer, Seen
from ..filerooms import Sent, push_to_files, spec_for

TOLERANCE = 0.5  # seconds of media
SYNC_TOLERANCE = 0.040


def uses(*keys: str) -> Callable[[Any], Any]:
    """Name the corpus inputs a test looks at (the batch pushes only what is selected)."""

    def mark(fn: Any) -> Any:
        fn.corpus_keys = keys
        return fn

    return mark


@dataclass
class Pushed:
    """One corpus input after its push: how it ended and what the room got, decoded."""

    key: str
    clip: Clip
    sent: Sent
    seen: Seen

    @property
    def status(self) -> dict[str, Any]:
        """The push as the status API would show it."""
        sent = self.sent
        state = "failed" if sent.error else "succeeded" if sent.completed else "stopped"
        return {
            "State": state,
            "Error": sent.error.as_dict() if sent.error else None,
            "Reason": sent.error.message if sent.error else sent.result and sent.result.reason,
            "Progress": sent.final.as_dict(),
        }

    @property
    def decisions(self) -> dict[str, dict[str, str]]:
        return {s["Type"]: s for s in self.status["Progress"]["Streams"]}


@pytest.fixture(scope="module")
def wanted(request: pytest.FixtureRequest) -> list[str]:
    """The corpus inputs the selected tests of this module use."""
    keys: list[str] = []
    for item in request.session.items:
        fn = getattr(item, "function", None)
        if getattr(item, "module", None) is request.module and fn is not None:
            keys += getattr(fn, "corpus_keys", ())
    return list(dict.fromkeys(keys)) or list(corpus.BUILDERS)


@pytest.fixture(scope="module")
def pushed(
    room: LocalRoom, media: Path, wanted: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Pushed]:
    """Build the corpus, push every input into its own file room, decode what each wrote."""
    clips = corpus.build(media, wanted)
    rooms = tmp_path_factory.mktemp("media-compat")
    out: dict[str, Pushed] = {}
    for key in wanted:
        sent = push_to_files(rooms / key, spec_for(room.media_url(clips[key].name)), decode=False)
        viewer = DecodingViewer(str(sent.publishes[0].path)) if sent.publishes else None
        if viewer is not None:
            viewer.run()  # reads the file to its end, here
        out[key] = Pushed(key, clips[key], sent, viewer.seen if viewer else Seen())
    return out


# --- shared checks -------------------------------------------------------------------


def assert_clean_push(p: Pushed, actions: dict[str, str] | None = None) -> None:
    """Succeeded; the viewer got H.264 (no B-frames) + AAC, the right duration, even sizes,
    monotonic timestamps; the status names each stream's decision and reason."""
    status, cap = p.status, p.seen.capture
    assert status["State"] == "succeeded", (status["State"], status["Error"], status["Reason"])
    assert cap.error is None, cap.error
    tracks = {k for k, present in (("video", p.clip.video), ("audio", p.clip.audio)) if present}
    assert cap.codecs == {kind: {"video": "h264", "audio": "aac"}[kind] for kind in tracks}
    for kind in tracks:
        received = cap.media_seconds(kind)
        assert abs(received - p.clip.seconds) <= TOLERANCE, (
            f"{kind}: viewer got {received:.2f} s of a {p.clip.seconds:g} s source"
        )
        dts = [pkt.dts for pkt in cap.of(kind)]
        assert dts == sorted(dts), f"{kind} timestamps go backwards at the viewer"
    if "video" in tracks:
        assert not cap.has_b_frames(), "the viewer received B-frames"
        sizes = {(pic.width, pic.height) for pic in p.seen.pictures}
        assert sizes, "the viewer decoded no picture"
        assert all(w % 2 == 0 and h % 2 == 0 for w, h in sizes), sizes
    else:
        assert not p.seen.pictures
    if "audio" in tracks:
        assert p.seen.sounds, "the viewer decoded no sound"
        assert p.seen.channels is not None and p.seen.channels <= 2
    assert_decisions(p, tracks, actions)


def assert_decisions(p: Pushed, tracks: set[str], actions: dict[str, str] | None) -> None:
    """Progress.Streams has one decision per pushed track, each with a reason."""
    decisions = p.decisions
    assert set(decisions) == tracks, p.status.get("Progress")
    for d in decisions.values():
        assert d["Action"] in {"remux", "transcode"}, d
        assert isinstance(d["Reason"], str) and d["Reason"].strip(), d
    if actions is not None:
        assert {k: d["Action"] for k, d in decisions.items()} == actions, decisions


def reason(p: Pushed, kind: str) -> str:
    return p.decisions[kind]["Reason"].lower()


def assert_failed_fast(p: Pushed, code: str) -> None:
    """Failed with ``code`` within a few seconds, before the room was ever connected to."""
    status = p.status
    assert status["State"] == "failed", (status["State"], status["Error"], status["Reason"])
    assert status["Error"]["Code"] == code, status["Error"]
    assert status["Error"]["Message"], status["Error"]
    assert p.sent.took < 3.0, f"took {p.sent.took:.1f} s to fail"
    assert not p.sent.publishes, "the room was connected to"


# --- remux what the room accepts -----------------------------------------------------


@uses("h264_plain")
def test_h264_without_b_frames_and_aac_are_remuxed_as_they_are(pushed):
    assert_clean_push(pushed["h264_plain"], {"video": "remux", "audio": "remux"})


@uses("aac_44k_mono")
def test_aac_44k_mono_is_remuxed_and_arrives_at_44k_mono(pushed):
    p = pushed["aac_44k_mono"]
    assert_clean_push(p, {"video": "remux", "audio": "remux"})
    assert {s.rate for s in p.seen.sounds} == {44_100}
    assert p.seen.channels == 1


@uses("fps60")
def test_60_fps_is_kept_at_60_fps_by_default(pushed):
    p = pushed["fps60"]
    assert_clean_push(p, {"video": "remux", "audio": "remux"})
    video = p.seen.capture.of("video")
    fps = (len(video) - 1) / p.seen.capture.media_seconds("video")
    assert 57 <= fps <= 63, f"viewer sees {fps:.1f} fps"


@uses("moov_at_end")
def test_mp4_with_moov_at_the_end_is_read_over_http_with_range_requests(pushed):
    assert_clean_push(pushed["moov_at_end"], {"video": "remux", "audio": "remux"})


@uses("hls_vod")
def test_hls_vod_playlist_is_pushed_whole(pushed):
    assert_clean_push(pushed["hls_vod"], {"video": "remux", "audio": "remux"})


@uses("video_only")
def test_video_without_audio_arrives_as_video_only(pushed):
    assert_clean_push(pushed["video_only"], {"video": "remux"})


@uses("audio_only")
def test_audio_without_video_arrives_as_audio_only(pushed):
    assert_clean_push(pushed["audio_only"], {"audio": "remux"})


@uses("short_picture")
def test_a_file_whose_picture_ends_before_its_sound_plays_the_sound_to_the_end(pushed):
    p = pushed["short_picture"]
    status, cap = p.status, p.seen.capture
    assert status["State"] == "succeeded", (status["Error"], status["Reason"])
    # The push sent the sound to its end. This room's viewers often see no audio once the
    # picture has ended (the same with ffmpeg as the publisher): the viewer checks the 2 s
    # of both, and more sound is fine.
    assert abs(status["Progress"]["OutputTime"] - 5.0) <= TOLERANCE
    assert abs(cap.media_seconds("video") - 2.0) <= TOLERANCE
    assert cap.media_seconds("audio") >= 2.0 - TOLERANCE


# --- re-encode exactly what the room would reject ------------------------------------


@uses("h264_bframes")
def test_h264_with_b_frames_is_reencoded_without_b_frames_and_its_aac_remuxed(pushed):
    p = pushed["h264_bframes"]
    assert_clean_push(p, {"video": "transcode", "audio": "remux"})
    assert "b-frame" in reason(p, "video")


@uses("hevc")
def test_hevc_is_reencoded_to_h264(pushed):
    p = pushed["hevc"]
    assert_clean_push(p, {"video": "transcode", "audio": "remux"})
    assert "hevc" in reason(p, "video")


@uses("vp9_opus")
def test_vp9_and_opus_in_webm_are_both_reencoded(pushed):
    p = pushed["vp9_opus"]
    assert_clean_push(p, {"video": "transcode", "audio": "transcode"})
    assert "vp9" in reason(p, "video")
    assert "opus" in reason(p, "audio")


@uses("mpeg4_mp3")
def test_mpeg4_part2_and_mp3_in_avi_are_both_reencoded(pushed):
    p = pushed["mpeg4_mp3"]
    assert_clean_push(p, {"video": "transcode", "audio": "transcode"})
    assert "mpeg4" in reason(p, "video")
    assert "mp3" in reason(p, "audio")


@uses("ts_bframes")
def test_mpeg_ts_with_b_frames_is_reencoded_from_its_first_frame(pushed):
    p = pushed["ts_bframes"]
    assert_clean_push(p, {"video": "transcode", "audio": "remux"})
    first = min(pkt.pts for pkt in p.seen.capture.of("video"))
    assert first < 0.2, f"the viewer's video starts at {first:.2f} s"


@uses("aac_5_1")
def test_5_1_aac_is_downmixed_to_at_most_two_channels(pushed):
    p = pushed["aac_5_1"]
    assert_clean_push(p, {"video": "remux", "audio": "transcode"})
    assert "channel" in reason(p, "audio")


@uses("mp3_cover")
def test_mp3_with_cover_art_is_pushed_as_audio_only(pushed):
    assert_clean_push(pushed["mp3_cover"], {"audio": "transcode"})


@uses("odd_size")
def test_odd_frame_size_321x241_arrives_at_an_even_size(pushed):
    p = pushed["odd_size"]
    assert_clean_push(p, {"video": "transcode", "audio": "remux"})
    for pic in p.seen.pictures:
        assert abs(pic.width - 321) <= 2 and abs(pic.height - 241) <= 2, (pic.width, pic.height)


@uses("rotated")
def test_rotation_metadata_is_applied_so_the_picture_arrives_upright(pushed, media):
    p = pushed["rotated"]
    assert_clean_push(p, {"video": "transcode", "audio": "remux"})
    assert "rotat" in reason(p, "video")
    sizes = {(pic.width, pic.height) for pic in p.seen.pictures}
    assert all(w < h for w, h in sizes), f"a 90° rotated 320x240 arrives as {sizes}, not portrait"
    # Upright as players show it: the white box sits where ffmpeg's autorotate puts it.
    expected = corpus.bright_centroid(corpus.upright_reference(media / p.clip.name))
    got = corpus.bright_centroid(p.seen.pictures[len(p.seen.pictures) // 2].thumb)
    assert abs(got[0] - expected[0]) < 0.15 and abs(got[1] - expected[1]) < 0.15, (got, expected)


@uses("vfr")
def test_variable_frame_rate_keeps_its_duration_and_monotonic_timestamps(pushed):
    p = pushed["vfr"]
    assert_clean_push(p)
    pts = [pkt.pts for pkt in p.seen.capture.of("video")]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), "video pts not increasing"
    gaps = [b - a for a, b in zip(pts, pts[1:], strict=False)]
    assert max(gaps) <= 0.1, f"a {max(gaps):.3f} s hole in the video"


# --- what must not be pushed, and what must not stop a push --------------------------


@uses("empty")
def test_empty_file_fails_fast_as_not_media_before_the_room_sees_anything(pushed):
    assert_failed_fast(pushed["empty"], "SourceNotMedia")


@uses("text")
def test_text_file_fails_fast_as_not_media_before_the_room_sees_anything(pushed):
    assert_failed_fast(pushed["text"], "SourceNotMedia")


@uses("subtitles_only")
def test_file_with_only_subtitles_fails_fast_as_having_no_media(pushed):
    p = pushed["subtitles_only"]
    assert_failed_fast(p, "SourceHasNoMedia")
    assert "subtitle" in p.status["Error"]["Message"]


@uses("truncated")
def test_file_truncated_in_the_middle_pushes_what_it_has_then_fails_as_ended_early(pushed):
    p = pushed["truncated"]
    status, cap = p.status, p.seen.capture
    assert status["State"] == "failed", (status["State"], status["Error"], status["Reason"])
    assert status["Error"]["Code"] == "SourceEndedEarly", status["Error"]
    message = status["Error"]["Message"].lower()
    assert "ended" in message and ("early" in message or "announced" in message), message
    assert cap.codecs == {"video": "h264", "audio": "aac"}
    received = cap.media_seconds("video")
    assert 2.0 <= received <= p.clip.seconds + TOLERANCE, f"viewer got {received:.2f} s"


@uses("corrupt_middle")
def test_corrupt_bytes_in_the_middle_do_not_end_the_push(pushed):
    assert_clean_push(pushed["corrupt_middle"], {"video": "transcode", "audio": "remux"})


# --- A/V sync: each flash and its beep within 40 ms at the viewer ---------------------


def assert_in_sync(p: Pushed, pairs: int) -> None:
    flashes = corpus.flash_times(p.seen.pictures)
    beeps = corpus.beep_onsets(p.seen.sounds)
    offsets = corpus.sync_offsets(flashes, beeps)
    shown = [round(o * 1000) for o in offsets]
    assert len(offsets) >= pairs, f"flashes {flashes}, beeps {beeps}"
    assert all(abs(o) <= SYNC_TOLERANCE for o in offsets), f"beep - flash (ms): {shown}"


@uses("sync_remux")
def test_av_sync_within_40ms_when_remuxed(pushed):
    p = pushed["sync_remux"]
    assert_clean_push(p, {"video": "remux", "audio": "remux"})
    assert_in_sync(p, pairs=5)


@uses("sync_transcode")
def test_av_sync_within_40ms_when_both_are_reencoded(pushed):
    p = pushed["sync_transcode"]
    assert_clean_push(p, {"video": "transcode", "audio": "transcode"})
    assert_in_sync(p, pairs=5)


@uses("sync_audio_late")
def test_av_sync_within_40ms_when_the_audio_starts_300ms_after_the_video(pushed):
    p = pushed["sync_audio_late"]
    assert_clean_push(p)
    assert_in_sync(p, pairs=4)
