"""Where a push started from a saved position begins: the next frame when re-encoded, the
keyframe at or before it when remuxed; and the saved position is where the stop left off.

The pipeline runs into file rooms on a virtual clock (tests/filerooms.py): a push is
stopped at a chosen second, its final position is what the worker saves as the bookmark,
and a second push starts from it. tests/e2e/test_resume.py takes the bookmark through Redis
and a worker, end to end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.room import LocalRoom

from ..filerooms import push_to_files, spec_for
from ..media import make_numbered_clip

FPS = 25


@pytest.fixture(scope="module")
def clips(media: Path, room: LocalRoom) -> dict[str, str]:
    """8 s numbered clips: remuxed (1 s GOP), re-encoded (B-frames, 2 s GOP)."""
    make_numbered_clip(media / "resume_remux.mp4", seconds=8, gop=FPS)
    make_numbered_clip(media / "resume_transcode.mp4", seconds=8, gop=2 * FPS, bframes=2)
    return {kind: room.media_url(f"resume_{kind}.mp4") for kind in ("remux", "transcode")}


def stopped_then_resumed(tmp_path: Path, source: str, stop_at: float) -> tuple[int, float, int]:
    """The last frame of a push stopped at ``stop_at``, its final position, and the first
    frame of a push started from that position."""
    first = push_to_files(tmp_path / "first", spec_for(source), stop_at=stop_at)
    assert first.result is not None and not first.completed
    position = first.result.progress.position
    second = push_to_files(tmp_path / "second", spec_for(source, start_position=position))
    assert second.completed, second.error
    assert second.publish.frames[-1].number == 8 * FPS - 1  # then to the end
    return first.publish.frames[-1].number, position, second.publish.frames[0].number


@pytest.mark.parametrize("stop_at", [2.0, 3.3, 5.9])
def test_a_reencoded_push_resumes_at_the_exact_next_frame(
    tmp_path: Path, clips: dict[str, str], stop_at: float
) -> None:
    last, position, first = stopped_then_resumed(tmp_path, clips["transcode"], stop_at)
    assert round(position * FPS) == last + 1  # the position is the end of the last frame
    assert first == last + 1  # no frame twice, none missing


@pytest.mark.parametrize("stop_at", [2.0, 3.3, 5.9])
def test_a_remuxed_push_resumes_on_the_keyframe_at_or_before_its_position(
    tmp_path: Path, clips: dict[str, str], stop_at: float
) -> None:
    last, position, first = stopped_then_resumed(tmp_path, clips["remux"], stop_at)
    assert round(position * FPS) == last + 1
    # Copied video can only start on a keyframe (1 s GOP): at most a second again.
    assert first % FPS == 0 and last + 1 - FPS < first <= last + 1, (first, last)
