"""The pipeline's pieces on their own: no Redis, no room, no worker, no API."""

from __future__ import annotations

import importlib
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.codec.context import ThreadType

from jobs.errors import SourceError
from jobs.redact import MASK, redact_text, redact_url
from pipeline.catchup import from_live_edge
from pipeline.control import Control, call_until_stopped
from pipeline.encoders import output_size
from pipeline.pacer import AUDIO_EARLY, Pacer
from pipeline.plan import Action, Decision, decide_audio, decide_video
from pipeline.probe import probe_video
from pipeline.pushing import open_live_source
from pipeline.routes import FrameRateCap
from pipeline.source import Source, open_source
from pipeline.spec import OutputProfile, PushSpec, Timeouts
from pipeline.tempo import Stretch
from pipeline.timeline import Timeline

from ..media import make_clip

MS = Fraction(1, 1000)
PROFILE = OutputProfile()


def packet(
    pts: int | None, dts: int | None, time_base: Fraction = MS, duration: int = 0
) -> av.Packet[Any]:
    """A packet carrying only timestamps (the timeline never looks at the payload)."""
    p = av.Packet(b"x")
    p.time_base = time_base
    p.pts = pts
    p.dts = dts
    p.duration = duration
    return p


def stamps(p: av.Packet[Any]) -> tuple[int, int]:
    """A placed packet's (pts, dts) in its time base; both are set once placed."""
    assert p.pts is not None and p.dts is not None
    return p.pts, p.dts


# --- Timeline ------------------------------------------------------------------------------


def test_timeline_shifts_a_segment_so_its_source_start_lands_on_its_output_start() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(10), Fraction(0))
    p = packet(pts=10_500, dts=10_500)
    assert timeline.place_packet(p, key=0) == 500
    assert stamps(p) == (500, 500)


def test_timeline_next_segment_starts_where_the_previous_one_ended() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(10), Fraction(0))
    timeline.place_packet(packet(pts=10_500, dts=10_500, duration=40), key=0)
    assert timeline.end == Fraction(540, 1000)
    timeline.begin_segment(Fraction(3))
    p = packet(pts=3_000, dts=3_000)
    assert timeline.place_packet(p, key=0) == 540
    assert stamps(p) == (540, 540)


def test_timeline_keeps_the_pts_dts_gap_of_reordered_frames() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(1), Fraction(0))
    p = packet(pts=1_200, dts=1_100)
    timeline.place_packet(p, key=0)
    assert stamps(p) == (200, 100)


def test_timeline_dts_never_decreases_within_a_stream() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    placed = []
    for dts in [0, 40, 80, 60, 20, 120, 100, 160]:
        p = packet(pts=dts, dts=dts)
        timeline.place_packet(p, key=0)
        pts, out_dts = stamps(p)
        assert pts >= out_dts
        placed.append(out_dts)
    assert placed == sorted(placed)
    assert placed == [0, 40, 80, 80, 80, 120, 120, 160]


def test_timeline_dts_never_decreases_across_a_seek_backwards() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    timeline.place_packet(packet(pts=1_000, dts=1_000), key=0)
    # The new segment claims output 0.5 s, before what was already sent.
    timeline.begin_segment(Fraction(0), Fraction(1, 2))
    p = packet(pts=0, dts=0)
    timeline.place_packet(p, key=0)
    assert stamps(p)[1] >= 1_000


def test_timeline_clamps_timestamps_before_the_output_origin_to_zero() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(1), Fraction(0))
    p = packet(pts=400, dts=300)  # 0.6-0.7 s before the segment's start
    assert timeline.place_packet(p, key=0) == 0
    pts, dts = stamps(p)
    assert dts == 0 and pts >= 0


def test_timeline_streams_are_kept_monotonic_independently() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    timeline.place_packet(packet(pts=2_000, dts=2_000), key=0)
    audio = packet(pts=500, dts=500)
    timeline.place_packet(audio, key=1)
    assert audio.dts == 500


def test_timeline_keeps_timestamps_in_the_packets_own_time_base() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(2), Fraction(0))
    p = packet(pts=3 * 90_000, dts=3 * 90_000, time_base=Fraction(1, 90_000))
    assert timeline.place_packet(p, key=0) == 90_000
    assert stamps(p) == (90_000, 90_000)


def test_timeline_packet_without_dts_is_placed_by_its_pts() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    p = packet(pts=700, dts=None)
    assert timeline.place_packet(p, key=0) == 700
    assert p.dts == 700


def test_timeline_carries_a_streams_limits_over_a_change_of_time_base() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    timeline.place_packet(packet(pts=1_000, dts=1_000, duration=40), key=0)
    # A reconnected source whose packets count in 1/90000 and restart at 0.
    timeline.begin_segment(Fraction(0), Fraction(0))
    p = packet(pts=0, dts=0, time_base=Fraction(1, 90_000))
    timeline.place_packet(p, key=0)
    assert stamps(p) == (90_000, 90_000)
    assert timeline.end == Fraction(1_040, 1_000)


# --- Control -------------------------------------------------------------------------------


@pytest.fixture
def control() -> Iterator[Control]:
    with Control() as c:
        yield c


def test_timeline_at_a_tempo_maps_source_seconds_to_fewer_output_seconds() -> None:
    timeline = Timeline()
    timeline.set_tempo(Fraction(2))
    timeline.begin_segment(Fraction(10), Fraction(0))
    assert timeline.to_output(Fraction(14)) == 2
    assert timeline.to_source(Fraction(2)) == 14
    assert timeline.source_seconds(2.0) == 14.0


def test_timeline_tempo_change_runs_on_from_the_end_without_a_jump() -> None:
    timeline = Timeline()
    timeline.begin_segment(Fraction(0), Fraction(0))
    timeline.place_output(Fraction(3), key=-1, duration=Fraction(1, 25))  # ends at 3.04
    timeline.set_tempo(Fraction(1, 2))
    assert timeline.to_output(Fraction(304, 100)) == Fraction(304, 100)
    assert timeline.to_output(Fraction(404, 100)) == Fraction(504, 100)
    timeline.begin_segment(Fraction(0))  # a new clip keeps the speed
    assert timeline.to_output(Fraction(1)) == timeline.end + 2


def test_stretch_keeps_the_sound_format_and_plays_it_in_one_over_tempo_the_time() -> None:
    stretch = Stretch(_tone_frame(0), Fraction(3, 2))
    out = [f for n in range(50) for f in stretch.process(_tone_frame(n))]
    out += list(stretch.flush())
    assert {(f.format.name, f.layout.name, f.sample_rate) for f in out} == {
        ("fltp", "stereo", 48_000)
    }
    assert abs(sum(f.samples for f in out) - 50 * 1024 / 1.5) <= 1024


def test_control_wait_without_a_stop_sleeps_the_whole_timeout(control: Control) -> None:
    started = time.monotonic()
    assert control.wait(0.05) is False
    assert time.monotonic() - started >= 0.045


def blocked_until(wait: Callable[[], bool], action: Callable[[], None]) -> tuple[bool, float]:
    """Run ``action`` from another thread 0.1 s into ``wait()``: its result and duration."""
    timer = threading.Timer(0.1, action)
    started = time.monotonic()
    timer.start()
    try:
        return wait(), time.monotonic() - started
    finally:
        timer.join()


def test_control_stop_from_another_thread_wakes_a_wait_promptly(control: Control) -> None:
    stopped, took = blocked_until(
        lambda: control.wait(10), lambda: control.request_stop("from a thread")
    )
    assert stopped is True
    assert took < 1.0
    assert control.stop_reason == "from a thread"


def test_control_poke_ends_a_wait_early_without_a_stop(control: Control) -> None:
    stopped, took = blocked_until(lambda: control.wait(10), control.poke)
    assert stopped is False
    assert took < 1.0
    assert not control.stop_requested


def test_control_poke_is_consumed_so_the_next_wait_sleeps_again(control: Control) -> None:
    control.poke()
    control.poke()
    assert control.wait(1) is False
    started = time.monotonic()
    assert control.wait(0.05) is False
    assert time.monotonic() - started >= 0.045


def test_control_stop_after_a_poke_still_stops(control: Control) -> None:
    control.poke()
    control.request_stop("after a poke")
    assert control.wait(1) is True
    assert control.wait(1) is True


def test_control_wait_after_a_stop_returns_at_once(control: Control) -> None:
    control.request_stop()
    started = time.monotonic()
    assert control.wait(10) is True
    assert time.monotonic() - started < 0.1


def test_call_until_stopped_returns_what_the_call_returns(control: Control) -> None:
    assert call_until_stopped(control, lambda: 42, lambda _: None) == 42


def test_call_until_stopped_raises_what_the_call_raises(control: Control) -> None:
    def fail() -> int:
        raise SourceError("away")

    with pytest.raises(SourceError, match="away"):
        call_until_stopped(control, fail, lambda _: None)


def test_call_until_stopped_returns_at_a_stop_and_discards_the_late_result(
    control: Control,
) -> None:
    release = threading.Event()
    discarded: list[int] = []
    threading.Timer(0.2, control.request_stop).start()
    started = time.monotonic()
    assert call_until_stopped(control, lambda: release.wait(10) and 7, discarded.append) is None
    assert time.monotonic() - started < 1.0
    release.set()
    deadline = time.monotonic() + 5
    while not discarded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert discarded == [7]


def test_control_request_stop_is_idempotent_and_keeps_the_first_reason(
    control: Control,
) -> None:
    control.request_stop("first")
    control.request_stop("second")
    assert control.stop_requested
    assert control.stop_reason == "first"


def test_control_request_stop_survives_a_full_pipe(control: Control) -> None:
    for _ in range(100_000):  # far more than a pipe's 64 KiB buffer
        control.request_stop("again")
    assert control.wait(1) is True


def test_control_cut_off_ends_what_is_registered_while_it_is_registered(
    control: Control,
) -> None:
    cut: list[str] = []
    with control.cuts_off(lambda: cut.append("publish")):
        assert control.cut_off()
    assert not control.cut_off()  # closed since: nothing left to end
    assert cut == ["publish"]


class _AudioOnly:
    """What opening a live source that has not shown its video yet gives."""

    video = None

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("stopped", "opens"), [(False, 2), (True, 1)])
def test_a_live_source_without_video_is_analysed_again_unless_the_push_was_stopped(
    control: Control, monkeypatch: pytest.MonkeyPatch, stopped: bool, opens: int
) -> None:
    opened: list[str] = []
    # The module, not the function of the same name that the package exports.
    push_module = importlib.import_module("pipeline.pushing")
    monkeypatch.setattr(
        push_module, "open_source", lambda url, *a, **k: opened.append(url) or _AudioOnly()
    )
    if stopped:
        control.request_stop()  # the push stopped waiting for this open
    spec = PushSpec(source="rtmp://127.0.0.1/live/s", target="rtmp://127.0.0.1/push/r", live=True)
    open_live_source(spec, control, expect_video=True)
    assert len(opened) == opens


# --- catching up with a live stream --------------------------------------------------------


def arriving(schedule: list[tuple[float, float]], now: list[float]) -> Iterator[av.Packet]:
    """Packets with the given (arrival, media time) seconds; ``now`` is the clock they set."""
    for arrival, seconds in schedule:
        now[0] = arrival
        packet = av.Packet(b"x")
        packet.time_base = Fraction(1, 1000)
        packet.pts = packet.dts = round(seconds * 1000)
        yield packet


def relayed(schedule: list[tuple[float, float]]) -> list[float]:
    """Media times of the packets from_live_edge passes on, for packets that arrive so."""
    now = [0.0]
    packets = from_live_edge(arriving(schedule, now), clock=lambda: now[0])
    return [float(p.pts * p.time_base) for p in packets]


def test_a_fresh_publish_is_relayed_from_its_first_packet() -> None:
    # The analysis held a keyframe and some sound; the next packet comes 20 ms later.
    schedule = [(0.0, 0.0), (0.0, 0.02), (0.02, 0.04), (0.06, 0.08)]
    assert relayed(schedule) == [0.0, 0.02, 0.04, 0.08]


def test_a_replayed_gop_is_cut_to_its_last_half_second() -> None:
    burst = [(0.0, t / 10) for t in range(20)]  # 0.0 … 1.9 s of media at once
    live = [(0.1, 2.0), (0.2, 2.1)]
    assert relayed(burst + live) == [1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1]


def test_a_source_faster_than_real_time_is_relayed_once_the_catch_up_limit_passes() -> None:
    fast = [(t / 1000, t / 100) for t in range(4000)]  # ten times real time, never waits
    out = relayed(fast)
    assert out[-1] == 39.99
    assert 29 < out[0] < 31  # held for 3 s, then cut to its last half second


def test_a_connection_that_ends_while_catching_up_passes_on_what_it_held() -> None:
    assert relayed([(0.0, 0.0), (0.0, 1.0)]) == [0.0, 1.0]


# --- Pacer ---------------------------------------------------------------------------------


class FakeClock:
    """A clock (pipeline.clock.Clock) that moves only when the pacer sleeps, by what it asks
    plus up to ``oversleep`` (a scheduler waking late); it notes every sleep asked for."""

    def __init__(self, now: float = 1000.0, oversleep: float = 0.0, seed: int = 1) -> None:
        self.now_ = now
        self.asked: list[float] = []
        self._oversleep = oversleep
        self._rng = random.Random(seed)

    def now(self) -> float:
        return self.now_

    def sleep(self, control: Control, seconds: float) -> bool:
        self.asked.append(seconds)
        self.now_ += seconds + self._rng.uniform(0, self._oversleep)
        return control.stop_requested


def started_pacer(
    control: Control, batch: float, is_video: bool = True
) -> tuple[Pacer, FakeClock, float]:
    """A pacer on a fake clock whose first packet (media time 0) has set the origin: the
    pacer, the clock, and the instant media time 0 is due."""
    clock = FakeClock()
    pacer = Pacer(control, clock=clock, batch=batch)
    start = clock.now()
    pacer.wait(0.0, is_video)
    return pacer, clock, start


def test_pacer_first_packet_is_sent_at_once_and_sets_the_origin(control: Control) -> None:
    clock = FakeClock()
    pacer = Pacer(control, clock=clock)
    assert pacer.wait(5.0) is True
    assert clock.asked == []
    assert pacer.lag(5.0) == 0


def test_pacer_holds_a_packet_until_its_media_time(control: Control) -> None:
    clock = FakeClock()
    pacer = Pacer(control, clock=clock)
    start = clock.now()
    pacer.wait(0.0)
    assert pacer.wait(0.5) is True
    assert clock.asked == [pytest.approx(0.5)]
    assert clock.now() == pytest.approx(start + 0.5)


def test_pacer_does_not_wait_for_a_media_time_already_past(control: Control) -> None:
    clock = FakeClock()
    pacer = Pacer(control, clock=clock)
    pacer.wait(0.0)
    clock.now_ += 5.0
    assert pacer.wait(1.0) is True
    assert pacer.wait(5.0) is True
    assert clock.asked == []
    assert pacer.lag(1.0) == pytest.approx(4.0)


def test_pacer_sends_lead_seconds_early(control: Control) -> None:
    clock = FakeClock()
    pacer = Pacer(control, lead=0.2, clock=clock)
    pacer.wait(0.0)
    pacer.wait(1.0)
    assert clock.asked == [pytest.approx(0.8)]


def test_pacer_sends_packets_due_within_the_batch_window_with_one_wake_up(
    control: Control,
) -> None:
    pacer, clock, _ = started_pacer(control, batch=0.04)
    for media_time in (0.5, 0.52, 0.54, 0.55):
        assert pacer.wait(media_time) is True
    # 0.5 wakes the push; 0.52 and 0.54 ride along; 0.55 is past the window: a new wake-up.
    assert clock.asked == [pytest.approx(0.5), pytest.approx(0.05)]


def test_pacer_never_sends_a_packet_more_than_the_batch_window_early(control: Control) -> None:
    pacer, clock, start = started_pacer(control, batch=0.04)
    for n in range(1, 300):
        media_time = n / 77  # audio and video interleaved, about 77 packets a second
        pacer.wait(media_time)
        early = start + media_time - clock.now()
        assert -1e-9 <= early <= 0.04 + 1e-9


def test_pacer_lets_sound_ride_with_the_picture_instead_of_waking_for_it(
    control: Control,
) -> None:
    pacer, clock, start = started_pacer(control, batch=0.02)
    # One second of 30 fps video and 48 kHz AAC (1024 samples), in decoding order.
    video = [(n / 30, True) for n in range(1, 30)]
    audio = [(n * 1024 / 48000, False) for n in range(1, 47)]
    for media_time, is_video in sorted(video + audio):
        assert pacer.wait(media_time, is_video) is True
        if is_video:
            assert clock.now() == pytest.approx(start + media_time)  # on time, not early
    assert len(clock.asked) == len(video)  # one wake-up per frame; the 46 audio packets none


def test_pacer_wakes_for_sound_that_has_no_picture_to_ride_with(control: Control) -> None:
    pacer, clock, start = started_pacer(control, batch=0.02, is_video=False)
    for n in range(1, 48):
        media_time = n * 1024 / 48000
        pacer.wait(media_time, is_video=False)
        early = start + media_time - clock.now()
        assert -1e-9 <= early <= AUDIO_EARLY + 1e-9
    assert 0 < len(clock.asked) <= 11  # about one wake-up per AUDIO_EARLY of sound


def test_pacer_error_does_not_accumulate_over_ten_thousand_frames(control: Control) -> None:
    clock = FakeClock(oversleep=0.005)
    pacer = Pacer(control, clock=clock)
    start = clock.now()
    worst = 0.0
    for n in range(10_000):
        assert pacer.wait(n / 30) is True
        worst = max(worst, abs(clock.now() - start - n / 30))
    # A pacer sleeping one frame period each time would be ~25 s late by now.
    assert worst <= 0.010, worst


def test_pacer_returns_false_once_a_stop_is_requested(control: Control) -> None:
    pacer = Pacer(control)
    assert pacer.wait(0.0) is True
    sent, took = blocked_until(lambda: pacer.wait(30.0), control.request_stop)
    assert sent is False
    assert took < 1.0


# --- redaction -----------------------------------------------------------------------------


def test_redact_url_masks_usersig_and_keeps_the_other_params() -> None:
    url = "rtmp://intl-rtmp.rtc.qq.com/push/room1?sdkappid=1400&userid=u1&usersig=SECRET"
    redacted = redact_url(url)
    assert "SECRET" not in redacted
    assert (
        redacted == f"rtmp://intl-rtmp.rtc.qq.com/push/room1?sdkappid=1400&userid=u1&usersig={MASK}"
    )


def test_redact_url_masks_the_whole_userinfo() -> None:
    assert redact_url("redis://admin:hunter2@cache:6379/0") == f"redis://{MASK}@cache:6379/0"


def test_redact_url_masks_sign_param_of_a_signed_source() -> None:
    redacted = redact_url("https://cdn.example.com/v/a.mp4?sign=abc123&t=1700000000")
    assert redacted == f"https://cdn.example.com/v/a.mp4?sign={MASK}&t=1700000000"


def test_redact_url_matches_secret_param_names_case_insensitively() -> None:
    assert "SECRET" not in redact_url("rtmp://h/app/room?UserSig=SECRET&UserId=u")


def test_redact_url_leaves_a_url_without_secrets_unchanged() -> None:
    url = "https://cdn.example.com/v/a.mp4?t=1700000000&quality=hd"
    assert redact_url(url) == url


def test_redact_text_masks_secret_params_and_passwords_in_free_text() -> None:
    text = (
        "error opening rtmp://h/app/r?userid=u1&usersig=SECRET1 "
        "and redis://:hunter2@cache:6379 and https://c/a.mp4?sign=SECRET2&t=9"
    )
    redacted = redact_text(text, [])
    for secret in ("SECRET1", "SECRET2", "hunter2"):
        assert secret not in redacted
    assert "userid=u1" in redacted and "t=9" in redacted


def test_redact_text_masks_the_given_secret_values_anywhere() -> None:
    redacted = redact_text("the server echoed my-sig-value back", ["my-sig-value", ""])
    assert redacted == f"the server echoed {MASK} back"


# --- output size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((3840, 2160), (1920, 1080)),
        ((321, 241), (320, 240)),
        ((1280, 720), (1280, 720)),
    ],
)
def test_output_size_is_the_largest_even_size_within_the_maximum(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert output_size(*size, PROFILE) == expected


@pytest.mark.parametrize("size", [(1921, 1081), (4096, 2160), (1080, 1920), (2001, 999)])
def test_output_size_keeps_the_aspect_ratio_with_even_sides_within_the_maximum(
    size: tuple[int, int],
) -> None:
    width, height = output_size(*size, PROFILE)
    assert width <= PROFILE.max_width and height <= PROFILE.max_height
    assert width % 2 == 0 and height % 2 == 0
    # Rounding down to even sizes moves each side by at most 2 px.
    assert width == pytest.approx(height * size[0] / size[1], abs=3)


# --- per-stream decisions ------------------------------------------------------------------


def ffmpeg_audio(path: Path, codec: str, rate: int = 48_000, channels: int = 2) -> Path:
    """One second of a tone encoded with ``codec``."""
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate={rate}:duration=1",
            "-ac",
            str(channels),
            "-c:a",
            codec,
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


def video_decision(path: Path, profile: OutputProfile = PROFILE) -> Decision:
    with av.open(str(path)) as container:
        return decide_video(container.streams.video[0], profile)


def audio_decision(path: Path) -> Decision:
    with av.open(str(path)) as container:
        return decide_audio(container.streams.audio[0], PROFILE)


def test_h264_with_bframes_is_transcoded_for_its_bframes(clips: Path) -> None:
    clip = make_clip(
        clips / "high_bframes.mp4", seconds=1, size="320x240", bframes=3, h264_profile="high"
    )
    decision = video_decision(clip)
    assert decision.action is Action.TRANSCODE
    assert "B-frames" in decision.reason


def test_h264_main_without_bframes_is_remuxed(clips: Path) -> None:
    clip = make_clip(clips / "main.mp4", seconds=1, size="320x240", bframes=0, h264_profile="main")
    assert video_decision(clip).action is Action.REMUX


def test_h264_above_the_maximum_size_is_transcoded(clips: Path) -> None:
    clip = make_clip(clips / "main.mp4", seconds=1, size="320x240", bframes=0, h264_profile="main")
    decision = video_decision(clip, OutputProfile(max_width=160, max_height=120))
    assert decision.action is Action.TRANSCODE
    assert "320x240" in decision.reason


def decoder_threads() -> set[str]:
    """Ids of this process's threads that FFmpeg started for a decoder ("av:h264:df0"...)."""
    tasks = Path("/proc/self/task").iterdir()
    return {task.name for task in tasks if (task / "comm").read_text().startswith("av:")}


@contextmanager
def probed(path: Path) -> Iterator[Source]:
    """The source at ``path`` after the probe read its first second; closed afterwards."""
    with av.open(str(path)) as container:
        source = Source(str(path), container, container.streams.video[0], None)
        probe_video(source, window=1.0)
        yield source


def test_the_probe_of_a_picture_up_to_720p_leaves_no_decoder_threads_behind(clips: Path) -> None:
    before = decoder_threads()
    with probed(make_clip(clips / "main.mp4", seconds=1, size="320x240")) as source:
        assert source.video is not None
        assert source.video.codec_context.thread_type == ThreadType.NONE
        assert decoder_threads() - before == set()


def test_a_picture_above_720p_is_decoded_with_frame_threads(clips: Path) -> None:
    with probed(make_clip(clips / "1080p.mp4", seconds=1, size="1920x1080")) as source:
        assert source.video is not None
        assert source.video.codec_context.thread_type == ThreadType.AUTO


def test_stereo_aac_at_48khz_is_remuxed(clips: Path) -> None:
    clip = make_clip(clips / "main.mp4", seconds=1, size="320x240", bframes=0, h264_profile="main")
    assert audio_decision(clip).action is Action.REMUX


@pytest.mark.parametrize(
    ("codec", "name", "codec_name"),
    [
        ("libmp3lame", "tone.mp3", "mp3"),
        ("libopus", "tone.ogg", "opus"),
    ],
)
def test_audio_that_is_not_aac_is_transcoded_for_its_codec(
    clips: Path, codec: str, name: str, codec_name: str
) -> None:
    decision = audio_decision(ffmpeg_audio(clips / name, codec))
    assert decision.action is Action.TRANSCODE
    assert codec_name in decision.reason and "AAC" in decision.reason


def test_aac_with_six_channels_is_transcoded_for_its_channels(clips: Path) -> None:
    decision = audio_decision(ffmpeg_audio(clips / "surround.m4a", "aac", channels=6))
    assert decision.action is Action.TRANSCODE
    assert "channels" in decision.reason


def test_aac_at_22050_hz_is_transcoded_for_its_sample_rate(clips: Path) -> None:
    clip = make_clip(clips / "aac22k.mp4", seconds=1, video=False, audio_rate=22_050)
    decision = audio_decision(clip)
    assert decision.action is Action.TRANSCODE
    assert "sample rate" in decision.reason


# --- source --------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["plain_path", "file_url"])
def test_open_source_refuses_a_local_file(clips: Path, as_url: bool) -> None:
    clip = make_clip(clips / "main.mp4", seconds=1, size="320x240", bframes=0, h264_profile="main")
    target = clip.resolve().as_uri() if as_url else str(clip.resolve())
    with pytest.raises(SourceError):
        open_source(target, Timeouts(source_open=2, source_read=2))


def test_a_push_published_by_ffmpegs_client_instead_says_why_in_its_status() -> None:
    from jobs.records import PushProgress  # noqa: PLC0415
    from pipeline.progress import Progress  # noqa: PLC0415

    progress = Progress(rtmp_fallback="roomcast's RTMP client failed: handshake")
    shown = PushProgress.model_validate(progress.as_dict())
    assert shown.RtmpFallback == "roomcast's RTMP client failed: handshake"
    assert "RtmpFallback" not in Progress().as_dict()


@pytest.mark.parametrize(
    ("source", "output"), [(30, 25), (60, 30), (50, 30), (Fraction(60000, 1001), 30)]
)
def test_a_faster_source_keeps_exactly_the_output_rate_of_pictures(
    source: Fraction, output: int
) -> None:
    cap = FrameRateCap(Fraction(1, output))
    kept = [k for k in range(round(source * 10)) if cap.keep(Fraction(k) / source)]
    assert abs(len(kept) - output * 10) <= 1
    gaps = {Fraction(b - a) / source for a, b in zip(kept, kept[1:], strict=False)}
    assert max(gaps) < Fraction(2, output), "never two slots without a picture"


def _tone_frame(n: int) -> av.AudioFrame:
    """The ``n``-th 1024 samples of a 440 Hz stereo tone at 48 kHz."""
    t = (np.arange(1024) + n * 1024) / 48_000
    wave = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate = 48_000
    return frame
