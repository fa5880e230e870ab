"""The rendition cache shared by worker machines through an S3-compatible store.

The store is moto's S3 server, a real HTTP S3 API in its own process on a free port; each
"machine" is a cache directory of its own on the same bucket. Fake credentials come through
the environment, as boto3's chain reads them in production.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import pytest
from pydantic import ValidationError

from devstack.ports import LOCALHOST, free_port
from devstack.room import LocalRoom
from jobs.settings import Settings
from pipeline.rendition_cache import RenditionCache
from pipeline.rendition_store import S3Store, SharedStoreError
from worker.services import check_rendition_store, rendition_cache

from ..media import make_numbered_clip
from ..s3server import ACCESS_KEY, ENV, SECRET_KEY, UNSET, moto_server
from .test_renditions import play, prepare_clip

PREFIX = "classroom/renditions"
_buckets = itertools.count()


@pytest.fixture(scope="module")
def credentials() -> Iterator[None]:
    """Fake credentials in the environment, as boto3's chain reads them in production."""
    with pytest.MonkeyPatch.context() as env:
        for name in UNSET:
            env.delenv(name, raising=False)
            env.delenv(name.lower(), raising=False)
        for name, value in ENV.items():
            env.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, credentials: None) -> Iterator[str]:
    """moto's S3 server on a free port."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def s3(endpoint: str) -> Any:
    """A plain boto3 client of the server, to look at the bucket from outside."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    """An empty bucket of its own for each test."""
    name = f"renditions-{os.getpid()}-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(endpoint: str, bucket: str) -> Callable[..., S3Store]:
    """Stores on the test's bucket: each machine builds its own, as a worker does."""

    def make(max_bytes: int = 1 << 30, **options: Any) -> S3Store:
        return S3Store(bucket, PREFIX, max_bytes, endpoint_url=endpoint, **options)

    return make


@pytest.fixture(scope="module")
def clips(media: Path, room: LocalRoom) -> dict[int, str]:
    """Two short clips, 320x240 at 25 fps."""
    for n in (1, 2):
        make_numbered_clip(media / f"s3_{n}.mp4", seconds=2, clip_id=10 + n, tone=300 * n)
    return {n: room.media_url(f"s3_{n}.mp4") for n in (1, 2)}


def renditions_in(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every rendition object of the bucket, by key, with its bytes."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
        if o["Key"].endswith(".mp4")
    }


def plays(path: Path) -> int:
    """The number of pictures a rendition decodes to (it is a usable MP4)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for what a background thread does (an upload, a touch)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_a_rendition_prepared_on_one_machine_is_found_by_another_without_encoding(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store], s3: Any, bucket: str
) -> None:
    first = prepare_clip(clips[1], RenditionCache(tmp_path / "a", 1 << 30, store()))
    again = prepare_clip(clips[1], RenditionCache(tmp_path / "b", 1 << 30, store()))
    assert (first.cached, again.cached) == (False, True)
    assert again.path.is_relative_to(tmp_path / "b")
    assert again.path.read_bytes() == first.path.read_bytes()
    key = f"{PREFIX}/{first.format.key}/{first.path.name}"
    assert renditions_in(s3, bucket) == {key: first.path.read_bytes()}
    assert '"Source"' in again.path.with_suffix(".json").read_text(), "its meta came along"


def test_a_push_on_another_machine_remuxes_the_fetched_rendition_and_counts_it(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store]
) -> None:
    prepare_clip(clips[2], RenditionCache(tmp_path / "a", 1 << 30, store()))
    # However loaded the machine running the suite: the wait itself is the next test's.
    machine = RenditionCache(tmp_path / "b", 1 << 30, store(), fetch_wait=30.0)
    sent = play(tmp_path, clips[2], machine)
    assert sent.completed, sent.error
    assert sent.final.renditions is not None
    found = sent.final.renditions
    assert (found["Hits"], found["Fetched"], found["Reencoded"]) == (1, 1, {})


def test_a_push_does_not_wait_for_a_slow_download_and_the_next_one_has_it(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store]
) -> None:
    prepare_clip(clips[2], RenditionCache(tmp_path / "a", 1 << 30, store()))
    machine = RenditionCache(tmp_path / "b", 1 << 30, store(), fetch_wait=0.0)  # too slow
    sent = play(tmp_path, clips[2], machine)
    assert sent.completed, sent.error
    assert sent.final.renditions is not None
    found = sent.final.renditions
    # Encoded as it played; kept by the download or, if it took the lock first, the recording.
    assert (found["Hits"], found["Misses"], found["Fetched"]) == (0, 1, 0)
    wait_for(lambda: any((tmp_path / "b").glob("*/*.mp4")))
    again = play(tmp_path, clips[2], machine).final.renditions
    assert again is not None and (again["Hits"], again["Fetched"]) == (1, 0)


def test_two_machines_preparing_one_clip_at_once_leave_one_rendition_in_the_store(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store], s3: Any, bucket: str
) -> None:
    start = threading.Barrier(2)
    prepared = {}

    def machine(name: str) -> None:
        cache = RenditionCache(tmp_path / name, 1 << 30, store())
        start.wait()
        prepared[name] = prepare_clip(clips[1], cache)

    threads = [threading.Thread(target=machine, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert set(prepared) == {"a", "b"}
    [(_, stored)] = renditions_in(s3, bucket).items()
    assert stored in {p.path.read_bytes() for p in prepared.values()}
    assert plays(prepared["a"].path) == plays(prepared["b"].path) == 2 * 25


def test_the_first_machine_to_publish_a_rendition_wins(
    tmp_path: Path, store: Callable[..., S3Store]
) -> None:
    # The HEAD before the upload is skipped for the second, as when both upload at once:
    # the store itself must refuse it (If-None-Match: *).
    one, two = store(), store()
    two._exists = lambda key: False  # type: ignore[method-assign]
    mine, theirs = tmp_path / "mine.mp4", tmp_path / "theirs.mp4"
    mine.write_bytes(b"first machine's rendition")
    theirs.write_bytes(b"second machine's rendition")
    assert one.publish("fmt", "clip", mine, {"Source": "a"}) is True
    assert two.publish("fmt", "clip", theirs, {"Source": "b"}) is False
    fetched = two.fetch("fmt", "clip", tmp_path / "fetched.mp4")
    assert fetched is not None and fetched.meta == {"Source": "a"}
    assert (tmp_path / "fetched.mp4").read_bytes() == b"first machine's rendition"


@pytest.mark.parametrize("failure", ["unreachable", "no such bucket"])
def test_a_store_that_fails_costs_the_sharing_not_the_preparation(
    tmp_path: Path,
    clips: dict[int, str],
    endpoint: str,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    if failure == "unreachable":
        shared = S3Store(bucket, PREFIX, 1 << 30, endpoint_url=f"http://{LOCALHOST}:{free_port()}")
    else:
        shared = S3Store("no-such-bucket", PREFIX, 1 << 30, endpoint_url=endpoint)
    cache = RenditionCache(tmp_path / "a", 1 << 30, shared)
    with caplog.at_level(logging.WARNING, logger="pipeline.rendition_cache"):
        prepared = prepare_clip(clips[2], cache)
    assert not prepared.cached and plays(prepared.path) == 2 * 25
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "then the store is left alone for a while"
    assert "shared rendition store s3://" in warnings[0]
    assert ACCESS_KEY not in caplog.text and SECRET_KEY not in caplog.text


def write(cache: RenditionCache, identity: str, size: int) -> str:
    """Commit a rendition of ``size`` bytes (published before the claim ends); its key."""
    with cache.claim(identity, "fmt") as claim:
        assert claim is not None
        claim.part.write_bytes(b"x" * size)
        path = claim.commit()
    assert cache.shared is not None
    return cache.shared.key("fmt", path.stem)


def test_the_store_keeps_under_its_size_the_least_recently_used_going_first(
    tmp_path: Path, store: Callable[..., S3Store], s3: Any, bucket: str
) -> None:
    # S3 times objects to the second: a second between uses orders them.
    a = RenditionCache(tmp_path / "a", 1 << 30, store(max_bytes=2500))
    b = RenditionCache(tmp_path / "b", 1 << 30, store(max_bytes=2500, touch_after=0))
    old = write(a, "old", 1000)
    time.sleep(1.1)
    used = write(a, "used", 1000)
    time.sleep(1.1)
    assert b.find("old", "fmt") is not None  # fetched by another machine: touched
    wait_for(lambda: _modified(s3, bucket, old) > _modified(s3, bucket, used))
    new = write(a, "new", 1000)
    assert set(renditions_in(s3, bucket)) == {old, new}
    assert store().usage() == (2, 2000)
    metas = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(k for k in metas if k.endswith(".json")) == sorted(
        k.removesuffix(".mp4") + ".json" for k in (old, new)
    ), "an evicted rendition's meta goes with it"


def _modified(s3: Any, bucket: str, key: str) -> Any:
    return s3.head_object(Bucket=bucket, Key=key)["LastModified"]


def test_a_claim_takes_the_store_s_rendition_instead_of_writing_one(
    tmp_path: Path, store: Callable[..., S3Store]
) -> None:
    # What a push that missed a clip, or a preparation that waited, finds once it holds
    # the lock: another machine's rendition, so nothing is encoded twice.
    write(RenditionCache(tmp_path / "a", 1 << 30, store()), "clip", 1000)
    b = RenditionCache(tmp_path / "b", 1 << 30, store())
    with b.claim("clip", "fmt", wait=False) as claim:
        assert claim is not None and claim.existing == b.path_for("clip", "fmt")
        assert claim.existing.read_bytes() == b"x" * 1000
    assert json.loads(claim.existing.with_suffix(".json").read_text()) == {"Bytes": 1000}


def test_a_rendition_evicted_here_is_fetched_again_from_the_store(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store]
) -> None:
    cache = RenditionCache(tmp_path / "a", max_bytes=1, shared=store())  # room for one
    first = prepare_clip(clips[1], cache)
    prepare_clip(clips[2], cache)
    assert not first.path.exists(), "evicted here by the second"
    again = prepare_clip(clips[1], cache)
    assert (first.cached, again.cached) == (False, True)
    assert again.path == first.path and plays(again.path) == 2 * 25


def test_a_push_s_first_play_is_published_for_the_other_machines(
    tmp_path: Path, clips: dict[int, str], store: Callable[..., S3Store], s3: Any, bucket: str
) -> None:
    sent = play(tmp_path, clips[1], RenditionCache(tmp_path / "a", 1 << 30, store()))
    assert sent.final.renditions is not None and sent.final.renditions["Written"] == 1
    wait_for(lambda: len(renditions_in(s3, bucket)) == 1)  # uploaded in the background
    assert prepare_clip(clips[1], RenditionCache(tmp_path / "b", 1 << 30, store())).cached


def test_a_malformed_store_url_stops_the_settings_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", "https://renditions/classroom")
    with pytest.raises(ValidationError, match="is not s3://bucket or s3://bucket/prefix"):
        Settings()
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", "s3://Renditions_Bucket")
    with pytest.raises(ValidationError, match="'Renditions_Bucket' is not a bucket name"):
        Settings()
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket")
    with pytest.raises(ValidationError, match="without credentials") as raised:
        Settings()
    assert SECRET_KEY not in str(raised.value)
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", "s3://renditions/classroom/")
    assert Settings().renditions_s3_location == ("renditions", "classroom")


def test_a_worker_builds_one_shared_cache_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROOMCAST_RENDITIONS_DIR", str(tmp_path))
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", "s3://renditions/classroom")
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3_ENDPOINT", "http://minio.internal:9000")
    cache = rendition_cache(Settings())
    assert cache is not None and cache.shared is not None
    assert (cache.shared.bucket, cache.shared.prefix) == ("renditions", "classroom")
    assert cache.shared.where == "s3://renditions/classroom at http://minio.internal:9000"
    assert rendition_cache(Settings()) is cache


def test_a_store_without_boto3_is_a_clear_error_at_the_worker_s_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` then raises
    monkeypatch.setenv("ROOMCAST_RENDITIONS_S3", "s3://renditions/classroom")
    with pytest.raises(SystemExit, match=r"boto3 is not installed: pip install 'roomcast\[s3\]'"):
        check_rendition_store(Settings())
    with pytest.raises(SharedStoreError, match="needs boto3"):
        S3Store("renditions", "", 1 << 30)
    monkeypatch.delenv("ROOMCAST_RENDITIONS_S3")
    check_rendition_store(Settings())  # no store, no need
