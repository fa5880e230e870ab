"""[hardening]: one publisher per user and room, Redis faults at submit, hostile input, load.

Every test runs against real processes: redis-server, gunicorn, Celery workers and the
nginx-rtmp room. Tests that need a store of their own (no worker consuming, a Redis that is
stopped, API keys, the SSRF guard) start an API process on their own Redis database.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import pytest
import redis

from bench.submit_load import count_records, request_bodies, submit_all
from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs.settings import Settings
from jobs.stops import Stop, StopCause
from jobs.store import publisher_key, secrets_key
from jobs.urlguard import blocked_reason

from ..conftest import job_for
from ..stack import Api, ClientApi, settings_of, start_api, start_worker, stop

APP = 1400000001  # job_for's SdkAppId
FINAL = {"succeeded", "failed", "stopped"}


def db_url(server: RedisServer, db: int) -> str:
    """The URL of one database of ``server`` (each own stack gets its own)."""
    return server.url.rsplit("/", 1)[0] + f"/{db}"


def flushed(url: str) -> str:
    """Empty the database at ``url`` (left over from an earlier run) and return the URL."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def idle_api(
    redis_server: RedisServer, service_env: dict[str, str]
) -> Iterator[tuple[Api, redis.Redis]]:
    """An API on Redis db 11 that no worker consumes: accepted pushes stay queued."""
    env = dict(service_env, ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 11)))
    client = redis.Redis.from_url(env["ROOMCAST_REDIS_URL"])
    yield ClientApi(settings_of(env)), client
    client.close()


@pytest.fixture(scope="module")
def own_stack(
    redis_server: RedisServer, service_env: dict[str, str], logs: Path
) -> Iterator[tuple[Api, redis.Redis]]:
    """An API and a one-push worker on Redis db 10, so that a second push waits queued."""
    env = dict(service_env, ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 10)))
    worker = start_worker(env, logs / "own_worker.log", "hardening", concurrency=1)
    proc, base = start_api(env, logs / "own_api.log")
    client = redis.Redis.from_url(env["ROOMCAST_REDIS_URL"])
    yield Api(base), client
    client.close()
    stop(proc)
    stop(worker)


def running_push(api: Api, room: LocalRoom, clip: str, room_name: str) -> str:
    """Start a push of ``clip`` and wait until it publishes."""
    rid = api.submit(**job_for(room, clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    return rid


# --- no duplicate publishers ---------------------------------------------------------------


def test_a_second_push_as_the_same_user_into_the_same_room_answers_409_naming_the_first(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    first = running_push(api, room, long_clip, room_name)
    answer = api.call("POST", "/v1/pushes", job_for(room, long_clip, room_name))
    assert answer.status == 409, answer.body
    error = answer.body["Error"]
    assert error["Code"] == "PublisherBusy"
    assert error["RequestId"] == first
    assert "Replace" in error["Message"]
    assert api.status(first)["State"] == "running"
    api.call("POST", f"/v1/pushes/{first}/stop")


def test_a_queued_push_holds_its_publisher_in_a_redis_key_naming_it(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom, room_name: str
) -> None:
    api, client = idle_api
    first = api.submit(**job_for(room, "missing.mp4", room_name))
    assert api.status(first)["State"] == "queued"
    assert client.get(publisher_key(APP, room_name, "pusher_1")) == first.encode()
    answer = api.call("POST", "/v1/pushes", job_for(room, "missing.mp4", room_name))
    assert answer.status == 409, answer.body
    assert answer.body["Error"]["RequestId"] == first


def test_other_users_rooms_and_applications_publish_side_by_side(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom, room_name: str
) -> None:
    api, _ = idle_api
    api.submit(**job_for(room, "missing.mp4", room_name))
    api.submit(**job_for(room, "missing.mp4", room_name, UserId="pusher_2"))
    api.submit(**job_for(room, "missing.mp4", f"{room_name}_b"))
    api.submit(**job_for(room, "missing.mp4", room_name, SdkAppId=1400000002))


def test_a_numeric_roomid_and_the_strroomid_of_its_digits_are_the_same_publisher(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom
) -> None:
    api, _ = idle_api
    numeric = int(time.time() * 1000) % 4_000_000_000 + 1
    first = api.submit(**job_for(room, "missing.mp4", "unused", RoomId=numeric, StrRoomId=None))
    answer = api.call("POST", "/v1/pushes", job_for(room, "missing.mp4", str(numeric)))
    assert answer.status == 409, answer.body
    assert answer.body["Error"]["RequestId"] == first


def test_concurrent_submissions_for_one_publisher_accept_exactly_one(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom, room_name: str
) -> None:
    api, _ = idle_api
    body = job_for(room, "missing.mp4", room_name)
    start = threading.Barrier(16)
    answers: list[Any] = []

    def post() -> None:
        start.wait()
        answers.append(api.call("POST", "/v1/pushes", body))

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    accepted = [a for a in answers if a.status == 202]
    assert len(answers) == 16
    assert len(accepted) == 1, [a.status for a in answers]
    winner = accepted[0].body["RequestId"]
    assert all(
        a.status == 409 and a.body["Error"]["RequestId"] == winner
        for a in answers
        if a is not accepted[0]
    )


def test_the_publisher_is_free_again_once_its_push_has_ended(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    first = api.submit(**job_for(room, "missing.mp4", room_name))
    assert api.wait_state(first, FINAL)["State"] == "failed"
    second = api.submit(**job_for(room, "missing.mp4", room_name))
    assert api.wait_state(second, FINAL)["State"] == "failed"


def test_replace_stops_the_running_push_and_starts_the_new_one_with_one_publisher(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    first = running_push(api, room, long_clip, room_name)
    answer = api.call("POST", "/v1/pushes", job_for(room, long_clip, room_name, Replace=True))
    assert answer.status == 202, answer.body
    second = answer.body["RequestId"]
    old = api.status(first)
    assert old["State"] == "stopped", old
    assert old["Reason"] == f"replaced by push {second} (Replace=true)", old
    api.wait_state(second, {"running"}, timeout=15)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert room.publishers(room_name) <= 1
        time.sleep(0.1)
    assert room.publishers(room_name) == 1
    assert api.call("POST", f"/v1/pushes/{second}/stop").status == 200


def test_replace_of_a_queued_push_cancels_it_before_it_starts(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom, room_name: str
) -> None:
    api, client = idle_api
    first = api.submit(**job_for(room, "missing.mp4", room_name))
    second = api.submit(**job_for(room, "missing.mp4", room_name, Replace=True))
    old = api.status(first)
    assert old["State"] == "stopped", old
    assert old["Reason"] == f"replaced by push {second} (Replace=true), before it started", old
    assert client.get(publisher_key(APP, room_name, "pusher_1")) == second.encode()


def test_replace_when_nothing_publishes_is_a_plain_submit(
    idle_api: tuple[Api, redis.Redis], room: LocalRoom, room_name: str
) -> None:
    api, _ = idle_api
    api.submit(**job_for(room, "missing.mp4", room_name, Replace=True))


def test_replace_must_be_a_boolean(api: Api, room: LocalRoom, room_name: str) -> None:
    answer = api.call("POST", "/v1/pushes", job_for(room, "missing.mp4", room_name, Replace=1))
    assert answer.status == 400 and answer.body["Error"]["Field"] == "Replace", answer.body


def test_a_worker_refuses_to_publish_under_a_lease_another_live_push_holds(
    own_stack: tuple[Api, redis.Redis], room: LocalRoom, long_clip: str, room_name: str
) -> None:
    api, client = own_stack
    busy = running_push(api, room, long_clip, f"{room_name}_busy")  # the only worker slot
    early = api.submit(**job_for(room, long_clip, room_name))
    # The lease of the queued push is lost (as when a Redis without persistence restarts),
    # so the API lets a second push in for the same publisher: now two are queued.
    client.delete(publisher_key(APP, room_name, "pusher_1"))
    late = api.submit(**job_for(room, long_clip, room_name))
    api.call("POST", f"/v1/pushes/{busy}/stop")
    refused = api.wait_state(early, FINAL, timeout=20)
    assert refused["State"] == "failed", refused
    assert refused["Error"]["Code"] == "PublisherBusy"
    assert late in refused["Error"]["Message"]
    assert refused["Progress"] is None
    api.wait_state(late, {"running"}, timeout=15)
    assert api.call("POST", f"/v1/pushes/{late}/stop").status == 200


def test_a_push_that_loses_its_lease_to_another_live_push_stops_publishing(
    own_stack: tuple[Api, redis.Redis], room: LocalRoom, long_clip: str, room_name: str
) -> None:
    api, client = own_stack
    rid = running_push(api, room, long_clip, room_name)
    other = api.submit(**job_for(room, long_clip, f"{room_name}_other"))  # queued behind it
    client.set(publisher_key(APP, room_name, "pusher_1"), other)
    final = api.wait_state(rid, FINAL, timeout=10)
    assert final["State"] == "stopped"
    assert final["Reason"] == Stop(StopCause.LEASE_LOST).reason
    api.wait_state(other, {"running"}, timeout=15)
    api.call("POST", f"/v1/pushes/{other}/stop")


# --- Redis down at submit ------------------------------------------------------------------


def test_submitting_while_redis_is_down_answers_503_then_works_again_when_it_is_back(
    service_env: dict[str, str], room: LocalRoom, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    api = ClientApi(settings_of(dict(service_env, ROOMCAST_REDIS_URL=server.url)))
    try:
        body = job_for(room, "missing.mp4", "redis_down")
        server.stop()
        answer = api.call("POST", "/v1/pushes", body)
        assert answer.status == 503, answer.body
        assert answer.body["Error"]["Code"] == "ServiceUnavailable"
        assert "Redis" in answer.body["Error"]["Message"]
        assert api.call("GET", "/healthz").status == 503
        server.start()
        deadline = time.monotonic() + 10
        # The first call after the restart may still meet a pooled connection that died.
        while (answer := api.call("POST", "/v1/pushes", body)).status == 503:
            assert time.monotonic() < deadline, answer.body
            time.sleep(0.2)
        assert answer.status == 202, answer.body
        assert count_records(server.url) == 1
    finally:
        server.stop()


def test_a_push_that_cannot_be_enqueued_leaves_no_record_and_no_lease(
    service_env: dict[str, str], room: LocalRoom, tmp_path: Path
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        api = ClientApi(settings_of(dict(service_env, ROOMCAST_REDIS_URL=server.url)))
        client = redis.Redis.from_url(server.url)
        try:
            # The job store's keys stay writable; Celery's queue keys do not: the record is
            # written, then sending the task fails.
            client.execute_command("ACL", "SETUSER", "default", "resetkeys", "~roomcast:*")
            body = job_for(room, "missing.mp4", "no_queue")
            answer = api.call("POST", "/v1/pushes", body)
            assert answer.status == 503, answer.body
            assert answer.body["Error"]["Code"] == "ServiceUnavailable"
            assert "not accepted" in answer.body["Error"]["Message"]
            assert client.keys("roomcast:job:*") == []
            assert client.zcard("roomcast:jobs") == 0
            assert client.get(publisher_key(APP, "no_queue", "pusher_1")) is None
            client.execute_command("ACL", "SETUSER", "default", "allkeys")
            assert api.call("POST", "/v1/pushes", body).status == 202
        finally:
            client.close()


# --- hostile sources: FFmpeg reads nothing local -----------------------------------------------


@pytest.fixture(scope="module")
def local_clip(logs: Path) -> Path:
    """A valid 2 s MPEG-TS clip outside the room's web root: reachable only as a local file."""
    path = logs / "private" / "clip.ts"
    path.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
         "-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-c:a", "aac", "-b:a", "64k",
         "-f", "mpegts", str(path)],
        check=True,
    )  # fmt: skip
    with av.open(str(path)) as container:  # FFmpeg itself reads it: the refusal is roomcast's
        assert any(True for _ in container.demux())
    return path


def playlist(media: Path, name: str, segment: str) -> str:
    """Write an HLS VOD playlist with one segment into the room's web root; its file name."""
    (media / name).write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
        f"#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n"
    )
    return name


def hostile_segments(clip: Path) -> dict[str, str]:
    """Playlist entries that would read ``clip`` (or /etc/passwd) from the worker's disk."""
    data = base64.b64encode(clip.read_bytes()).decode()
    return {
        "file_media": f"file://{clip}",
        "file_passwd": "file:///etc/passwd",
        "concat": f"concat:{clip}|{clip}",
        "subfile": f"subfile,,start,0,end,0,,:{clip}",
        "data_uri": f"data:video/mp2t;base64,{data}",
    }


def test_an_hls_playlist_over_http_of_a_served_segment_pushes(
    api: Api, room: LocalRoom, media: Path, local_clip: Path, room_name: str
) -> None:
    # The control for the test below: the same clip, listed by its HTTP URL, does push.
    (media / "served_clip.ts").write_bytes(local_clip.read_bytes())
    name = playlist(media, f"{room_name}.m3u8", "served_clip.ts")
    final = api.wait_state(api.submit(**job_for(room, name, room_name)), FINAL, timeout=20)
    assert final["State"] == "succeeded", final
    assert final["Progress"]["Packets"] > 0


def test_an_hls_playlist_listing_local_files_or_data_uris_never_reads_them(
    api: Api, room: LocalRoom, media: Path, local_clip: Path, room_name: str, worker_log: Path
) -> None:
    jobs = {
        kind: api.submit(
            **job_for(room, playlist(media, f"{room_name}_{kind}.m3u8", seg), f"{room_name}_{kind}")
        )
        for kind, seg in hostile_segments(local_clip).items()
    }
    passwd_line = Path("/etc/passwd").read_text().splitlines()[0]
    for kind, rid in jobs.items():
        final = api.wait_state(rid, FINAL, timeout=20)
        assert final["State"] == "failed", (kind, final)
        assert final["Progress"] is None, (kind, final)  # never reached the room
        assert passwd_line not in json.dumps(final)
        assert room.publishers(f"{room_name}_{kind}") == 0
    assert passwd_line not in worker_log.read_text(errors="replace")


def test_a_source_that_bypassed_the_api_is_still_read_only_over_network_protocols(
    own_stack: tuple[Api, redis.Redis],
    room: LocalRoom,
    long_clip: str,
    local_clip: Path,
    room_name: str,
) -> None:
    # The protocol whitelist itself, without the HLS demuxer's own checks: a file:, concat:,
    # subfile: or data: VideoSrc written straight into Redis (the API refuses such schemes).
    api, client = own_stack
    busy = running_push(api, room, long_clip, f"{room_name}_busy")
    urls = {
        kind: url for kind, url in hostile_segments(local_clip).items() if kind != "file_passwd"
    }
    queued = {}
    for kind, url in urls.items():
        rid = api.submit(**job_for(room, "missing.mp4", f"{room_name}_{kind}"))
        secrets = json.loads(client.get(secrets_key(rid)) or b"{}")
        client.set(secrets_key(rid), json.dumps(dict(secrets, VideoSrc=url)), keepttl=True)
        queued[kind] = rid
    api.call("POST", f"/v1/pushes/{busy}/stop")
    for kind, rid in queued.items():
        final = api.wait_state(rid, FINAL, timeout=20)
        assert final["State"] == "failed", (kind, final)
        assert final["Error"]["Code"] == "SourceError", (kind, final)
        assert "not a URL roomcast reads" in final["Error"]["Message"], (kind, final)
        assert final["Progress"] is None


# --- SSRF guard (ROOMCAST_BLOCK_PRIVATE_ADDRESSES) -------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),  # reserved: Python files 240/4 under is_private first
        ("100.64.0.1", "not globally routable"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_blocked_reason_names_the_kind_of_internal_address(
    address: str, reason: str | None
) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.fixture(scope="module")
def guard_api(redis_server: RedisServer, service_env: dict[str, str]) -> Api:
    """An API with the SSRF guard on (Redis db 13, no worker)."""
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 13)),
        ROOMCAST_BLOCK_PRIVATE_ADDRESSES="true",
    )
    return ClientApi(settings_of(env))


@pytest.mark.parametrize(
    ("src", "reason"),
    [
        ("http://127.0.0.1:8080/a.mp4", "loopback"),
        ("http://localhost/a.mp4", "loopback"),
        ("http://[::1]/a.mp4", "loopback"),
        ("http://2130706433/a.mp4", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://[::ffff:127.0.0.1]/a.mp4", "loopback"),
        ("http://10.0.0.8/a.mp4", "private"),
        ("https://192.168.0.10/a.mp4", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("rtmp://224.0.0.1/live/x", "multicast"),
        ("http://0.0.0.0/a.mp4", "unspecified"),
        ("http://no-such-host.invalid/a.mp4", "could not be resolved"),
    ],
)
def test_with_the_guard_on_internal_sources_are_refused_at_submit(
    guard_api: Api, room: LocalRoom, room_name: str, src: str, reason: str
) -> None:
    answer = guard_api.call("POST", "/v1/pushes", job_for(room, "x", room_name, VideoSrc=src))
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == "VideoSrc"
    assert reason in answer.body["Error"]["Message"]


@pytest.mark.parametrize("src", ["http://93.184.215.14/v.mp4", "rtmp://[2001:4860::8888]/l/s"])
def test_with_the_guard_on_public_sources_are_accepted(
    guard_api: Api, room: LocalRoom, room_name: str, src: str
) -> None:
    guard_api.submit(**job_for(room, "x", room_name, VideoSrc=src))


def test_the_guard_is_on_unless_a_deployment_turns_it_off() -> None:
    assert Settings().block_private_addresses is True


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CallbackUrl", "http://169.254.169.254/hook"),
        ("RedisHost", "127.0.0.1"),
        ("Playlist", [{"VideoSrc": "http://10.0.0.8/b.mp4", "ClipId": "b"}]),
    ],
)
def test_with_the_guard_on_every_address_a_caller_names_is_checked_at_submit(
    guard_api: Api, room: LocalRoom, room_name: str, field: str, value: object
) -> None:
    public = {"VideoSrc": "http://93.184.215.14/v.mp4"}
    extra = {"Redis": True} if field == "RedisHost" else {}
    body = job_for(room, "x", room_name, **public, **extra, **{field: value})
    answer = guard_api.call("POST", "/v1/pushes", body)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == field


def test_a_private_network_a_deployment_allows_passes_the_guard(
    redis_server: RedisServer, service_env: dict[str, str], room: LocalRoom, room_name: str
) -> None:
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 13)),
        ROOMCAST_BLOCK_PRIVATE_ADDRESSES="true",
        ROOMCAST_GUARD_ALLOW_NETWORKS="10.0.0.0/8,127.0.0.0/8",
    )
    api = ClientApi(settings_of(env))
    body = job_for(room, "x", room_name, VideoSrc="http://93.184.215.14/v.mp4", Redis=True)
    api.submit(**body, RedisHost="10.1.2.3")
    refused = api.call("POST", "/v1/pushes", dict(body, RedisHost="192.168.1.5"))
    assert refused.status == 400 and refused.body["Error"]["Field"] == "RedisHost"


@contextmanager
def guarded_worker(
    redis_server: RedisServer,
    service_env: dict[str, str],
    logs: Path,
    name: str,
    worker_env: dict[str, str] | None = None,
) -> Iterator[Api]:
    """A worker with the guard on (and ``worker_env``) behind an API without it (Redis
    db 14): the API stands for a name that resolved publicly when it was submitted."""
    env = dict(service_env, ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 14)))
    guarded = dict(env, ROOMCAST_BLOCK_PRIVATE_ADDRESSES="true", **(worker_env or {}))
    worker = start_worker(guarded, logs / f"{name}_worker.log", name)
    proc, base = start_api(env, logs / f"{name}_api.log")
    try:
        yield Api(base)
    finally:
        stop(proc)
        stop(worker)


def test_with_the_guard_on_the_worker_checks_again_before_opening(
    redis_server: RedisServer,
    service_env: dict[str, str],
    room: LocalRoom,
    compat_clip: str,
    room_name: str,
    logs: Path,
) -> None:
    # An API without the guard stands for a name that resolved publicly at submit and
    # privately by the time the worker opens it.
    with guarded_worker(redis_server, service_env, logs, "guard") as api:
        final = api.wait_state(api.submit(**job_for(room, compat_clip, room_name)), FINAL)
        assert final["State"] == "failed", final
        assert final["Error"]["Code"] == "SourceAddressBlocked"
        assert "127.0.0.1, a loopback address" in final["Error"]["Message"]
        assert final["Progress"] is None


def test_with_the_guard_on_a_switch_to_an_internal_address_is_refused_as_the_clip_opens(
    redis_server: RedisServer,
    service_env: dict[str, str],
    room: LocalRoom,
    compat_clip: str,
    room_name: str,
    logs: Path,
) -> None:
    # The worker allows loopback (the room's media) but not 10/8; the API, without the
    # guard, stands for a switch URL whose name resolved publicly when it was sent.
    allow = {"ROOMCAST_GUARD_ALLOW_NETWORKS": "127.0.0.0/8"}
    with guarded_worker(redis_server, service_env, logs, "guardswitch", allow) as api:
        rid = api.submit(**job_for(room, compat_clip, room_name, Switchable=True, MaxDuration=4))
        api.wait_state(rid, {"running"}, timeout=15)
        inside = {"VideoSrc": "http://10.255.255.1/next.mp4", "ClipId": "inside"}
        assert api.call("POST", f"/v1/pushes/{rid}/switch", inside).status == 202
        api.wait_state(rid, FINAL)
        with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=10) as answer:
            text = answer.read().decode()
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
        failed = [e for e in events if e["Event"] == "clip-failed"]
        assert failed and failed[0]["ClipId"] == "inside"
        assert "10.255.255.1, a private address" in failed[0]["Reason"]


# --- request limits ----------------------------------------------------------------------------


def test_a_body_over_2_mib_answers_413_with_a_json_error(api: Api) -> None:
    # The answer comes from the declared length, before the body: a client still sending
    # 2 MiB would find the connection closed under it, so only its start is sent here.
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/v1/pushes")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(2_100_000))
    conn.endheaders(b'{"Pad": "' + b"x" * 1000)
    resp = conn.getresponse()
    assert resp.status == 413
    error = json.loads(resp.read())["Error"]
    conn.close()
    assert error["Code"] == "RequestTooLarge"
    assert "2097152 bytes" in error["Message"]


def test_a_body_just_under_the_limit_is_judged_on_its_fields(api: Api, room: LocalRoom) -> None:
    body = dict(job_for(room, "missing.mp4", "limits"), Pad="x" * 2_090_000)
    answer = api.call("POST", "/v1/pushes", body)
    assert answer.status == 400 and answer.body["Error"]["Field"] == "Pad", answer.body


def test_a_chunked_body_over_the_limit_answers_413(api: Api) -> None:
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b'{"Pad": "' + b"x" * 8192 for _ in range(260))
    conn.request(
        "POST",
        "/v1/pushes",
        body=chunks,
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["Error"]["Code"] == "RequestTooLarge"
    conn.close()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_sent_as_json_answers_415(
    api: Api, room: LocalRoom, content_type: str
) -> None:
    body = json.dumps(job_for(room, "missing.mp4", "limits")).encode()
    answer = api.call("POST", "/v1/pushes", raw=body, headers={"Content-Type": content_type})
    assert answer.status == 415, answer.body
    assert answer.body["Error"]["Code"] == "UnsupportedMediaType"
    assert "application/json" in answer.body["Error"]["Message"]


def test_a_body_without_a_content_type_answers_415(api: Api) -> None:
    host, port = api.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/v1/pushes", body=b"{}", headers={"Content-Length": "2"})
    resp = conn.getresponse()
    assert resp.status == 415
    assert json.loads(resp.read())["Error"]["Code"] == "UnsupportedMediaType"
    conn.close()


def test_json_with_a_charset_parameter_is_accepted(
    api: Api, room: LocalRoom, room_name: str
) -> None:
    body = json.dumps(job_for(room, "missing.mp4", room_name)).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert api.call("POST", "/v1/pushes", raw=body, headers=headers).status == 202


@pytest.mark.parametrize(
    "raw",
    [b'{"VideoSrc": ', b"\xff\xfe{}", b'{"a": 1} trailing', b""],
    ids=["truncated", "not_utf8", "trailing_garbage", "empty"],
)
def test_malformed_json_answers_400(api: Api, raw: bytes) -> None:
    answer = api.call("POST", "/v1/pushes", raw=raw)
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Code"] == "InvalidParameter"


# --- API keys ----------------------------------------------------------------------------------

KEYS = ("k-alpha-0123456789", "k-beta-9876543210")


@pytest.fixture(scope="module")
def keyed_api(redis_server: RedisServer, service_env: dict[str, str]) -> Api:
    """An API with two bearer keys configured (Redis db 12, no worker)."""
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=flushed(db_url(redis_server, 12)),
        ROOMCAST_API_KEYS=",".join(KEYS),
    )
    return ClientApi(settings_of(env))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        f"Bearer {KEYS[0][:-1]}",  # a prefix of a key
        f"Bearer {KEYS[0]}x",  # a key with more after it
        f"Basic {KEYS[0]}",
        KEYS[0],
        "Bearer ",
        "Bearer clé-non-ascii",
    ],
    ids=["none", "wrong", "prefix", "longer", "basic", "no_scheme", "empty", "non_ascii"],
)
def test_every_call_without_a_valid_key_answers_the_same_401(
    keyed_api: Api, authorization: str | None
) -> None:
    headers = {"Authorization": authorization.encode().decode("latin-1")} if authorization else {}
    for method, path in [("GET", "/v1/pushes"), ("POST", "/v1/pushes"), ("GET", "/v1/pushes/x")]:
        answer = keyed_api.call(method, path, {}, headers=headers)
        assert answer.status == 401, (method, path, answer.body)
        assert answer.body == {
            "Error": {
                "Code": "Unauthorized",
                "Message": "a valid 'Authorization: Bearer <key>' is required",
            }
        }


def test_each_configured_key_is_accepted_and_health_needs_none(
    keyed_api: Api, room: LocalRoom, room_name: str
) -> None:
    assert keyed_api.call("GET", "/healthz").status == 200
    for key in KEYS:
        headers = {"Authorization": f"Bearer {key}"}
        assert keyed_api.call("GET", "/v1/pushes", headers=headers).status == 200
    answer = keyed_api.call(
        "POST",
        "/v1/pushes",
        job_for(room, "missing.mp4", room_name),
        headers={"Authorization": f"bearer {KEYS[1]}"},
    )
    assert answer.status == 202, answer.body


# --- load --------------------------------------------------------------------------------------


def test_200_submissions_at_once_are_all_accepted_and_recorded_exactly_once(
    redis_server: RedisServer, service_env: dict[str, str], logs: Path
) -> None:
    url = flushed(db_url(redis_server, 9))
    proc, base = start_api(dict(service_env, ROOMCAST_REDIS_URL=url), logs / "load_api.log")
    try:
        result = submit_all(base, request_bodies(200), clients=16)
        assert result.errors == []
        assert result.statuses == {202: 200}
        assert len(set(result.request_ids)) == 200
        assert count_records(url) == 200
        stats = Api(base).call("GET", "/v1/pushes?Limit=1").body["Stats"]
        assert stats["queued"] == 200 and sum(stats.values()) == 200, stats
        print(f"\n200 submissions: {result.rate:.0f} submissions/s")
    finally:
        stop(proc)
