"""A preparation's record and events in a real Redis: one State change at a time, each with
its event, a stop that ends a queued preparation at once, and nothing a push reader sees."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from api import create_app
from devstack.redis import RedisServer
from jobs.outbox import Outbox
from jobs.preparations import (
    LOST_AFTER_SECONDS,
    ClipPreparation,
    Preparation,
    PreparationStore,
    preparation_key,
    stop_preparation,
)
from jobs.records import iso
from jobs.settings import Settings
from jobs.stops import Stop, StopCause
from jobs.store import JobStore
from worker.preparer import run_preparation

URLS = ["https://media.example/a.mp4?sign=SECRET", "https://media.example/b.mp4"]


def _client(redis_server: RedisServer) -> Any:
    return redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/11")


def _created(
    redis_server: RedisServer, request_id: str, callback: str | None = None
) -> PreparationStore:
    store = PreparationStore(_client(redis_server), ttl=600)
    preparation = Preparation(
        RequestId=request_id,
        SdkAppId=1400000001,
        Clips=[ClipPreparation(VideoSrc=url.split("?")[0]) for url in URLS],
        CreatedAt="2026-12-07T00:00:00Z",
    )
    store.create(preparation, URLS, callback)
    return store


def _names(store: PreparationStore, request_id: str) -> list[str]:
    return [e["Event"] for e in store.events.read(request_id)]


def test_a_new_preparation_has_its_queued_event_and_no_push_record(
    redis_server: RedisServer,
) -> None:
    store = _created(redis_server, "prep-new")
    (queued,) = store.events.read("prep-new")
    assert (queued["Event"], queued["Id"], queued["Seq"], queued["Clips"]) == (
        "queued",
        "prep-new.1",
        1,
        2,
    )
    assert JobStore(store.redis, ttl=600, lost_after=30).get("prep-new") is None
    assert store.get("prep-new").Callbacks is None  # type: ignore[union-attr]


def test_a_preparation_with_a_callback_url_is_due_for_delivery(redis_server: RedisServer) -> None:
    store = _created(redis_server, "prep-cb", callback="https://backend.example/hook?t=TOKEN")
    target = Outbox(store.redis).target("prep-cb")
    assert target is not None and (target.url, target.seq, target.sent) == (
        "https://backend.example/hook?t=TOKEN",
        1,
        0,
    )
    callbacks = store.get("prep-cb").Callbacks  # type: ignore[union-attr]
    assert callbacks is not None and (callbacks.State, callbacks.Events) == ("delivering", 1)
    assert "TOKEN" not in store.get("prep-cb").model_dump_json()  # type: ignore[union-attr]


def test_a_preparation_stopped_while_queued_ends_at_once_and_never_runs(
    redis_server: RedisServer,
) -> None:
    store = _created(redis_server, "prep-stop-queued")
    assert stop_preparation(store, "prep-stop-queued", Stop(StopCause.API)) == "queued"
    stopped = store.get("prep-stop-queued")
    assert stopped is not None and stopped.State == "stopped" and stopped.EndedAt
    assert stopped.Reason == "stopped through the API, before it started"
    assert [c.State for c in stopped.Clips] == ["stopped", "stopped"]
    settings = Settings(redis_url="redis://unused:1/0")
    assert run_preparation(store, settings, "prep-stop-queued") == "stopped"
    assert _names(store, "prep-stop-queued") == ["queued", "stopped"]


def test_a_stop_of_an_ended_preparation_changes_nothing(redis_server: RedisServer) -> None:
    store = _created(redis_server, "prep-ended")
    stop_preparation(store, "prep-ended", Stop(StopCause.API))
    assert stop_preparation(store, "prep-ended", Stop(StopCause.REVOKE)) == "stopped"
    assert store.get("prep-ended").Reason.startswith("stopped through the API")  # type: ignore[union-attr]
    assert _names(store, "prep-ended") == ["queued", "stopped"]
    assert stop_preparation(store, "no-such-preparation", Stop(StopCause.API)) is None


def test_of_writers_racing_to_change_a_state_one_wins_with_one_event(
    redis_server: RedisServer,
) -> None:
    store = _created(redis_server, "prep-race")
    won: list[int] = []
    start = threading.Barrier(16)

    def start_it(n: int) -> None:
        start.wait()

        def running(preparation: Preparation) -> dict[str, Any]:
            preparation.State = "running"
            return {"By": n}

        if store.change("prep-race", ("queued",), running) is not None:
            won.append(n)

    threads = [threading.Thread(target=start_it, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    events = store.events.read("prep-race")
    assert [(e["Event"], e.get("By")) for e in events] == [("queued", None), ("running", won[0])]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/renditions", {"SdkAppId": 1400000001, "Clips": ["https://media.example/a.mp4"]}),
        (
            "/v1/pushes",
            {
                "VideoSrc": "https://media.example/a.mp4",
                "SdkAppId": 1400000001,
                "StrRoomId": "r1",
                "UserId": "u1",
                "UserSig": "sig",
                "Mode": "vod",
            },
        ),
    ],
    ids=["preparation", "push"],
)
def test_a_callback_url_needs_the_secret_its_deliveries_are_signed_with(
    redis_server: RedisServer, path: str, body: dict[str, Any]
) -> None:
    settings = Settings(
        redis_url=redis_server.url.rsplit("/", 1)[0] + "/12",
        usersig_check="off",
        block_private_addresses=False,
        callback_secret="",
    )
    answer = (
        create_app(settings)
        .test_client()
        .post(path, json=body | {"CallbackUrl": "https://backend.example/hook"})
    )
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["Error"]["Field"] == "CallbackUrl"
    assert "ROOMCAST_CALLBACK_SECRET" in answer.get_json()["Error"]["Message"]


def _running(store: PreparationStore, request_id: str, written_ago: float) -> None:
    """The preparation taken by a worker that last wrote it ``written_ago`` seconds ago."""

    def started(preparation: Preparation) -> dict[str, Any]:
        preparation.State = "running"
        preparation.Clips[0].State = "preparing"
        return {}

    store.change(request_id, ("queued",), started)
    record = store.get(request_id)
    assert record is not None
    record.UpdatedAt = iso(time.time() - written_ago)
    store.redis.set(preparation_key(request_id), record.model_dump_json(exclude={"Callbacks"}))


def test_a_preparation_whose_worker_was_lost_ends_failed_with_its_event(
    redis_server: RedisServer,
) -> None:
    store = _created(redis_server, "prep-lost")
    _running(store, "prep-lost", written_ago=LOST_AFTER_SECONDS + 5)
    ended = store.end_if_lost("prep-lost")
    assert ended is not None and ended.State == "failed"
    assert ended.Reason is not None and "worker was lost" in ended.Reason
    assert [c.State for c in ended.Clips] == ["failed", "failed"]
    assert _names(store, "prep-lost") == ["queued", "running", "failed"]
    assert stop_preparation(store, "prep-lost", Stop(StopCause.API)) == "failed"


def test_a_preparation_its_worker_writes_is_not_taken_for_lost(redis_server: RedisServer) -> None:
    store = _created(redis_server, "prep-alive")
    _running(store, "prep-alive", written_ago=5)
    assert store.end_if_lost("prep-alive") is None
    assert stop_preparation(store, "prep-alive", Stop(StopCause.API)) == "running"
    assert store.get("prep-alive").State == "running"  # type: ignore[union-attr]
