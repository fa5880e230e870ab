"""EnableProgress: the position reaches viewers inside the video, read back from what the
room received as a TRTC SDK reads it (SEI payload type 242), remuxed and re-encoded alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import pytest

from devstack.room import LocalRoom
from pipeline import Clip
from pipeline.sei import read_sei

from ..filerooms import push_to_files, spec_for
from ..media import make_numbered_clip


def progress_seen(publish: Path) -> list[tuple[float, dict[str, Any]]]:
    """(picture time, payload) of every progress message in a publish, in order."""
    seen = []
    with av.open(str(publish)) as container:
        for packet in container.demux(video=0):
            if packet.size and packet.pts is not None:
                for payload in read_sei(bytes(packet)):
                    seen.append((float(packet.pts * packet.time_base), json.loads(payload)))
    return seen


@pytest.mark.parametrize("clip", ["short_clip", "bframes_clip"], ids=["remuxed", "re-encoded"])
def test_each_second_of_a_push_carries_its_position(
    tmp_path: Path, room: LocalRoom, clip: str, request: pytest.FixtureRequest
) -> None:
    url = room.media_url(request.getfixturevalue(clip))
    sent = push_to_files(tmp_path, spec_for(url, progress_sei=True), decode=False)
    assert sent.completed, sent.error
    seen = progress_seen(sent.publish.path)
    times = [t for t, _ in seen]
    assert times[0] == pytest.approx(0.0, abs=0.05)
    assert all(0.99 <= b - a <= 1.1 for a, b in zip(times, times[1:], strict=False)), times
    assert len(seen) == pytest.approx(sent.publish.media_seconds(), abs=1.01)
    positions = [p["Position"] for _, p in seen]
    assert positions == sorted(positions) and positions[-1] >= len(seen) - 2.5
    assert all(p["Duration"] == pytest.approx(sent.final.duration, abs=0.05) for _, p in seen)


def test_without_enableprogress_no_picture_carries_it(
    tmp_path: Path, room: LocalRoom, short_clip: str
) -> None:
    sent = push_to_files(tmp_path, spec_for(room.media_url(short_clip)), decode=False)
    assert progress_seen(sent.publish.path) == []


def test_a_playlist_tells_each_clips_id_and_its_own_position(
    tmp_path: Path, room: LocalRoom, media: Path
) -> None:
    make_numbered_clip(media / "sei1.mp4", seconds=3, clip_id=1)
    make_numbered_clip(media / "sei2.mp4", seconds=3, clip_id=2)
    spec = spec_for(
        room.media_url("sei1.mp4"),
        switchable=True,
        clip_id="explain",
        playlist=(Clip(room.media_url("sei2.mp4"), "question"),),
        progress_sei=True,
    )
    sent = push_to_files(tmp_path, spec, decode=False)
    assert sent.completed, sent.error
    told = [(p.get("ClipId"), p["Position"]) for _, p in progress_seen(sent.publish.path)]
    ids = [clip_id for clip_id, _ in told]
    assert ids == sorted(ids) and set(ids) == {"explain", "question"}, told
    second = [position for clip_id, position in told if clip_id == "question"]
    assert second[0] <= 1.0 and second == sorted(second), "its position starts again"
