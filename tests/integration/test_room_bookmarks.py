"""A fan-out push's bookmarks: one per room, each following the push only while its room
watches (jobs/bookmarks.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from devstack.redis import RedisServer
from jobs.bookmarks import Bookmark, RedisTarget, RoomKeys, RoomResolver, bookmark_key

SOURCE = "https://media.example.com/match.mp4"
APP = 1400000001


@pytest.fixture
def caller_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    yield client
    client.close()


def keys(room: str) -> RoomKeys:
    return RoomKeys(bookmark_key(APP, room, SOURCE))


def bookmarks(
    client: redis.Redis, rooms: list[str], resolve: RoomResolver | None = None
) -> Bookmark:
    info = client.connection_pool.connection_kwargs
    target = RedisTarget(info["host"], info["port"], None, db=info["db"])
    return Bookmark(target, {room: keys(room) for room in rooms}, 600, SOURCE, resolve=resolve)


def position(client: redis.Redis, room: str) -> float | None:
    raw = client.hget(keys(room).key, "Position")
    return None if raw is None else float(raw)


def test_each_room_reads_its_own_position_in_one_round_trip(caller_redis: redis.Redis) -> None:
    caller_redis.hset(keys("a").key, "Position", "12.500")
    caller_redis.hset(keys("c").key, "Position", "40.000")
    found = bookmarks(caller_redis, ["a", "b", "c"]).positions()
    assert found == {"a": 12.5, "b": None, "c": 40.0}


def test_the_push_starts_from_its_earliest_room_so_that_no_room_misses_a_second(
    caller_redis: redis.Redis,
) -> None:
    caller_redis.hset(keys("a").key, "Position", "30.000")
    caller_redis.hset(keys("b").key, "Position", "12.000")
    assert bookmarks(caller_redis, ["a", "b"]).load() == 12.0


def test_a_room_without_a_bookmark_starts_the_push_from_the_beginning(
    caller_redis: redis.Redis,
) -> None:
    caller_redis.hset(keys("a").key, "Position", "30.000")
    assert bookmarks(caller_redis, ["a", "b"]).load() is None


def test_only_the_rooms_named_are_written_the_others_keep_their_position(
    caller_redis: redis.Redis,
) -> None:
    mark = bookmarks(caller_redis, ["a", "b"])
    mark.save("rid", 5.0, 60.0)
    mark.save("rid", 9.0, 60.0, rooms=["a"])
    assert (position(caller_redis, "a"), position(caller_redis, "b")) == (9.0, 5.0)


def test_a_room_added_while_the_push_runs_is_found_by_its_resolver(
    caller_redis: redis.Redis,
) -> None:
    asked: list[str] = []

    def resolve(room: str) -> RoomKeys | None:
        asked.append(room)
        return keys(room) if room == "late" else None

    mark = bookmarks(caller_redis, ["a"], resolve=resolve)
    mark.save("rid", 7.0, None, rooms=["a", "late", "unknown"])
    mark.save("rid", 8.0, None, rooms=["a", "late"])
    assert (position(caller_redis, "a"), position(caller_redis, "late")) == (8.0, 8.0)
    assert asked == ["late", "unknown"]  # found once, kept


def test_reaching_the_end_forgets_only_the_rooms_that_saw_it(caller_redis: redis.Redis) -> None:
    mark = bookmarks(caller_redis, ["a", "b"])
    mark.save("rid", 20.0, 60.0)
    mark.delete(rooms=["a"])
    assert (position(caller_redis, "a"), position(caller_redis, "b")) == (None, 20.0)


def test_a_position_that_is_not_a_number_reads_as_no_bookmark(caller_redis: redis.Redis) -> None:
    caller_redis.hset(keys("a").key, "Position", "soon")
    assert bookmarks(caller_redis, ["a"]).positions() == {"a": None}
