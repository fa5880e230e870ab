"""One roomcast shared by tenants: API keys scoped to their SdkAppIds, and quotas per app.

Through Flask's test client on Redis db 15; no worker consumes, so pushes stay queued.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from api import keys as api_keys
from devstack.redis import RedisServer
from jobs.settings import Settings

from ..stack import Answer, ClientApi

APP_A, APP_B = 1400000001, 1400000002
ADMIN, KEY_A, KEY_B = "admin-key-0001", "key-of-app-a-01", "key-of-app-b-01"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + "/15"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.close()


def api_with(redis_url: str, **settings: Any) -> ClientApi:
    defaults: dict[str, Any] = {
        "redis_url": redis_url,
        "usersig_check": "off",
        "block_private_addresses": False,  # media.example.com does not resolve here
        "metrics_public": False,
        "api_keys": f"{ADMIN},{KEY_A}:{APP_A},{KEY_B}:{APP_B}",
    }
    return ClientApi(Settings(**(defaults | settings)))


def push(app: int = APP_A, **fields: Any) -> dict[str, Any]:
    return {
        "VideoSrc": "http://media.example.com/lesson.mp4",
        "SdkAppId": app,
        "StrRoomId": "class_7",
        "UserId": f"u{uuid.uuid4().hex[:12]}",
        "UserSig": "sig",
        **fields,
    }


def call(api: ClientApi, key: str, method: str, path: str, body: Any = None) -> Answer:
    return api.call(method, path, body, headers={"Authorization": f"Bearer {key}"})


def submit(api: ClientApi, key: str, app: int = APP_A) -> Answer:
    return call(api, key, "POST", "/v1/pushes", push(app))


# --- keys scoped to apps ------------------------------------------------------------------


def test_a_scoped_key_submits_for_its_app_and_is_refused_another_naming_sdkappid(
    redis_url: str,
) -> None:
    api = api_with(redis_url)
    assert submit(api, KEY_A, APP_A).status == 202
    refused = submit(api, KEY_A, APP_B)
    assert refused.status == 403
    assert refused.body["Error"]["Code"] == "Forbidden"
    assert refused.body["Error"]["Field"] == "SdkAppId"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/events", None),
        ("POST", "/stop", None),
        ("DELETE", "", None),
        ("POST", "/pause", None),
        ("POST", "/events/replay", None),
    ],
)
def test_another_apps_push_is_not_found_whatever_is_asked(
    redis_url: str, method: str, suffix: str, body: Any
) -> None:
    api = api_with(redis_url)
    rid = submit(api, KEY_A).body["RequestId"]
    theirs = call(api, KEY_B, method, f"/v1/pushes/{rid}{suffix}", body)
    missing = call(api, KEY_B, method, f"/v1/pushes/{uuid.uuid4()}{suffix}", body)
    assert theirs.status == missing.status == 404
    assert theirs.body["Error"]["Code"] == missing.body["Error"]["Code"] == "NotFound"
    assert call(api, KEY_A, "GET", f"/v1/pushes/{rid}").body["State"] == "queued"


def test_a_scoped_key_lists_and_counts_only_its_apps_pushes(redis_url: str) -> None:
    api = api_with(redis_url)
    mine = {submit(api, KEY_A).body["RequestId"] for _ in range(2)}
    submit(api, KEY_B, APP_B)
    listed = call(api, KEY_A, "GET", "/v1/pushes").body
    assert {p["RequestId"] for p in listed["Pushes"]} == mine
    assert listed["Stats"]["queued"] == 2
    everything = call(api, ADMIN, "GET", "/v1/pushes").body
    assert len(everything["Pushes"]) == 3 and everything["Stats"]["queued"] == 3
    other = call(api, KEY_A, "GET", f"/v1/pushes?SdkAppId={APP_B}")
    assert other.status == 403


def test_a_key_for_several_apps_sees_each_of_them(redis_url: str) -> None:
    api = api_with(redis_url, api_keys=f"both:{APP_A}|{APP_B},{KEY_A}:{APP_A}")
    submit(api, "both", APP_A)
    submit(api, "both", APP_B)
    assert len(call(api, "both", "GET", "/v1/pushes").body["Pushes"]) == 2
    assert len(call(api, KEY_A, "GET", "/v1/pushes").body["Pushes"]) == 1


def test_service_metrics_need_a_key_for_every_app(redis_url: str) -> None:
    api = api_with(redis_url)
    assert call(api, KEY_A, "GET", "/metrics").status == 401
    scraped = api._client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert scraped.status_code == 200 and b"roomcast_pushes" in scraped.data


def test_keys_in_the_keys_file_rotate_without_a_restart(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "FILE_CHECK_SECONDS", 0.0)
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# rotated by ops\nold-key:{APP_A}\n")
    api = api_with(redis_url, api_keys="", api_keys_file=str(keys_file))
    assert submit(api, "old-key").status == 202
    keys_file.write_text(f"new-key:{APP_A}\n")
    assert submit(api, "old-key").status == 401
    assert submit(api, "new-key").status == 202


def test_a_malformed_keys_file_stops_the_api_at_start(redis_url: str, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("k:not-an-app\n")
    with pytest.raises(api_keys.KeyFileError, match="not SdkAppIds"):
        api_with(redis_url, api_keys="", api_keys_file=str(keys_file))


# --- quotas per app -----------------------------------------------------------------------


def total_jobs(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).zcard("roomcast:jobs"))


def test_beyond_its_concurrent_pushes_an_app_gets_429_and_nothing_is_created(
    redis_url: str,
) -> None:
    api = api_with(redis_url, quotas=f"{APP_A}=2/0")
    first = [submit(api, KEY_A).body["RequestId"] for _ in range(2)]
    refused = submit(api, KEY_A)
    assert refused.status == 429 and refused.body["Error"]["Code"] == "QuotaExceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert total_jobs(redis_url) == 2
    assert submit(api, KEY_B, APP_B).status == 202  # another app's quota is its own
    call(api, KEY_A, "POST", f"/v1/pushes/{first[0]}/stop")
    assert submit(api, KEY_A).status == 202  # a slot freed by the stop


def test_beyond_its_submissions_a_minute_an_app_gets_429_until_the_next_minute(
    redis_url: str,
) -> None:
    api = api_with(redis_url, quota_submissions_per_minute=3)
    answers = [submit(api, KEY_A) for _ in range(4)]
    assert [a.status for a in answers] in ([202, 202, 202, 429], [202, 202, 202, 202])
    # (All four pass only when the minute turned during the burst.)
    if answers[-1].status == 429:
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60


def test_a_replace_beyond_the_quota_leaves_the_push_it_would_replace_alone(
    redis_url: str,
) -> None:
    api = api_with(redis_url, quota_submissions_per_minute=1)
    body = push()
    minute = int(time.time() // 60)
    first = call(api, KEY_A, "POST", "/v1/pushes", body)
    again = call(api, KEY_A, "POST", "/v1/pushes", dict(body, Replace=True))
    if int(time.time() // 60) == minute:  # (a new minute between the two has a new quota)
        assert (first.status, again.status) == (202, 429)
        rid = first.body["RequestId"]
        assert call(api, KEY_A, "GET", f"/v1/pushes/{rid}").body["State"] == "queued"


def test_a_replace_at_the_concurrency_quota_takes_the_slot_of_the_push_it_replaces(
    redis_url: str,
) -> None:
    api = api_with(redis_url, quota_concurrent_pushes=1)
    body = push()
    rid = call(api, KEY_A, "POST", "/v1/pushes", body).body["RequestId"]
    assert submit(api, KEY_A).status == 429  # another publisher: no slot
    replaced = call(api, KEY_A, "POST", "/v1/pushes", dict(body, Replace=True))
    assert replaced.status == 202, replaced.body
    assert call(api, KEY_A, "GET", f"/v1/pushes/{rid}").body["State"] == "stopped"


def test_a_burst_takes_exactly_the_free_slots(redis_url: str) -> None:
    limit, burst = 5, 24
    statuses: list[int] = []

    # One app each, as separate API processes would be; built first, one after another
    # (CPython 3.11's ast.parse, which Flask's routing calls, is not safe across threads).
    apis = [api_with(redis_url, quota_concurrent_pushes=limit) for _ in range(burst)]

    def one(api: ClientApi) -> None:
        statuses.append(submit(api, KEY_A).status)

    threads = [threading.Thread(target=one, args=(api,)) for api in apis]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] * limit + [429] * (burst - limit)
    assert total_jobs(redis_url) == limit
