"""A fan-out push: one read of the source published to several rooms of a real nginx-rtmp,
each watched by a viewer that decodes the frame numbers it receives.

Rooms are added and removed while the push runs, one cannot be reached, one's server is
frozen: the other rooms must see every frame regardless.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from devstack.room import LocalRoom
from pipeline import push
from pipeline.control import Control
from pipeline.flv import keyframe_at, media_start, whole_tags
from pipeline.progress import Progress
from pipeline.pushing import PushResult
from pipeline.spec import Target

from ..filerooms import spec_for
from ..media import flv_of, make_clip, make_numbered_clip
from ..viewer import FrameNumberViewer

FPS = 25
SECONDS = 6
ALL = list(range(SECONDS * FPS))


@pytest.fixture(scope="module")
def clip(room: LocalRoom) -> str:
    """6 s, 25 fps, a keyframe every second (frame numbers 0…149)."""
    make_numbered_clip(room.media_dir / "fanout.mp4", seconds=SECONDS, gop=FPS)
    return room.media_url("fanout.mp4")


@dataclass
class FanOut:
    """A fan-out push run in a thread: its rooms' viewers, progress and events."""

    result: PushResult | None = None
    progress: list[Progress] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    viewers: dict[str, FrameNumberViewer] = field(default_factory=dict)

    def event_names(self, target: str) -> list[str]:
        """The events about one room, in order."""
        return [name for name, fields in self.events if fields.get("TargetId") == target]

    @property
    def targets(self) -> dict[str, dict[str, Any]]:
        """The rooms as the last progress shows them."""
        final = self.result.progress if self.result is not None else self.progress[-1]
        assert final.targets is not None
        return final.targets


def url_of(room: LocalRoom, name: str) -> str:
    """A room's push URL on ``room``'s server."""
    return f"{room.rtmp_base}/{name}?sdkappid=1&userid=u&usersig=s"


def watch(room: LocalRoom, name: str) -> FrameNumberViewer:
    viewer = FrameNumberViewer(room.play_url(name), idle=2.0)
    viewer.start()
    return viewer


def fan_out(
    clip: str,
    targets: list[Target],
    watched: dict[str, tuple[LocalRoom, str]],
    actions: list[tuple[float, Any]] = (),  # type: ignore[assignment]
) -> FanOut:
    """Push ``clip`` to ``targets`` in real time; ``actions``: (second, callable(control))."""
    run = FanOut()
    run.viewers = {key: watch(server, name) for key, (server, name) in watched.items()}
    time.sleep(0.3)
    spec = replace(spec_for(clip), target=targets[0].url, targets=tuple(targets))
    control = Control()
    timers = [threading.Timer(at, action, args=(control,)) for at, action in actions]
    with control:
        for timer in timers:
            timer.start()
        run.result = push(
            spec,
            control,
            on_progress=run.progress.append,
            on_event=lambda name, fields: run.events.append((name, fields)),
        )
    for timer in timers:
        timer.cancel()
    for viewer in run.viewers.values():
        viewer.join(15)
    return run


def test_every_room_sees_every_frame_of_the_one_read_of_the_source(
    room: LocalRoom, room_name: str, clip: str
) -> None:
    names = [f"{room_name}_{n}" for n in range(3)]
    targets = [Target(f"t{n}", url_of(room, name)) for n, name in enumerate(names)]
    run = fan_out(clip, targets, {f"t{n}": (room, name) for n, name in enumerate(names)})
    assert run.result is not None and run.result.outcome.value == "completed"
    for key, viewer in run.viewers.items():
        assert viewer.numbers == ALL, key
    assert {t["State"] for t in run.targets.values()} == {"live"}
    sent = [t["Bytes"] for t in run.targets.values()]
    assert max(sent) - min(sent) <= 1024, "every room got the same stream"


def test_a_room_that_cannot_be_reached_fails_alone(
    room: LocalRoom, room_name: str, clip: str
) -> None:
    nowhere = "rtmp://127.0.0.1:9/push/nowhere?sdkappid=1&userid=u&usersig=secret-sig"
    targets = [Target("good", url_of(room, room_name)), Target("bad", nowhere)]
    run = fan_out(clip, targets, {"good": (room, room_name)})
    assert run.result is not None and run.result.outcome.value == "completed"
    assert run.viewers["good"].numbers == ALL
    assert run.targets["bad"]["State"] == "failed"
    assert "secret-sig" not in run.targets["bad"]["Error"]
    assert run.event_names("bad")[-1] == "target-failed"


def test_a_room_added_while_pushing_joins_at_a_keyframe_and_plays_to_the_end(
    room: LocalRoom, room_name: str, clip: str
) -> None:
    first, late = f"{room_name}_first", f"{room_name}_late"
    added = Target("late", url_of(room, late))
    run = fan_out(
        clip,
        [Target("first", url_of(room, first))],
        {"first": (room, first), "late": (room, late)},
        [(2.0, lambda control: control.change_targets(add=added))],
    )
    assert run.viewers["first"].numbers == ALL
    numbers = run.viewers["late"].numbers
    assert numbers[0] % FPS == 0 and FPS <= numbers[0] <= 4 * FPS, numbers[:3]
    assert numbers == list(range(numbers[0], SECONDS * FPS))
    assert run.event_names("late") == ["target-added", "target-connected", "target-live"]


def test_a_removed_room_stops_and_the_others_play_on(
    room: LocalRoom, room_name: str, clip: str
) -> None:
    stays, goes = f"{room_name}_stays", f"{room_name}_goes"
    targets = [Target("stays", url_of(room, stays)), Target("goes", url_of(room, goes))]
    run = fan_out(
        clip,
        targets,
        {"stays": (room, stays), "goes": (room, goes)},
        [(2.0, lambda control: control.change_targets(remove="goes"))],
    )
    assert run.viewers["stays"].numbers == ALL
    gone = run.viewers["goes"].numbers
    assert gone == list(range(len(gone))) and FPS <= len(gone) <= 3 * FPS
    assert "goes" not in run.targets
    assert run.event_names("goes")[-1] == "target-removed"


@pytest.fixture
def other_server(workdir: Path) -> Iterator[LocalRoom]:
    """A second nginx-rtmp server, to be frozen."""
    with LocalRoom(workdir / f"room-frozen-{os.getpid()}-{time.monotonic_ns()}") as server:
        yield server


def _processes_of(server: LocalRoom) -> list[int]:
    """nginx's master and workers."""
    master = server._read_pid()  # noqa: SLF001 - the test freezes the whole server
    assert master is not None
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


@dataclass
class Freezer:
    """Stops a whole nginx-rtmp server (SIGSTOP) and lets it go on (SIGCONT)."""

    server: LocalRoom
    frozen: list[int] = field(default_factory=list)

    def freeze(self, _: Control) -> None:
        self.frozen.extend(_processes_of(self.server))
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self, _: Control | None = None) -> None:
        for pid in self.frozen:
            os.kill(pid, signal.SIGCONT)


def test_a_frozen_room_server_holds_up_no_other_room(
    room: LocalRoom, other_server: LocalRoom, room_name: str, clip: str
) -> None:
    freezer = Freezer(other_server)
    targets = [Target("ok", url_of(room, room_name)), Target("frozen", url_of(other_server, "x"))]
    try:
        actions = [(1.0, freezer.freeze), (4.0, freezer.thaw)]
        run = fan_out(clip, targets, {"ok": (room, room_name)}, actions)
    finally:
        freezer.thaw()
    assert run.result is not None and run.result.outcome.value == "completed"
    viewer = run.viewers["ok"]
    assert viewer.numbers == ALL
    gaps = [b - a for a, b in zip(viewer.arrivals, viewer.arrivals[1:], strict=False)]
    assert max(gaps) < 0.25, f"a {max(gaps) * 1000:.0f} ms wait at the other room's viewer"


def test_the_flv_scanner_finds_the_header_the_first_keyframe_and_whole_tags(
    room: LocalRoom,
) -> None:
    flv = flv_of(make_numbered_clip(room.media_dir / "scan.mp4", seconds=2, gop=FPS))
    body = flv[13:]
    start = media_start(body)
    assert start is not None and start > 0
    assert body[start] in (8, 9), "media: sound or picture"
    key = keyframe_at(body[start:])
    assert key is not None and body[start + key] == 9 and body[start + key + 11] >> 4 == 1
    assert whole_tags(body[:-1]) < len(body) == whole_tags(body)


def test_a_room_that_falls_behind_drops_to_the_next_keyframe_and_plays_on(
    room: LocalRoom,
    other_server: LocalRoom,
    room_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 720p test pattern (about 2 MB in 4 s), and a room behind once 64 KiB wait unsent.
    make_clip(room.media_dir / "fanout720.mp4", seconds=8, gop=30)
    monkeypatch.setattr("pipeline.fanout.MAX_WAITING", 1 << 16)
    freezer = Freezer(other_server)
    targets = [Target("ok", url_of(room, room_name)), Target("slow", url_of(other_server, "x"))]
    try:
        actions = [(1.0, freezer.freeze), (5.0, freezer.thaw)]
        run = fan_out(room.media_url("fanout720.mp4"), targets, {}, actions)
    finally:
        freezer.thaw()
    assert run.result is not None and run.result.outcome.value == "completed"
    assert run.targets["slow"]["Drops"] >= 1
    assert run.event_names("slow")[-2:] == ["target-behind", "target-live"]
    assert run.targets["ok"]["Drops"] == 0
