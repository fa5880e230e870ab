"""Renditions: clips encoded once, then remuxed by every push, re-encoding only the bridges.

Every player behaviour also runs over prepared renditions in test_player.py (its ``clips``
fixture). Here: that a prepared clip really is remuxed (its packets reach the room as they
are), what is still re-encoded and why, prepared and unprepared clips on one publish, and
the cache's rules (one rendition for concurrent writers, least recently used first out,
identity by the server's validators).
"""

from __future__ import annotations

import multiprocessing
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from devstack.room import LocalRoom
from jobs.commands import Pause, Resume, Switch, Volume
from pipeline import OutputProfile, Timeouts
from pipeline.identity import source_identity
from pipeline.rendition_cache import RenditionCache
from pipeline.renditions import Prepared, format_of, prepare
from pipeline.source import open_source

from ..filerooms import Sent, push_to_files, spec_for
from ..media import make_numbered_clip
from .test_player import FPS, assert_seamless, first_of

GOP = 2 * FPS  # the room format's IDR interval (OutputProfile.gop_seconds = 2)


@pytest.fixture(scope="module")
def urls(media: Path, room: LocalRoom) -> dict[int, str]:
    """Clip 1: 6 s, clip 2: 4 s, clip 3: 3 s; 320x240 at 25 fps, each its own tone."""
    for n, seconds, tone in ((1, 6, 440), (2, 4, 660), (3, 3, 880)):
        make_numbered_clip(media / f"rend{n}.mp4", seconds=seconds, clip_id=n, tone=tone)
    return {n: room.media_url(f"rend{n}.mp4") for n in (1, 2, 3)}


def prepare_clip(url: str, cache: RenditionCache, first: str | None = None) -> Prepared:
    """Prepare ``url`` in the format of a push that starts with ``first`` (default: itself)."""
    timeouts = Timeouts()
    with _opened(first or url) as source:
        fmt = format_of(source, OutputProfile())
    identity = source_identity(url, timeouts.source_open)
    with _opened(url) as source:
        return prepare(source, cache, OutputProfile(), identity, fmt=fmt)


class _opened:
    """A source opened for the length of a ``with``."""

    def __init__(self, url: str) -> None:
        self._source = open_source(url, Timeouts())

    def __enter__(self):  # noqa: ANN204 - a Source
        return self._source

    def __exit__(self, *exc: object) -> None:
        self._source.close()


@pytest.fixture
def cache(tmp_path: Path) -> RenditionCache:
    """An empty cache of its own for each test."""
    return RenditionCache(tmp_path / "renditions", max_bytes=1 << 30)


def play(tmp_path: Path, url: str, cache: RenditionCache, commands=(), **fields) -> Sent:  # noqa: ANN001, ANN003
    """A switchable push of ``url`` with the cache."""
    spec = spec_for(url, switchable=True, rendition_cache=cache, **fields)
    return push_to_files(tmp_path / "room", spec, commands)


def video_payloads(path: Path) -> Iterator[bytes]:
    """The bytes of every non-key picture of an MP4 or FLV file, in order."""
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            if packet.size and not packet.is_keyframe:
                yield bytes(packet)


def test_a_prepared_clip_reaches_the_room_packet_for_packet(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    rendition = prepare_clip(urls[1], cache)
    assert not rendition.cached
    sent = play(tmp_path, urls[1], cache)
    assert sent.completed, sent.error
    assert list(video_payloads(sent.publish.path)) == list(video_payloads(rendition.path))
    assert sent.final.renditions == {
        "Format": {"Width": 320, "Height": 240, "Fps": 25.0},
        "Hits": 1,
        "Misses": 0,
        "Uncached": 0,
        "Written": 0,
        "Reencoded": {},
    }
    assert [f.number for f in sent.publish.frames] == list(range(6 * FPS))
    assert_seamless(sent.publish)


def test_preparing_a_clip_again_finds_the_rendition(
    urls: dict[int, str], cache: RenditionCache
) -> None:
    first, again = prepare_clip(urls[3], cache), prepare_clip(urls[3], cache)
    assert (first.cached, again.cached) == (False, True)
    assert again.path == first.path


def test_prepared_and_unprepared_clips_follow_each_other_on_one_publish(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    # 1 (encoded as it plays) → 2 (remuxed) → 3 (encoded): each join is a seam of one kind.
    prepare_clip(urls[2], cache, first=urls[1])
    commands = [(1.5, Switch(VideoSrc=urls[2])), (3.0, Switch(VideoSrc=urls[3]))]
    sent = play(tmp_path, urls[1], cache, commands)
    assert sent.completed, sent.error
    frames = sent.publish.frames
    assert [f.clip for f in frames] == sorted(f.clip for f in frames)
    for clip in (2, 3):
        start = first_of(frames, clip)
        # Each clip from its first picture, decoded right: the encoder's picture after
        # remuxed ones refers to nothing the viewer lacks.
        numbers = [f.number for f in frames[start:] if f.clip == clip]
        assert numbers == list(range(len(numbers)))
    assert_seamless(sent.publish)
    assert sent.final.renditions is not None
    assert (sent.final.renditions["Hits"], sent.final.renditions["Misses"]) == (1, 2)
    assert sent.final.renditions["Reencoded"] == {"clip": 2}


def test_a_start_inside_a_gop_is_bridged_to_the_next_idr_and_only_that_is_reencoded(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    rendition = prepare_clip(urls[1], cache)
    sent = play(tmp_path, urls[1], cache, start_position=2.6)  # IDRs at 0, 2, 4 s
    numbers = [f.number for f in sent.publish.frames]
    assert numbers == list(range(numbers[0], 6 * FPS))
    assert abs(numbers[0] - 2.6 * FPS) <= 1
    assert sent.final.renditions is not None
    assert sent.final.renditions["Reencoded"] == {"bridge": 1}
    # From the IDR at 4 s on, the rendition's own pictures.
    remuxed = list(video_payloads(rendition.path))[-(2 * FPS - 1) :]
    assert list(video_payloads(sent.publish.path))[-len(remuxed) :] == remuxed
    assert_seamless(sent.publish)


def test_a_paused_remuxed_clip_holds_its_picture_and_resumes_through_a_bridge(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    prepare_clip(urls[1], cache)
    sent = play(tmp_path, urls[1], cache, [(1.3, Pause()), (3.0, Resume())])
    numbers = [f.number for f in sent.publish.frames]
    held = max(set(numbers), key=numbers.count)
    assert abs(held - 1.3 * FPS) <= 2 and numbers.count(held) >= 15
    resumed = [n for n in numbers[numbers.index(held) :] if n != held]
    assert resumed == list(range(held + 1, 6 * FPS)), "resume continues where it paused"
    assert sent.final.renditions is not None
    assert sent.final.renditions["Reencoded"] == {"pause": 1, "bridge": 1}
    assert_seamless(sent.publish, picture_gap=0.1 + 0.005)


def sound_level(path: Path, start: float, end: float) -> float:
    """The RMS level of the sound between two output times."""
    with av.open(str(path)) as container:
        chunks = [
            frame.to_ndarray()
            for frame in container.decode(audio=0)
            if start <= float(frame.pts * frame.time_base) < end
        ]
    return float(np.sqrt(np.mean(np.concatenate(chunks, axis=-1) ** 2)))


def test_a_volume_change_reencodes_the_sound_only(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    prepare_clip(urls[1], cache)
    sent = play(tmp_path, urls[1], cache, [(2.0, Volume(Volume=25))])
    assert sent.final.renditions is not None
    assert sent.final.renditions["Reencoded"] == {"volume": 1}
    before = sound_level(sent.publish.path, 0.5, 1.9)
    after = sound_level(sent.publish.path, 2.5, 5.5)
    assert after == pytest.approx(before / 4, rel=0.15)
    assert [f.number for f in sent.publish.frames] == list(range(6 * FPS))
    assert_seamless(sent.publish)


def test_a_push_in_another_format_does_not_use_the_rendition(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache, media: Path, room: LocalRoom
) -> None:
    make_numbered_clip(media / "rend_vga.mp4", seconds=2, clip_id=4, size=(640, 480))
    prepare_clip(urls[3], cache)  # in 320x240
    sent = play(tmp_path, room.media_url("rend_vga.mp4"), cache, playlist=(urls[3],))
    assert sent.final.renditions is not None
    assert (sent.final.renditions["Hits"], sent.final.renditions["Misses"]) == (0, 2)
    assert {(f.width, f.height) for f in sent.publish.frames} == {(640, 480)}


def _prepare_in_a_process(args: tuple[str, str]) -> bool:
    url, root = args
    return prepare_clip(url, RenditionCache(Path(root), 1 << 30)).cached


def test_two_processes_preparing_one_clip_make_one_rendition(
    urls: dict[int, str], cache: RenditionCache
) -> None:
    # Spawned, not forked: a fork of this threaded process could inherit a held lock.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=3, mp_context=spawn) as pool:
        cached = list(pool.map(_prepare_in_a_process, [(urls[2], str(cache.root))] * 3))
    assert sorted(cached) == [False, True, True]
    assert cache.usage()[0] == 1
    assert not list(cache.root.glob("*/*.part"))


def test_the_first_play_of_a_clip_keeps_its_rendition_for_the_next(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    first = play(tmp_path / "first", urls[3], cache, playlist=(urls[2],))
    assert first.final.renditions is not None
    assert first.final.renditions["Written"] == 2
    assert_seamless(first.publish)
    again = play(tmp_path / "again", urls[3], cache, playlist=(urls[2],))
    assert again.final.renditions is not None
    assert (again.final.renditions["Hits"], again.final.renditions["Reencoded"]) == (2, {})
    frames = again.publish.frames
    assert [(f.clip, f.number) for f in frames] == [(3, n) for n in range(3 * FPS)] + [
        (2, n) for n in range(4 * FPS)
    ]
    assert_seamless(again.publish)


def test_a_clip_cut_short_keeps_no_rendition(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    sent = play(tmp_path, urls[1], cache, [(2.0, Switch(VideoSrc=urls[3]))])
    assert sent.final.renditions is not None
    assert sent.final.renditions["Written"] == 1  # clip 3, played whole; not clip 1
    assert cache.usage()[0] == 1
    assert not list(cache.root.glob("*/*.part"))


@pytest.fixture(scope="module")
def bframes(media: Path, room: LocalRoom) -> str:
    """A 4 s clip with B-frames: a plain push must re-encode it."""
    make_numbered_clip(media / "rend_bframes.mp4", seconds=4, clip_id=5, bframes=2)
    return room.media_url("rend_bframes.mp4")


def push_plain(tmp_path: Path, url: str, cache: RenditionCache, **fields) -> Sent:  # noqa: ANN003
    """A plain (not switchable) push of ``url`` with the cache."""
    return push_to_files(tmp_path / "room", spec_for(url, rendition_cache=cache, **fields))


def test_the_second_plain_push_of_a_file_with_b_frames_remuxes_the_first_one_s_encoding(
    tmp_path: Path, bframes: str, cache: RenditionCache
) -> None:
    first = push_plain(tmp_path / "first", bframes, cache)
    assert first.completed and first.result is not None, first.error
    assert first.result.reason == "the source ended"
    assert {s.action for s in first.final.streams} == {"transcode"}
    assert "once into a rendition" in first.final.streams[0].reason
    assert first.final.renditions is not None and first.final.renditions["Written"] == 1
    assert first.events == [] and first.final.player is None  # no player to speak of
    again = push_plain(tmp_path / "again", bframes, cache)
    assert again.completed, again.error
    assert again.final.renditions is not None
    assert (again.final.renditions["Hits"], again.final.renditions["Reencoded"]) == (1, {})
    for sent in (first, again):
        assert [f.number for f in sent.publish.frames] == list(range(4 * FPS))
        assert not sent.publish.has_b_frames()
        assert_seamless(sent.publish)


def test_a_resumed_plain_push_bridges_into_the_rendition(
    tmp_path: Path, bframes: str, cache: RenditionCache
) -> None:
    push_plain(tmp_path / "first", bframes, cache)
    resumed = push_plain(tmp_path / "resumed", bframes, cache, start_position=1.5)
    assert resumed.final.renditions is not None
    assert resumed.final.renditions["Reencoded"] == {"bridge": 1}
    numbers = [f.number for f in resumed.publish.frames]
    assert abs(numbers[0] - 1.5 * FPS) <= 1 and numbers == list(range(numbers[0], 4 * FPS))


def test_a_file_cut_short_fails_as_ended_early_and_leaves_no_rendition(
    tmp_path: Path, media: Path, room: LocalRoom, cache: RenditionCache
) -> None:
    made = make_numbered_clip(media / "rend_cut_src.mp4", seconds=6, clip_id=6, bframes=2)
    whole = media / "rend_cut_whole.mp4"  # moov first, as an upload cut short has it
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(made), "-c", "copy", "-movflags", "+faststart",
         str(whole)],
        check=True,
    )  # fmt: skip
    data = whole.read_bytes()
    (media / "rend_cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    sent = push_plain(tmp_path, room.media_url("rend_cut.mp4"), cache)
    assert sent.error is not None and sent.error.code == "SourceEndedEarly", sent.error
    assert cache.usage()[0] == 0


def test_an_unprepared_clip_after_a_prepared_one_repeats_no_sound(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache
) -> None:
    # The push's first AAC encoder starts after remuxed sound: its priming frame would
    # land on sound already sent.
    prepare_clip(urls[3], cache)
    sent = play(tmp_path, urls[3], cache, [(1.0, Switch(VideoSrc=urls[1]))])
    assert sent.final.renditions is not None
    assert (sent.final.renditions["Hits"], sent.final.renditions["Reencoded"]) == (1, {"clip": 1})
    assert_seamless(sent.publish)


def test_a_clip_whose_opening_sound_went_under_the_last_one_is_not_kept(
    tmp_path: Path, urls: dict[int, str], cache: RenditionCache, media: Path, room: LocalRoom
) -> None:
    # Clip "long": 2 s of picture, 2.6 s of sound. The next clip joins on the picture's end,
    # so its first 0.6 s of sound are dropped as it plays: no rendition of it.
    long = media / "rend_long_sound.mp4"
    if not long.exists():
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-t", "2", "-i", str(media / "rend3.mp4"),
             "-f", "lavfi", "-t", "2.6", "-i", "sine=frequency=300:sample_rate=48000",
             "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(long)],
            check=True,
        )  # fmt: skip
    sent = play(tmp_path, room.media_url(long.name), cache, playlist=(urls[2],))
    assert sent.completed, sent.error
    assert sent.final.renditions is not None
    assert sent.final.renditions["Written"] == 1  # the long-sounding clip, not clip 2
    again = play(tmp_path / "again", urls[2], cache)
    assert again.final.renditions is not None and again.final.renditions["Hits"] == 0


def test_a_cache_that_cannot_be_used_costs_the_saving_not_the_push(
    tmp_path: Path, urls: dict[int, str]
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache should be")
    sent = play(tmp_path, urls[3], RenditionCache(blocked, 1 << 30), playlist=(urls[2],))
    assert sent.completed, sent.error
    assert sent.final.renditions is not None and sent.final.renditions["Uncached"] == 2
    assert_seamless(sent.publish)
