"""UserSig (a fan-out push's rooms' too), RedisPassword, PrivateMapKey and URL credentials
never show: Flower, logs,
results, status, events, callbacks, Redis records (other than the secrets keys) and error
messages.

Sources carry every provider's signature parameters at once (tests/signed_urls.py), each
secret value marked ``LEAK`` so that one search finds any of them."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from devstack.ports import free_port
from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..cloudstack import CloudStack, cloud_job, cloud_stack
from ..conftest import CALLBACK_SECRET, job_for
from ..receiver import Receiver
from ..signed_urls import signed, signed_by_all, with_userinfo
from ..stack import Api, start_flower, stop

USER_SIG = "USERSIG-SECRET-7781"
REDIS_PASSWORD = "REDISPW-SECRET-9932"
URL_TOKEN = "URLTOKEN-SECRET-4410"
PRIVATE_MAP_KEY = "PRIVATEMAPKEY-SECRET-5520"
TARGET_SIG = "TARGETSIG-SECRET-6631"
ADDED_SIG = "ADDEDSIG-SECRET-6632"


@pytest.fixture(scope="module")
def cloud(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CloudStack]:
    """Engine=cloud's own stack (tests/cloudstack.py): PrivateMapKey is for the cloud ingest."""
    with cloud_stack(service_env, tmp_path_factory.mktemp("cloud-secrets")) as stack:
        yield stack


def dump_redis(client: redis.Redis, keep_secrets: bool = True) -> str:
    """Every key and value in a Redis database, as text (without the secrets keys, which
    alone may hold them, unless ``keep_secrets``)."""
    parts = []
    for key in client.scan_iter(count=1000):
        if not keep_secrets and key.endswith((b":secrets", b":callback")):
            continue
        kind = client.type(key).decode()
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1)
        else:
            value = b""
        parts.append(f"{key!r}={value!r}")
    return "\n".join(parts)


def flower_knows(flower_url: str, rid: str) -> str:
    """What Flower's API says of the task (its list, info and result), once it knows it."""
    time.sleep(1.5)  # let Flower digest the task events
    text = ""
    for path in ("/api/tasks", f"/api/task/info/{rid}", f"/api/task/result/{rid}"):
        with urllib.request.urlopen(f"{flower_url}{path}", timeout=10) as answer:
            text += answer.read().decode()
    assert rid in text, "Flower must know the task, or this test proves nothing"
    return text


def test_secrets_appear_nowhere_a_person_or_a_tool_can_look(
    api: Api,
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    redis_server: RedisServer,
    service_env: dict[str, str],
    worker_log: Path,
    api_log: Path,
    tmp_path: Path,
) -> None:
    flower, flower_url = start_flower(service_env, tmp_path / "flower.log")
    try:
        with RedisServer(tmp_path / "progress", password=REDIS_PASSWORD) as progress:
            job = job_for(
                room,
                long_clip,
                room_name,
                UserSig=USER_SIG,
                Redis=True,
                RedisHost="127.0.0.1",
                RedisPort=progress.port,
                RedisPassword=REDIS_PASSWORD,
                MaxDuration=3,
            )
            signed = signed_by_all(str(job["VideoSrc"]))
            job["VideoSrc"] = with_userinfo(f"{signed}&token={URL_TOKEN}")
            rid = api.submit(**job)
            running = api.wait_state(rid, {"running"}, timeout=15)
            final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
            assert final["State"] == "stopped", final
            listing = api.call("GET", "/v1/pushes?Limit=5").body
            flower_text = flower_knows(flower_url, rid)
            seen = {
                "status": json.dumps([running, final, listing]),
                "flower": flower_text,
                "worker log": worker_log.read_text(errors="replace"),
                "api log": api_log.read_text(errors="replace"),
                "service redis": dump_redis(redis.Redis.from_url(redis_server.url)),
                "progress redis": dump_redis(
                    redis.Redis(port=progress.port, password=REDIS_PASSWORD)
                ),
            }
    finally:
        stop(flower)
    assert rid in seen["worker log"] and "usersig=***" in seen["worker log"]
    for where, text in seen.items():
        for secret in (USER_SIG, REDIS_PASSWORD, URL_TOKEN, "LEAK"):
            assert secret not in text, f"{secret} leaked into the {where}"


def test_a_fanout_pushs_room_usersigs_stay_in_its_secrets_key_alone(
    api: Api,
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    redis_server: RedisServer,
    worker_log: Path,
    api_log: Path,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    flower, flower_url = start_flower(service_env, tmp_path / "flower.log")
    service = redis.Redis.from_url(redis_server.url)
    try:
        first = {"StrRoomId": f"{room_name}_b", "UserId": "fan_b", "UserSig": TARGET_SIG}
        job = job_for(room, long_clip, room_name, UserSig=USER_SIG, MaxDuration=4, Targets=[first])
        rid = api.submit(**job)
        api.wait_state(rid, {"running"}, timeout=15)
        added = {"StrRoomId": f"{room_name}_c", "UserId": "fan_c", "UserSig": ADDED_SIG}
        assert api.call("POST", f"/v1/pushes/{rid}/targets", added).status == 202
        running = api.status(rid)
        secrets_key = service.get(f"roomcast:job:{rid}:secrets") or b""
        redis_while_running = dump_redis(service, keep_secrets=False)
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
        with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=10) as r:
            events = r.read().decode()
        seen = {
            "status": json.dumps([running, final, api.call("GET", "/v1/pushes?Limit=5").body]),
            "events": events,
            "flower": flower_knows(flower_url, rid),
            "worker log": worker_log.read_text(errors="replace"),
            "api log": api_log.read_text(errors="replace"),
            "service redis while running": redis_while_running,
            "service redis": dump_redis(service),
        }
    finally:
        stop(flower)
    # Where they are kept, or nothing here is checked: the worker reads them from there.
    assert TARGET_SIG.encode() in secrets_key and ADDED_SIG.encode() in secrets_key
    assert [t["TargetId"] for t in running["Targets"]] == ["main", "t1", "t2"]
    for where, text in seen.items():
        for secret in (USER_SIG, TARGET_SIG, ADDED_SIG):
            assert secret not in text, f"{secret} leaked into the {where}"


def test_switchable_push_urls_and_the_callback_url_keep_their_secrets(
    api: Api,
    room: LocalRoom,
    long_clip: str,
    short_clip: str,
    room_name: str,
    redis_server: RedisServer,
    worker_log: Path,
    events_log: Path,
    api_log: Path,
    tmp_path: Path,
) -> None:
    receiver = Receiver(free_port(), tmp_path / "received.jsonl", CALLBACK_SECRET)
    receiver.start()
    try:
        callback = f"{receiver.url}&apikey=LEAKcallback"
        first = signed(room.media_url(long_clip), "tencent-css", "first")
        job = job_for(room, long_clip, room_name, CallbackUrl=callback, MaxDuration=12)
        job["VideoSrc"] = first
        job["Playlist"] = [
            {"VideoSrc": signed(room.media_url(short_clip), "aws-s3"), "ClipId": "b"}
        ]
        rid = api.submit(**job)
        api.wait_state(rid, {"running"}, timeout=15)
        switch = {"VideoSrc": signed(room.media_url(short_clip), "aliyun-oss", "switch")}
        assert api.call("POST", f"/v1/pushes/{rid}/switch", switch).status == 202
        # Next after the switched-to clip: one that fails (its URL in an event), then b.
        missing = signed(room.media_url("nothing_here.mp4"), "google-gcs", "bad")
        queue = {"Action": "replace", "Sources": [missing, job["Playlist"][0]]}  # type: ignore[index]
        assert api.call("POST", f"/v1/pushes/{rid}/queue", queue).status == 202
        final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        deadline = time.monotonic() + 20
        while final["State"] not in {e["Event"] for e in receiver.acknowledged(rid)}:
            assert time.monotonic() < deadline, "the last event never reached the receiver"
            time.sleep(0.2)
        with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=10) as r:
            events = r.read().decode()
    finally:
        receiver.kill()
    assert "clip-failed" in events, "the failing clip must be reported, or nothing is checked"
    seen = {
        "status": json.dumps([final, api.call("GET", "/v1/pushes?Limit=5").body]),
        "events": events,
        "callbacks": json.dumps([e["body"] for e in receiver.entries()]),
        "worker log": worker_log.read_text(errors="replace"),
        "events worker log": events_log.read_text(errors="replace"),
        "api log": api_log.read_text(errors="replace"),
        "service redis": dump_redis(redis.Redis.from_url(redis_server.url), keep_secrets=False),
    }
    for where, text in seen.items():
        assert "LEAK" not in text, f"a URL secret leaked into the {where}"


def test_a_cloud_pushs_privatemapkey_reaches_trtc_and_nothing_else(
    cloud: CloudStack, room: LocalRoom, tmp_path: Path
) -> None:
    flower, flower_url = start_flower(cloud.env, tmp_path / "flower.log")
    # TRTC's messages may quote what they refuse: this refusal of a command quotes the key.
    refusal = ("InvalidParameter", f"PrivateMapKey {PRIVATE_MAP_KEY} does not allow this")
    try:
        rid = cloud.api.submit(**cloud_job(room, "pmk_room", PrivateMapKey=PRIVATE_MAP_KEY))
        deadline = time.monotonic() + 15
        while (cloud.api.status(rid)["Progress"] or {}).get("Cloud", {}).get("Status") is None:
            assert time.monotonic() < deadline, "TRTC's task never started"
            time.sleep(0.1)
        cloud.trtc.fail["UpdateStreamIngest"] = refusal
        command = cloud.api.call("POST", f"/v1/pushes/{rid}/pause")
        cloud.trtc.fail.pop("UpdateStreamIngest")
        running = cloud.api.status(rid)
        assert cloud.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
        final = cloud.api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=15)
        listing = cloud.api.call("GET", "/v1/pushes?Limit=5").body
        flower_text = flower_knows(flower_url, rid)
        seen = {
            "status": json.dumps([running, final, listing]),
            "command's answer": json.dumps(command.body),
            "flower": flower_text,
            "worker log": cloud.worker_log.read_text(errors="replace"),
            "api log": cloud.api_log.read_text(errors="replace"),
            "service redis": dump_redis(cloud.redis, keep_secrets=False),
        }
    finally:
        cloud.trtc.fail.pop("UpdateStreamIngest", None)
        stop(flower)
    starts = [c for c in cloud.trtc.of("StartStreamIngest") if c.params["RoomId"] == "pmk_room"]
    assert [c.params.get("PrivateMapKey") for c in starts] == [PRIVATE_MAP_KEY]
    assert (
        command.status == 502 and "PrivateMapKey *** does not" in command.body["Error"]["Message"]
    )
    for where, text in seen.items():
        assert PRIVATE_MAP_KEY not in text, f"the PrivateMapKey leaked into the {where}"
