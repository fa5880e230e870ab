"""The rendition cache's rules, and what identifies a source: no media work here."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.encoders import setup_h264
from pipeline.identity import NoIdentity, source_identity
from pipeline.rendition_cache import RenditionCache
from pipeline.spec import OutputProfile

FORMAT = "320x240@25-test"


def write(cache: RenditionCache, identity: str, size: int, used: float) -> Path:
    """A committed rendition of ``size`` bytes, last used at ``used`` (epoch seconds)."""
    with cache.claim(identity, FORMAT) as claim:
        assert claim is not None
        claim.part.write_bytes(b"x" * size)
        path = claim.commit()
    os.utime(path, (used, used))
    return path


def test_the_least_recently_used_renditions_go_first_past_the_size_limit(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path, max_bytes=2500)
    old = write(cache, "old", 1000, used=1000)
    used = write(cache, "used", 1000, used=2000)
    assert cache.find("old", FORMAT) == old  # now the most recently used
    write(cache, "new", 1000, used=3000)
    assert cache.find("used", FORMAT) is None and used.exists() is False
    assert cache.find("old", FORMAT) == old
    assert cache.usage() == (2, 2000)


def test_renditions_are_found_again_by_a_new_cache_on_the_same_directory(tmp_path: Path) -> None:
    path = write(RenditionCache(tmp_path, 1 << 20), "kept", 10, used=1000)
    assert RenditionCache(tmp_path, 1 << 20).find("kept", FORMAT) == path


def test_an_unfinished_rendition_is_never_found_and_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path, 1 << 20)
    with pytest.raises(RuntimeError), cache.claim("broken", FORMAT) as claim:
        assert claim is not None
        claim.part.write_bytes(b"half")
        raise RuntimeError("the encoder failed")
    assert cache.find("broken", FORMAT) is None
    assert not list(tmp_path.glob("*/*.part"))


def test_a_claim_held_elsewhere_is_refused_when_not_waiting(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path, 1 << 20)
    with cache.claim("busy", FORMAT) as mine, cache.claim("busy", FORMAT, wait=False) as other:
        assert mine is not None and other is None


def test_the_live_encoder_and_a_rendition_share_parameter_sets_whatever_the_threads() -> None:
    # What lets remuxed and encoded pictures follow each other under one FLV header. (The
    # bitrate can change the level: it is part of the rendition format's key.)
    def parameter_sets(threads: int, bitrate: int) -> bytes:
        with av.open(os.devnull, "w", format="flv") as out:
            stream = out.add_stream("libx264", rate=25)
            profile = OutputProfile(video_bitrate=bitrate)
            setup_h264(stream, 320, 240, Fraction(25), profile)
            stream.codec_context.thread_count = threads
            picture = np.zeros((240, 320, 3), np.uint8)
            stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24"))
            return bytes(stream.codec_context.extradata)

    assert parameter_sets(1, 2_500_000) == parameter_sets(8, 2_500_000)


class _Validators(http.server.BaseHTTPRequestHandler):
    etag: str | None = '"v1"'
    modified: str | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(206)
        if self.etag:
            self.send_header("ETag", self.etag)
        if self.modified:
            self.send_header("Last-Modified", self.modified)
        self.send_header("Content-Range", "bytes 0-0/1234")
        self.send_header("Content-Length", "1")
        self.end_headers()
        self.wfile.write(b"x")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """An HTTP server that answers with whatever validators the test sets."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Validators)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    _Validators.etag, _Validators.modified = '"v1"', None


def test_a_signed_url_signed_again_is_the_same_source(server: str) -> None:
    one = source_identity(f"{server}/a.mp4?sign=abc&Expires=1&w=640", timeout=5)
    two = source_identity(f"{server}/a.mp4?sign=xyz&Expires=2&w=640", timeout=5)
    assert one == two and "abc" not in one and "1234" in one
    assert source_identity(f"{server}/a.mp4?sign=abc&Expires=1&w=320", timeout=5) != one


def test_a_changed_file_is_another_source(server: str) -> None:
    before = source_identity(f"{server}/a.mp4", timeout=5)
    _Validators.etag = '"v2"'
    assert source_identity(f"{server}/a.mp4", timeout=5) != before


def test_a_server_without_validators_is_not_cached(server: str) -> None:
    _Validators.etag = None
    with pytest.raises(NoIdentity, match="no ETag or Last-Modified"):
        source_identity(f"{server}/a.mp4", timeout=5)
    _Validators.modified = "Sun, 06 Dec 2026 10:00:00 GMT"
    assert source_identity(f"{server}/a.mp4", timeout=5)


def test_a_dead_writer_s_part_file_goes_at_the_next_eviction(tmp_path: Path) -> None:
    cache = RenditionCache(tmp_path, 1 << 20)
    with cache.claim("busy", FORMAT) as claim:
        assert claim is not None
        claim.part.write_bytes(b"being written")
        orphan = claim.part.with_name(claim.part.name.replace(".", ".dead", 1))
        orphan.write_bytes(b"left by a killed process")
        dead = cache.path_for("dead", FORMAT).with_suffix(".x.part")
        dead.write_bytes(b"nobody holds this one's lock")
        cache.evict()
        assert claim.part.exists(), "a part whose writer lives stays"
        assert orphan.exists(), "same rendition, same live writer"
    assert not dead.exists()


@pytest.mark.parametrize("path", ["/a b.mp4", "/课程/讲解.mp4"])
def test_a_url_with_spaces_or_non_ascii_letters_is_identified_as_ffmpeg_plays_it(
    server: str, path: str
) -> None:
    assert source_identity(f"{server}{path}", timeout=5).startswith(server)


def test_an_unreachable_source_is_uncached_with_its_secrets_masked() -> None:
    with pytest.raises(NoIdentity) as raised:
        source_identity("http://127.0.0.1:9/a.mp4?sign=SECRET", timeout=2)
    assert "SECRET" not in str(raised.value)
