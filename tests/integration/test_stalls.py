"""A source that stalls in the middle of a file: the push fails saying so, or, when it is
stopped meanwhile, leaves the room at once and ends stopped.

The pipeline is driven directly here, with a stop asked for as the worker's control
listener asks for it (``request_stop``, then ``cut_off`` a moment later if the push has not
ended: worker/control.py).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devstack.room import LocalRoom
from jobs.errors import SourceUnreachable
from pipeline import Control, Outcome, PushResult, PushSpec, Timeouts, push
from pipeline.clock import VirtualClock
from pipeline.fileroom import RoomFiles

from ..media import make_clip
from ..sources import stalling_source

#: How long a stalled read waits before it fails. FFmpeg then reconnects three times, after
#: 0, 1 and 3 s (``reconnect_delay_max`` 4 s), before the read fails for good.
READ_TIMEOUT = 0.5
#: The clip's length; a file push reads its first 5 s to decide how to send it.
CLIP_SECONDS = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """8 s of small video with a keyframe every second (remuxed) and sound."""
    path = tmp_path_factory.mktemp("stalls") / "clip.mp4"
    return make_clip(path, seconds=CLIP_SECONDS, size="320x240", gop=30).read_bytes()


def spec_for(source: str, room: LocalRoom, room_name: str, **fields: object) -> PushSpec:
    timeouts = Timeouts(source_read=READ_TIMEOUT)
    target = f"{room.rtmp_base}/{room_name}?sdkappid=1&userid=u&usersig=s"
    return PushSpec(source=source, target=target, timeouts=timeouts, **fields)  # type: ignore[arg-type]


def wait_publishing(room: LocalRoom, room_name: str) -> None:
    deadline = time.monotonic() + 10
    while not room.publishers(room_name):
        assert time.monotonic() < deadline, "the push never published"
        time.sleep(0.02)


def test_a_switchable_push_whose_clip_stalls_fails_saying_the_read_failed(
    clip: bytes, room: LocalRoom, room_name: str
) -> None:
    with (
        stalling_source(clip, 0.3) as url,
        Control() as control,
        pytest.raises(SourceUnreachable, match="reading the source failed"),
    ):
        push(spec_for(url, room, room_name, switchable=True), control)


def test_a_push_stopped_while_its_source_stalls_leaves_the_room_at_once_and_ends_stopped(
    clip: bytes, tmp_path: Path
) -> None:
    results: list[PushResult] = []
    room = RoomFiles(tmp_path / "room")
    # Past the 5 s read to decide how to send it. On a virtual clock the push sends what it
    # has at once, then waits in the read of the stalled source.
    with stalling_source(clip, 0.85) as url, Control() as control:
        spec = PushSpec(
            source=url,
            target="rtmp://file.room/push/stalls",
            timeouts=Timeouts(source_read=READ_TIMEOUT),
            shared_sender=False,
        )
        pushing = threading.Thread(
            target=lambda: results.append(
                push(spec, control, connect=room.connect, clock=VirtualClock())
            ),
            daemon=True,
        )
        pushing.start()
        wait_held_up(room)
        asked = time.monotonic()
        control.request_stop()
        time.sleep(0.3)  # what the control listener gives the push to end by itself
        held_up = pushing.is_alive()
        if held_up:
            control.cut_off()
        cut = time.monotonic() - asked
    pushing.join(30)
    assert held_up, "the push was not held up in the read: this test checks nothing"
    assert room.rooms[0].cut_off and cut < 1.0
    assert results and results[0].outcome is Outcome.STOPPED


def wait_held_up(room: RoomFiles) -> None:
    """Until the push has published and its room file has stopped growing for 0.5 s."""
    deadline = time.monotonic() + 10
    size = -1
    while not room.files or room.files[0].stat().st_size != size:
        assert time.monotonic() < deadline, "the push never published, or never stalled"
        size = room.files[0].stat().st_size if room.files else -1
        time.sleep(0.5)
