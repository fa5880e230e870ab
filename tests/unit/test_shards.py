"""How a fan-out push is split into shards, and how their statuses read as one push."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.records import JobRecord, JobSecrets, PushRoom, PushTarget
from jobs.shards import by_position, merged_status, shard, split

RID = "push-1"


def fanout(rooms: int) -> tuple[JobRecord, JobSecrets]:
    """A fan-out push into ``rooms`` rooms: its own and ``rooms - 1`` targets."""
    targets = [
        PushTarget(TargetId=f"t{n}", Room=PushRoom(StrRoomId=f"r{n}", RtmpRoom=f"r{n}"), UserId="u")
        for n in range(1, rooms)
    ]
    record = JobRecord(
        SdkAppId=1400000001,
        Room=PushRoom(StrRoomId="own", RtmpRoom="own"),
        UserId="me",
        VideoSrc="http://example.invalid/a.mp4",
        CallbackUrl="http://example.invalid/hook",
        CreatedAt=0.0,
        Targets=targets,
    )
    secrets = JobSecrets(
        UserSig="sig-me",
        VideoSrc="http://example.invalid/a.mp4",
        CallbackUrl="http://example.invalid/hook?secret",
        TargetSigs={t.TargetId: f"sig-{t.TargetId}" for t in targets},
    )
    return record, secrets


def test_split_cuts_items_into_consecutive_runs_of_at_most_the_size() -> None:
    assert split([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert split([], 3) == []


def test_a_push_within_the_shard_size_is_not_split() -> None:
    record, secrets = fanout(250)
    assert shard(RID, record, secrets, 250) == (record, secrets, [])


def test_a_push_that_is_not_fanout_is_never_split() -> None:
    record, secrets = fanout(1)
    plain = record.model_copy(update={"Targets": None})
    assert shard(RID, plain, secrets, 1) == (plain, secrets, [])


def test_2000_rooms_in_shards_of_250_make_eight_pushes_that_cover_every_room_once() -> None:
    record, secrets = fanout(2000)
    own, own_secrets, shards = shard(RID, record, secrets, 250)
    assert own.Shards == [f"{RID}.{n}" for n in range(2, 9)]
    assert [shard_id for shard_id, _, _ in shards] == own.Shards
    assert own.targets() is not None and len(own.targets() or []) == 250
    assert [len(r.targets() or []) for _, r, _ in shards] == [250] * 7
    every = [t.TargetId for t in own.targets() or []]
    every += [t.TargetId for _, r, _ in shards for t in r.targets() or []]
    assert every == ["main", *(f"t{n}" for n in range(1, 2000))]
    assert set(own_secrets.TargetSigs) == {t.TargetId for t in own.Targets or []}


def test_a_shard_publishes_only_its_rooms_with_their_usersigs_and_no_callback() -> None:
    record, secrets = fanout(5)
    _, _, shards = shard(RID, record, secrets, 2)
    shard_id, shard_record, shard_secrets = shards[0]
    assert shard_id == f"{RID}.2"
    assert shard_record.ShardOf == RID and shard_record.MainRemoved
    assert [t.TargetId for t in shard_record.targets() or []] == ["t2", "t3"]
    assert shard_secrets.TargetSigs == {"t2": "sig-t2", "t3": "sig-t3"}
    assert shard_record.CallbackUrl is None and shard_secrets.CallbackUrl is None


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_every_shard_size_keeps_the_push_own_room_in_the_push(size: int) -> None:
    record, secrets = fanout(7)
    own, _, shards = shard(RID, record, secrets, size)
    assert (own.targets() or [])[0].TargetId == "main"
    assert all(len(r.targets() or []) <= size for _, r, _ in shards)
    assert len(own.targets() or []) + sum(len(r.targets() or []) for _, r, _ in shards) == 7


def test_rooms_are_grouped_by_the_position_their_bookmarks_hold_in_the_order_given() -> None:
    positions = {"main": 12.5, "t1": None, "t2": 12.5, "t3": 40.0, "t4": None}
    assert by_position(positions) == [["main", "t2"], ["t1", "t4"], ["t3"]]


def test_each_group_of_rooms_gets_shards_of_its_own_the_push_own_group_first() -> None:
    record, secrets = fanout(6)
    groups = [["t1", "t3"], ["main", "t2", "t4", "t5"]]
    own, own_secrets, shards = shard(RID, record, secrets, 3, groups)
    assert [t.TargetId for t in own.targets() or []] == ["main", "t2", "t4"]
    assert set(own_secrets.TargetSigs) == {"t2", "t4"}
    rooms = [[t.TargetId for t in r.targets() or []] for _, r, _ in shards]
    assert rooms == [["t5"], ["t1", "t3"]]
    assert own.Shards == [f"{RID}.2", f"{RID}.3"]


def test_rooms_that_all_start_from_one_position_stay_one_push() -> None:
    record, secrets = fanout(4)
    assert shard(RID, record, secrets, 250, [["main", "t1", "t2", "t3"]]) == (record, secrets, [])


def status(rid: str, rooms: list[str], worker: str) -> dict[str, Any]:
    return {
        "RequestId": rid,
        "State": "running",
        "Worker": worker,
        "Targets": [{"TargetId": room} for room in rooms],
        "Progress": {"Targets": {room: {"State": "live"} for room in rooms}},
    }


def test_the_merged_status_lists_every_shard_and_all_their_rooms() -> None:
    merged = merged_status(
        status(RID, ["main", "t1"], "w1"),
        [(f"{RID}.2", status(f"{RID}.2", ["t2", "t3"], "w2")), (f"{RID}.3", None)],
    )
    assert [t["TargetId"] for t in merged["Targets"]] == ["main", "t1", "t2", "t3"]
    assert set(merged["Progress"]["Targets"]) == {"main", "t1", "t2", "t3"}
    assert merged["Shards"] == [
        {"RequestId": RID, "State": "running", "Worker": "w1", "Rooms": 2},
        {"RequestId": f"{RID}.2", "State": "running", "Worker": "w2", "Rooms": 2},
        {"RequestId": f"{RID}.3", "State": "unknown", "Rooms": 0},
    ]


def test_a_request_into_2000_rooms_with_a_usersig_each_fits_the_body_limit() -> None:
    from api import MAX_BODY_BYTES  # noqa: PLC0415 - only this test loads Flask

    sig = "eJw1kF1PgzAUhv8K6a1kBmQf7s4xJmZugjKJ3jRde9gOoS22BYfG" * 8  # 424 characters
    targets = [
        {"TargetId": f"t{n}", "StrRoomId": f"watch_room_{n:05d}", "UserId": f"relay_{n:05d}",
         "UserSig": sig}
        for n in range(1, 2000)
    ]  # fmt: skip
    body = {"VideoSrc": "rtmp://live.example.com/live/match", "UserSig": sig, "Targets": targets}
    assert len(json.dumps(body)) < MAX_BODY_BYTES
