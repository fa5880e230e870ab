"""The player of a switchable push, checked by what it writes: switch, queue, playlist, loop,
seek, pause, volume, each on one unbroken publish.

Each push runs the real pipeline into a file room on a virtual clock (tests/filerooms.py):
commands arrive at chosen seconds of the push, and the written stream is decoded to see
which clip and frame every picture is. End to end through the API, a worker and the room,
tests/e2e/test_switch.py checks switching once more.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from devstack.room import LocalRoom
from jobs.commands import Command, Loop, Pause, Queue, Resume, Seek, Switch, Tempo, Volume
from pipeline import Clip
from pipeline.rendition_cache import RenditionCache

from ..filerooms import Frame, Publish, Sent, prepare_all, push_to_files, spec_for
from ..media import make_numbered_clip

FPS = 25
AAC_FRAME = 1024 / 48_000
#: Picture gaps at a join: at most two frame intervals (one frame may be dropped).
MAX_PICTURE_GAP = 2 / FPS + 0.005
MAX_SOUND_GAP = AAC_FRAME + 0.005


class Clips(dict[int, str]):
    """The clips' URLs, and the rendition cache that holds them all prepared (or None)."""

    cache: RenditionCache | None = None


@pytest.fixture(scope="module", params=["encoded as they play", "prepared renditions"])
def clips(
    request: pytest.FixtureRequest,
    media: Path,
    room: LocalRoom,
    tmp_path_factory: pytest.TempPathFactory,
) -> Clips:
    """Clip 1: 6 s 320x240 25 fps; clip 2: 3 s 640x480 30 fps; clip 3: 2 s 320x240.

    Every test runs twice: clips re-encoded as they play, and clips remuxed from renditions
    prepared in each clip's format (any clip may start a push).
    """
    make_numbered_clip(media / "player1.mp4", seconds=6, clip_id=1, tone=440)
    make_numbered_clip(
        media / "player2.mp4", seconds=3, clip_id=2, fps=30, gop=30, size=(640, 480), tone=660
    )
    make_numbered_clip(media / "player3.mp4", seconds=2, clip_id=3, tone=880)
    urls = Clips({n: room.media_url(f"player{n}.mp4") for n in (1, 2, 3)})
    if request.param == "prepared renditions":
        urls.cache = prepare_all(list(urls.values()), tmp_path_factory.mktemp("renditions"))
    return urls


def play(
    tmp_path: Path,
    clips: dict[int, str],
    commands: Sequence[tuple[float, Command]] = (),
    first: int = 1,
    stop_at: float | None = None,
    **fields: Any,
) -> Sent:
    """A switchable push of clip ``first`` with ``commands`` at their seconds."""
    cache = getattr(clips, "cache", None)
    spec = spec_for(clips[first], switchable=True, rendition_cache=cache, **fields)
    return push_to_files(tmp_path / "room", spec, commands, stop_at=stop_at)


def assert_seamless(publish: Publish, picture_gap: float = MAX_PICTURE_GAP) -> None:
    """Continuous picture and sound: timestamps that never go back, no gap beyond a frame
    or two of picture (``picture_gap``) and one AAC frame of sound."""
    pts = [f.pts for f in publish.frames]
    assert pts == sorted(pts), "picture timestamps went backwards"
    worst = max(b - a for a, b in zip(pts, pts[1:], strict=False))
    assert worst <= picture_gap, f"a picture gap of {worst * 1000:.0f} ms"
    sound = publish.times("audio")
    assert all(b > a for a, b in zip(sound, sound[1:], strict=False)), "sound went back or repeated"
    worst = max(b - a for a, b in zip(sound, sound[1:], strict=False))
    assert worst <= MAX_SOUND_GAP, f"a sound gap of {worst * 1000:.0f} ms"


def first_of(frames: list[Frame], clip: int) -> int:
    """The index of the first picture of ``clip``."""
    return next(i for i, f in enumerate(frames) if f.clip == clip)


def test_switch_now_shows_the_new_clip_from_its_start_within_half_a_second(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(2.0, Switch(VideoSrc=clips[2]))])
    assert sent.completed, sent.error
    frames = sent.publish.frames
    new = first_of(frames, 2)
    assert {f.clip for f in frames[:new]} == {1} and {f.clip for f in frames[new:]} == {2}
    assert frames[new].pts - 2.0 < 0.5
    assert frames[new].number <= 1
    assert frames[-1].number >= 3 * 30 - 3  # clip 2 played to its end
    assert_seamless(sent.publish)
    assert sent.event_names()[:3] == ["clip-started", "clip-ended", "clip-started"]
    assert sent.result is not None and sent.result.reason == "the playlist ended"


def test_the_first_clip_starts_at_the_push_s_start_point(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, start_position=2.0, playlist=(clips[3],))
    frames = sent.publish.frames
    assert frames[0].clip == 1 and abs(frames[0].number - 2 * FPS) <= 1
    assert frames[-1].clip == 3 and frames[first_of(frames, 3)].number == 0  # from its start
    assert_seamless(sent.publish)


def test_clip_events_carry_the_callers_clip_ids_and_how_each_clip_ended(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [(1.0, Switch(VideoSrc=clips[2], ClipId="question"))]
    sent = play(
        tmp_path, clips, commands, clip_id="explanation", playlist=(Clip(clips[3], "answer"),)
    )
    assert sent.completed, sent.error
    told = [
        (name, f["ClipId"], f.get("How")) for name, f in sent.events if name.startswith("clip-")
    ]
    assert told == [
        ("clip-started", "explanation", None),
        ("clip-ended", "explanation", "switched"),
        ("clip-started", "question", None),
        ("clip-ending", "question", None),
        ("clip-ended", "question", "finished"),
        ("clip-started", "answer", None),
        ("clip-ending", "answer", None),
        ("clip-ended", "answer", "finished"),
    ]
    switched = sent.events[1][1]
    assert switched["ToClipId"] == "question" and 0.9 <= switched["Position"] <= 1.5


def assert_ending_announced(sent: Sent, lead: float, times: int) -> None:
    """Each clip-ending came ``lead`` seconds (of output) before the clip-ended after it."""
    endings = [(n, f) for n, f in sent.events if n in ("clip-ending", "clip-ended")]
    pairs = list(zip(endings, endings[1:], strict=False))
    announced = [(a, b) for (na, a), (nb, b) in pairs if (na, nb) == ("clip-ending", "clip-ended")]
    assert len(announced) == times, sent.event_names()
    for ending, ended in announced:
        # Give or take one paced batch of pictures.
        assert lead - 0.2 <= ending["Remaining"] <= lead, ending
        assert lead - 0.2 <= ended["OutputTime"] - ending["OutputTime"] <= lead + 0.2


def test_clip_ending_fires_its_lead_before_the_clip_ends_in_the_room(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, clip_ending=1.5)
    assert_ending_announced(sent, 1.5, times=1)
    assert sent.event_names().count("clip-ending") == 1


def test_every_clip_of_a_playlist_and_of_a_loop_announces_its_own_end(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=3, playlist=(clips[2],), clip_ending=1.0)
    assert_ending_announced(sent, 1.0, times=2)
    looped = play(tmp_path / "loop", clips, first=3, loop="clip", clip_ending=1.0, stop_at=4.5)
    assert_ending_announced(looped, 1.0, times=2)


def test_a_clip_whose_timestamps_start_late_announces_its_end_on_time(
    tmp_path: Path, clips: dict[int, str], media: Path, room: LocalRoom
) -> None:
    # MPEG-TS files rarely start at 0: the lead counts from the clip's own start.
    late = media / "player3_late.ts"
    if not late.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(media / "player3.mp4"), "-c", "copy",
             "-output_ts_offset", "10", "-f", "mpegts", str(late)],
            check=True,
        )  # fmt: skip
    sent = play(tmp_path, {1: room.media_url(late.name)}, clip_ending=1.0)
    assert_ending_announced(sent, 1.0, times=1)


def test_a_clip_queued_on_clip_ending_follows_without_a_seam(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    # What the classroom's backend does: on clip-ending, queue what comes next.
    sent = play(tmp_path, clips, [(4.6, Switch(VideoSrc=clips[3], When="end", ClipId="next"))])
    frames = sent.publish.frames
    new = first_of(frames, 3)
    assert frames[new - 1].number == 6 * FPS - 1 and frames[new].number == 0
    assert_seamless(sent.publish)
    started = [f["ClipId"] for name, f in sent.events if name == "clip-started"]
    assert started == [None, "next"]


def test_seeking_back_before_the_lead_announces_the_end_again(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(5.5, Seek(Position=1))], clip_ending=2.0, stop_at=12.0)
    endings = [f for name, f in sent.events if name == "clip-ending"]
    ended = next(f for name, f in sent.events if name == "clip-ended")
    # At 4 s of the clip, then again 2 s before its end after the seek (5.5 + 5 − 2 s).
    assert endings[0]["OutputTime"] == pytest.approx(4.0, abs=0.1)
    assert endings[1]["OutputTime"] == pytest.approx(ended["OutputTime"] - 2.0, abs=0.1)
    assert all(1.8 <= f["Remaining"] <= 2.0 for f in endings), endings
    assert sent.event_names().count("clip-ended") == 1


def test_a_push_stopped_mid_clip_ends_the_clip_as_stopped(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, clip_id="lesson", stop_at=2.0)
    name, fields = sent.events[-1]
    assert (name, fields["How"], fields["ClipId"]) == ("clip-ended", "stopped", "lesson")


def test_commands_sent_together_with_a_switch_apply_to_the_next_clip(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    together = [
        (1.0, Switch(VideoSrc=clips[2])),
        (1.0, Queue(Action="replace", Sources=[clips[3]])),
    ]
    sent = play(tmp_path, clips, together)
    order = [f.clip for f in sent.publish.frames]
    assert list(dict.fromkeys(order)) == [1, 2, 3]


def test_switch_at_the_end_of_the_clip_plays_the_clip_out_first(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    command = Switch(VideoSrc=clips[3], When="end")
    sent = play(tmp_path, clips, [(1.0, command)])
    frames = sent.publish.frames
    new = first_of(frames, 3)
    assert frames[new - 1].clip == 1 and frames[new - 1].number == 6 * FPS - 1
    assert frames[new].number == 0 and frames[-1].clip == 3
    assert_seamless(sent.publish)


def test_a_playlist_plays_its_clips_in_order_then_the_push_ends(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=3, playlist=(clips[2],))
    assert sent.completed
    order = [f.clip for f in sent.publish.frames]
    assert order == sorted(order, reverse=True) and set(order) == {3, 2}
    assert [f.number for f in sent.publish.frames if f.clip == 3][-1] == 2 * FPS - 1
    assert_seamless(sent.publish)


def test_the_queue_can_be_replaced_and_cleared_while_playing(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [
        (0.5, Queue(Action="replace", Sources=[clips[2], clips[3]])),
        (1.0, Queue(Action="clear")),
        (1.5, Queue(Action="append", Sources=[clips[3]])),
    ]
    sent = play(tmp_path, clips, commands, first=3, playlist=(clips[1],))
    assert [f.clip for f in sent.publish.frames][-1] == 3
    assert {f.clip for f in sent.publish.frames} == {3}
    assert sent.event_names().count("queue") == 3


def test_pausing_holds_the_picture_on_one_publish_and_resume_continues_the_clip(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [(2.0, Pause()), (7.0, Resume())]
    sent = play(tmp_path, clips, commands, stop_at=9.0)
    frames = sent.publish.frames
    numbers = [f.number for f in frames]
    held = max(set(numbers), key=numbers.count)
    held_pts = [f.pts for f in frames if f.number == held]
    assert held_pts[-1] - held_pts[0] >= 4.5, "the picture was not held through the pause"
    after = numbers[len(numbers) - 1 - numbers[::-1].index(held) + 1 :]
    assert after and after[0] == held + 1, "resume did not continue where it paused"
    # The held picture is sent again every PAUSE_STEP (0.1 s), with silence between.
    assert_seamless(sent.publish, picture_gap=0.1 + 0.005)
    assert sent.event_names()[1:3] == ["pause", "resume"]


def test_loop_clip_repeats_the_clip_until_told_otherwise(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [
        (0.5, Loop(Loop="clip")),
        (4.5, Loop(Loop="none")),
    ]
    sent = play(tmp_path, clips, commands, first=3)
    assert sent.completed
    starts = [i for i, f in enumerate(sent.publish.frames) if f.number == 0]
    assert len(starts) == 3, "clip 3 (2 s) should play three times in 4.5 s and the rest"
    assert_seamless(sent.publish)


def test_seek_jumps_to_the_position_in_the_clip_on_the_same_publish(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(1.0, Seek(Position=4.0))])
    numbers = [f.number for f in sent.publish.frames]
    jump = next(i for i, (a, b) in enumerate(zip(numbers, numbers[1:], strict=False)) if b != a + 1)
    assert numbers[jump] <= FPS + 2  # about 1 s in when the seek came
    assert abs(numbers[jump + 1] - 4 * FPS) <= 1  # the exact frame (re-encoded)
    assert_seamless(sent.publish)


def test_volume_changes_the_sound_level_without_a_gap(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(2.0, Volume(Volume=10))], first=1)
    assert ("volume",) == tuple(n for n in sent.event_names() if n == "volume")
    assert_seamless(sent.publish)


def test_a_stop_during_a_pause_ends_the_push_stopped(tmp_path: Path, clips: dict[int, str]) -> None:
    sent = play(tmp_path, clips, [(1.0, Pause())], stop_at=3.0)
    assert sent.result is not None and not sent.completed
    assert 2.9 <= sent.publish.frames[-1].pts <= 3.2


def sound_between(publish: Publish, start: float, end: float) -> np.ndarray:
    """The publish's decoded sound between two of its times: channels × samples."""
    frames = []
    with av.open(str(publish.path)) as container:
        for frame in container.decode(audio=0):
            if frame.pts is not None and start <= frame.pts * frame.time_base < end:
                frames.append(frame.to_ndarray().astype(np.float64))
    return np.concatenate(frames, axis=1)


def sound_level(publish: Publish, start: float, end: float) -> float:
    """The sound's RMS between two times of the publish (its mean over the channels)."""
    samples = sound_between(publish, start, end)
    return float(np.sqrt(np.mean(samples * samples)))


def test_the_push_starts_at_the_volume_asked_from_its_first_sound(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    full = play(tmp_path / "full", clips, first=3)
    half = play(tmp_path / "half", clips, first=3, volume=50)
    ratio = sound_level(half.publish, 0.0, 1.9) / sound_level(full.publish, 0.0, 1.9)
    assert 0.45 <= ratio <= 0.55, ratio
    assert half.final.player is not None and half.final.player["Volume"] == 50
    assert_seamless(half.publish)


def test_repeatnum_plays_the_clip_that_many_times_on_one_publish(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=3, repeat=3)
    assert sent.completed
    numbers = [f.number for f in sent.publish.frames]
    assert numbers == list(range(2 * FPS)) * 3
    assert sent.event_names().count("clip-started") == 3
    assert_seamless(sent.publish)


def test_repeatnum_minus_one_repeats_until_the_push_is_stopped(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=3, repeat=-1, stop_at=9.0)
    starts = [i for i, f in enumerate(sent.publish.frames) if f.number == 0]
    assert len(starts) == 5, "clip 3 (2 s) starts five times in 9 s"
    assert_seamless(sent.publish)


def test_a_clip_queued_while_repeating_plays_next_and_ends_the_repeats(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(0.5, Queue(Sources=[clips[2]]))], first=3, repeat=5)
    assert sent.completed
    order = [f.clip for f in sent.publish.frames]
    assert order == [3] * (2 * FPS) + [2] * order.count(2)
    assert_seamless(sent.publish)


def pitch(publish: Publish, start: float, end: float) -> float:
    """The loudest frequency of the sound between two times of the publish (Hz)."""
    rate = publish.sample_rate or 48_000
    joined = sound_between(publish, start, end)[0]
    spectrum = np.abs(np.fft.rfft(joined * np.hanning(len(joined))))
    return float(np.fft.rfftfreq(len(joined), 1 / rate)[int(np.argmax(spectrum))])


def numbers_between(publish: Publish, start: float, end: float) -> list[int]:
    """The frame numbers shown between two times of the publish."""
    return [f.number for f in publish.frames if start <= f.pts < end]


def test_tempo_two_plays_the_clip_in_half_the_time_at_the_same_pitch(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=1, tempo=2.0)
    assert sent.completed
    assert abs(sent.publish.media_seconds("video") - 3.0) <= 0.1
    assert abs(sent.publish.media_seconds("audio") - 3.0) <= 0.1
    numbers = numbers_between(sent.publish, 0.0, 3.0)
    assert set(np.diff(numbers)) == {2}, "every other picture, in order"
    assert abs(pitch(sent.publish, 0.5, 2.5) - 440) <= 5
    assert sent.final.player is not None and sent.final.player["Tempo"] == 2.0
    assert_seamless(sent.publish)


def test_tempo_half_shows_every_picture_for_twice_as_long_at_the_same_pitch(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, first=3, tempo=0.5)
    assert sent.completed
    assert abs(sent.publish.media_seconds("audio") - 4.0) <= 0.1
    assert [f.number for f in sent.publish.frames] == list(range(2 * FPS))
    assert abs(pitch(sent.publish, 0.5, 3.5) - 880) <= 5
    assert_seamless(sent.publish, picture_gap=2 / FPS + 0.005)


def test_a_tempo_command_speeds_the_clip_up_from_where_it_is_without_a_seam(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play(tmp_path, clips, [(1.0, Tempo(Tempo=2.0))], first=1)
    assert sent.completed
    before, after = numbers_between(sent.publish, 0.2, 0.9), numbers_between(sent.publish, 1.5, 3.0)
    assert set(np.diff(before)) == {1} and set(np.diff(after)) == {2}
    # 1 s as recorded, then the other 5 s of the clip in 2.5 s.
    assert abs(sent.publish.media_seconds("video") - 3.5) <= 0.15
    assert "tempo" in sent.event_names()
    assert_seamless(sent.publish)


def test_tempo_back_to_one_plays_on_as_recorded_without_a_seam(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [(1.0, Tempo(Tempo=2.0)), (2.0, Tempo(Tempo=1.0))]
    sent = play(tmp_path, clips, commands, first=1)
    assert sent.completed
    assert set(np.diff(numbers_between(sent.publish, 2.5, 4.5))) == {1}
    # 1 s, then 2 s of the clip in 1 s, then the last 3 s as recorded.
    assert abs(sent.publish.media_seconds("video") - 5.0) <= 0.15
    assert abs(pitch(sent.publish, 2.5, 4.5) - 440) <= 5
    assert_seamless(sent.publish)


def test_the_tempo_carries_over_to_the_next_clip(tmp_path: Path, clips: dict[int, str]) -> None:
    sent = play(tmp_path, clips, first=3, tempo=2.0, playlist=(clips[1],))
    assert sent.completed
    second = [f for f in sent.publish.frames if f.clip == 1]
    assert abs((second[-1].pts - second[0].pts) - 3.0) <= 0.15
    assert_seamless(sent.publish)


# A worker's push runs in real time on the process's shared sender, which holds about a
# second of the clip queued ahead: a command takes that second back, so that it acts on
# what the viewer sees when it comes (the push's own time lags the test's by its start-up).
REAL_TIME_SLACK = 0.25


def play_in_real_time(
    tmp_path: Path, clips: dict[int, str], commands: Sequence[tuple[float, Command]], first: int
) -> Sent:
    """:func:`play` on the wall clock, paced by the shared sender."""
    cache = getattr(clips, "cache", None)
    spec = spec_for(clips[first], switchable=True, rendition_cache=cache)
    return push_to_files(tmp_path / "room", spec, commands, real_time=True)


def test_in_real_time_a_switch_takes_the_queued_second_back_and_joins_seamlessly(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play_in_real_time(tmp_path, clips, [(2.0, Switch(VideoSrc=clips[3]))], first=1)
    frames = sent.publish.frames
    switched = first_of(frames, 3)
    assert 1.5 * FPS <= frames[switched - 1].number <= (2.0 + REAL_TIME_SLACK) * FPS
    assert [f.number for f in frames[switched:]] == list(range(2 * FPS))
    assert_seamless(sent.publish)


def test_in_real_time_a_pause_holds_the_picture_the_viewer_saw(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play_in_real_time(tmp_path, clips, [(2.0, Pause()), (4.0, Resume())], first=1)
    numbers = [f.number for f in sent.publish.frames]
    held = max(set(numbers), key=numbers.count)
    assert 1.5 * FPS <= held <= (2.0 + REAL_TIME_SLACK) * FPS and numbers.count(held) >= 15
    resumed = [n for n in numbers[numbers.index(held) :] if n != held]
    assert resumed == list(range(held + 1, 6 * FPS)), "resume continues where it paused"
    assert_seamless(sent.publish, picture_gap=0.1 + 0.005)


def test_in_real_time_a_volume_change_is_heard_from_the_command_on(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    sent = play_in_real_time(tmp_path, clips, [(2.0, Volume(Volume=10))], first=1)
    before = sound_level(sent.publish, 0.5, 1.5)
    after = sound_level(sent.publish, 2.0 + REAL_TIME_SLACK, 2.8)
    assert after / before <= 0.15, "the queued second went out at the old volume"
    assert [f.number for f in sent.publish.frames] == list(range(6 * FPS))
    assert_seamless(sent.publish)


def test_in_real_time_a_pause_in_the_last_second_of_a_clip_loses_none_of_it(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    # At 1.6 s the push has read into the next clip; the room still shows clip 3's end.
    cache = getattr(clips, "cache", None)
    spec = spec_for(clips[3], switchable=True, rendition_cache=cache, playlist=(clips[1],))
    commands = [(1.6, Pause()), (3.5, Resume())]
    sent = push_to_files(tmp_path / "room", spec, commands, real_time=True)
    frames = sent.publish.frames
    assert [f.number for f in frames if f.clip == 3] == list(range(2 * FPS))
    shown = [f.number for f in frames if f.clip == 1]
    assert sorted(set(shown)) == list(range(6 * FPS)), "clip 1 whole, held once"
    assert_seamless(sent.publish, picture_gap=0.1 + 0.005)


def test_in_real_time_a_paused_clip_of_another_size_holds_its_picture_at_the_room_s_size(
    tmp_path: Path, clips: dict[int, str]
) -> None:
    commands = [(1.0, Switch(VideoSrc=clips[2])), (2.5, Pause()), (4.0, Resume())]
    sent = play_in_real_time(tmp_path, clips, commands, first=1)
    held = [f for f in sent.publish.frames if f.clip == 2]
    assert {(f.width, f.height) for f in held} == {(320, 240)}
    numbers = [f.number for f in held]
    assert max(numbers.count(n) for n in set(numbers)) >= 10, "a held picture"
    assert numbers == sorted(numbers) and numbers[-1] >= 3 * 30 - 3, "clip 2 to its end"
    assert_seamless(sent.publish, picture_gap=0.1 + 0.005)
