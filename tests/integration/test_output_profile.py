"""A push's own Output profile: ceilings on what reaches the room. A source within them is
remuxed as it is; a stream above any of them is re-encoded to fit, and says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest

from devstack.room import LocalRoom
from jobs.settings import Settings
from worker.runner import output_profile

from ..filerooms import Sent, push_to_files, spec_for
from ..media import make_clip

SETTINGS = Settings(redis_url="redis://unused:1/0")


@pytest.fixture(scope="module")
def source(media: Path, room: LocalRoom) -> str:
    """3 s of 640x480 at 30 fps, keyframes 2 s apart, about 2.5 Mbit/s: remuxable as it is."""
    make_clip(media / "output640.mp4", seconds=3, size="640x480", fps=30, gop=60)
    return room.media_url("output640.mp4")


def push_with(tmp_path: Path, source: str, **asked: Any) -> Sent:
    spec = spec_for(source, profile=output_profile(SETTINGS, asked))
    sent = push_to_files(tmp_path, spec)
    assert sent.completed, sent.error
    return sent


def video_decision(sent: Sent) -> dict[str, str]:
    return next(s for s in sent.final.as_dict()["Streams"] if s["Type"] == "video")


def test_a_source_within_the_output_is_remuxed(tmp_path: Path, source: str) -> None:
    sent = push_with(tmp_path, source, Width=1280, Height=720, Fps=30, GopSeconds=2)
    assert video_decision(sent)["Action"] == "remux"


def test_a_larger_picture_is_scaled_down_to_fit(tmp_path: Path, source: str) -> None:
    sent = push_with(tmp_path, source, Width=320, Height=240)
    decision = video_decision(sent)
    assert decision["Action"] == "transcode" and "320x240" in decision["Reason"], decision
    assert {(f.width, f.height) for f in sent.publish.frames} == {(320, 240)}


def test_a_faster_source_drops_to_the_output_rate(tmp_path: Path, source: str) -> None:
    sent = push_with(tmp_path, source, Fps=15)
    assert video_decision(sent)["Action"] == "transcode"
    assert len(sent.publish.frames) == pytest.approx(3 * 15, abs=2)


def test_a_video_bitrate_well_above_the_output_is_re_encoded_to_it(
    tmp_path: Path, source: str
) -> None:
    sent = push_with(tmp_path, source, VideoBitrate=300_000)
    decision = video_decision(sent)
    assert decision["Action"] == "transcode" and "kbit/s" in decision["Reason"], decision
    with av.open(str(sent.publish.path)) as room:
        sizes = sum(p.size for p in room.demux(video=0) if p.size)
    assert sizes * 8 / 3 < 300_000 * 1.5, "re-encoded at about the asked rate"


def test_keyframes_further_apart_than_the_output_are_re_encoded_closer(
    tmp_path: Path, source: str
) -> None:
    sent = push_with(tmp_path, source, GopSeconds=1)
    decision = video_decision(sent)
    assert decision["Action"] == "transcode" and "keyframes" in decision["Reason"], decision
    keys = [pts for kind, pts, _, key in sent.publish.packets if kind == "video" and key]
    assert max(b - a for a, b in zip(keys, keys[1:], strict=False)) <= 1.05


def test_the_output_never_lifts_the_service_s_own_limits() -> None:
    strict = Settings(redis_url="redis://unused:1/0", max_width=640, max_height=360)
    profile = output_profile(strict, {"Width": 1920, "Height": 1080, "GopSeconds": 4})
    assert (profile.max_width, profile.max_height) == (640, 360)
    assert profile.max_remux_gop_seconds == min(4, strict.max_remux_gop_seconds)
