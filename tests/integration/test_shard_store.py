"""The store's side of a push split into shards (jobs/shards.py): however the push ends,
its shards end with it, and it takes one slot of its app's quota per shard."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from devstack.redis import RedisServer
from jobs.errors import QuotaExceeded
from jobs.records import JobRecord, JobSecrets, PushRoom, PushTarget
from jobs.shards import shard
from jobs.states import State
from jobs.stops import Stop, StopCause
from jobs.store import JobStore, Quota, now

APP = 1400000009


@pytest.fixture
def store(redis_server: RedisServer) -> JobStore:
    client: Any = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/14")
    client.flushdb()
    return JobStore(client, ttl=600, lost_after=30, quotas=lambda app: Quota(concurrent=4))


def split_push(store: JobStore, rooms: int = 5, size: int = 2) -> tuple[str, list[str]]:
    """A fan-out push recorded as the API records it, in shards of ``size``: its id and its
    shards' ids."""
    rid = f"push-{now()}"
    targets = [
        PushTarget(TargetId=f"t{n}", Room=PushRoom(StrRoomId=room, RtmpRoom=room), UserId="u")
        for n, room in ((n, f"r{n}{rid}") for n in range(1, rooms))
    ]
    record = JobRecord(
        SdkAppId=APP,
        Room=PushRoom(StrRoomId="own", RtmpRoom=f"own{rid}"),
        UserId="me",
        VideoSrc="http://example.invalid/a.mp4",
        CreatedAt=now(),
        Targets=targets,
    )
    secrets = JobSecrets(
        UserSig="sig",
        VideoSrc="http://example.invalid/a.mp4",
        TargetSigs={t.TargetId: "sig" for t in targets},
    )
    own, own_secrets, shards = shard(rid, record, secrets, size)
    store.create(rid, own, own_secrets, slots=1 + len(shards))
    for shard_id, shard_record, shard_secrets in shards:
        store.create(shard_id, shard_record, shard_secrets)
    return rid, [shard_id for shard_id, _, _ in shards]


def test_a_push_that_ends_on_its_own_stops_its_running_shards_and_ends_its_queued_ones(
    store: JobStore,
) -> None:
    rid, (running, queued) = split_push(store)
    for job in (rid, running):
        store.transition(job, (State.QUEUED,), State.RUNNING)
    store.finish(rid, State.FAILED, Reason="its room refused it")
    asked = store.stop_requested(running)
    assert asked == Stop(StopCause.PUSH_ENDED, f"{rid}, failed")
    ended = store.get(queued)
    assert ended is not None and ended.state is State.STOPPED
    assert (
        ended.record.Reason == f"the push it is a shard of ended ({rid}, failed), before it started"
    )


def test_a_split_push_takes_one_quota_slot_per_shard(store: JobStore) -> None:
    split_push(store, rooms=5, size=2)  # three shards of four slots
    with pytest.raises(QuotaExceeded):
        split_push(store, rooms=3, size=2)  # two more: five
    split_push(store, rooms=2, size=2)  # one more: four
