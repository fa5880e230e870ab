"""Progress moves both ways between the template and roomcast: with
ROOMCAST_TEMPLATE_RESUME_KEYS, a bookmark also reads and writes the template's
``trtc:play:position:<room>`` (milliseconds) in the caller's Redis (db 12 here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from devstack.redis import RedisServer
from jobs.bookmarks import Bookmark, RedisTarget, RoomKeys, bookmark_key, template_key

SOURCE = "https://media.example.com/lesson.mp4?sign=abc"


@pytest.fixture
def caller_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/12")
    client.flushdb()
    yield client
    client.close()


def bookmark(client: redis.Redis, room: str = "class_7", template: bool = True) -> Bookmark:
    kwargs = client.connection_pool.connection_kwargs
    target = RedisTarget(kwargs["host"], kwargs["port"], None, db=kwargs["db"])
    key = bookmark_key(1400000001, room, SOURCE)
    keys = RoomKeys(key, template_key(room) if template else None)
    return Bookmark(target, {"main": keys}, 600, SOURCE)


def test_a_push_the_template_left_resumes_from_its_position(caller_redis: redis.Redis) -> None:
    caller_redis.set("trtc:play:position:class_7", "42500")
    assert bookmark(caller_redis).load() == 42.5


def test_roomcasts_progress_is_written_where_the_template_reads_it(
    caller_redis: redis.Redis,
) -> None:
    mark = bookmark(caller_redis)
    mark.save("rid-1", 12.3456, 60.0)
    assert caller_redis.get("trtc:play:position:class_7") == b"12346"
    assert mark.load() == 12.346  # its own bookmark first
    mark.delete()
    assert not caller_redis.exists("trtc:play:position:class_7", mark.rooms["main"].key)


def test_without_the_option_the_template_key_is_neither_read_nor_written(
    caller_redis: redis.Redis,
) -> None:
    caller_redis.set("trtc:play:position:class_7", "42500")
    mark = bookmark(caller_redis, template=False)
    assert mark.load() is None
    mark.save("rid-1", 1.0, None)
    assert caller_redis.get("trtc:play:position:class_7") == b"42500"


def test_a_template_key_that_is_not_a_number_starts_from_the_beginning(
    caller_redis: redis.Redis,
) -> None:
    caller_redis.set("trtc:play:position:class_7", "not-a-number")
    assert bookmark(caller_redis).load() is None
