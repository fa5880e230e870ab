"""What happened to a push, in order: kept in a Redis stream, streamed to clients, and
delivered to the job's callback URL through the outbox (``jobs/outbox.py``).

Key ``roomcast:events:<id>`` (a Redis stream, trimmed to the last 1000 events, expiring
with the job). Every event is a JSON object with ``Id`` (``<RequestId>.<Seq>``, stable and
unique: what a receiver dedupes on), ``Seq`` (1, 2, 3… per push), ``Event`` (``queued``,
``running``, ``succeeded``, ``failed``, ``stopped``, ``clip-started``, ``clip-ended``…),
``RequestId``, ``At`` (epoch seconds) and the event's own fields.

An event is appended by one Lua script that numbers it from the job's hash (``seq``), adds
it to the stream under the stream id ``0-<Seq>`` (so that a reader resumes by number) and,
when the job has a callback URL, puts the job in the outbox, all in one step: an event
is never recorded without being due for delivery.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

import redis

from .keys import OUTBOX_KEY, events_key, job_key

log = logging.getLogger(__name__)

KEEP = 1000
FINAL_EVENTS = frozenset({"succeeded", "failed", "stopped"})
#: Seconds an outbox entry is left to the delivery task sent with the event before the
#: sweeper sends another (in case that message was lost with a broker restart).
CLAIM_SECONDS = 15.0

# Number and record one event: job the job's hash, stream its events, outbox the outbox;
# body the event's JSON object without Id and Seq, rid the request id, then the TTL, the
# outbox score and the stream's length. Returns {seq, 1 if the job was put in the outbox
# (a delivery should start), else 0}. A job whose record is gone (expired, discarded) gets
# no event: it would be numbered from 1 again. A function, so that a state change records
# its event in the same step (jobs/store.py _TRANSITION).
APPEND_FUNCTION = """
local function append_event(job, stream, outbox, body, rid, ttl, score, keep)
  if redis.call('EXISTS', job) == 0 then return {0, 0} end
  local seq = redis.call('HINCRBY', job, 'seq', 1)
  local head = '{"Id":' .. cjson.encode(rid .. '.' .. seq) .. ',"Seq":' .. seq .. ','
  redis.call('XADD', stream, 'MAXLEN', '~', keep, '0-' .. seq, 'json', head .. string.sub(body, 2))
  redis.call('EXPIRE', stream, ttl)
  local due = 0
  if redis.call('HEXISTS', job, 'callback') == 1
     and redis.call('HGET', job, 'cb_state') ~= 'gave-up' then
    due = redis.call('ZADD', outbox, 'NX', score, rid)
  end
  return {seq, due}
end
"""
_APPEND = (
    APPEND_FUNCTION
    + "return append_event(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])"
)


def event_id(request_id: str, seq: int) -> str:
    """An event's ``Id``: the push and its number, unique across the service."""
    return f"{request_id}.{seq}"


def seq_of(last_event_id: str) -> int:
    """The number in an event ``Id`` (``<RequestId>.<Seq>``) or a bare number; 0 if none.

    What an SSE client sends back as ``Last-Event-ID``, or a caller as ``After``.
    """
    tail = last_event_id.rpartition(".")[2].rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


class EventLog:
    """Appends and reads one job's events.

    ``on_due(request_id)`` is called when an event puts a job with a callback URL in the
    outbox (it was not waiting there already): the caller sends the delivery task.
    """

    def __init__(
        self,
        client: redis.Redis,
        ttl: int,
        on_due: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = client
        self.ttl = ttl
        self.on_due = on_due
        #: ``append_event`` itself, for a caller that records an event inside its own
        #: transaction (jobs/preparations.py), then calls :meth:`recorded`.
        self.script = client.register_script(_APPEND)

    def append(self, request_id: str, event: str, **fields: Any) -> int:
        """Record an event; its ``Seq``, or 0 if it could not be recorded.

        Never raises: an event must not break a push. A Redis that fails here loses the
        event (logged), not the push.
        """
        try:
            seq, due = cast(
                "list[int]",
                self.script(
                    keys=self.keys(request_id), args=self.args(request_id, event, **fields)
                ),
            )
        except redis.RedisError as exc:
            log.warning("could not record event %s: %s", event, exc)
            return 0
        self.recorded(request_id, event, bool(due))
        return int(seq)

    def keys(self, request_id: str) -> list[str]:
        """The keys ``append_event`` (``APPEND_FUNCTION``) takes, in order."""
        return [job_key(request_id), events_key(request_id), OUTBOX_KEY]

    def args(self, request_id: str, event: str, **fields: Any) -> list[Any]:
        """The arguments ``append_event`` takes after its keys, in order."""
        data = {"Event": event, "RequestId": request_id, "At": round(time.time(), 3), **fields}
        return [
            json.dumps(data, separators=(",", ":")),
            request_id,
            self.ttl,
            # Without a hook, the sweeper's next look sends the delivery.
            time.time() + (CLAIM_SECONDS if self.on_due is not None else 0.0),
            KEEP,
        ]

    def recorded(self, request_id: str, event: str, due: bool) -> None:
        """An event was recorded: start its delivery now if it put the push in the outbox."""
        if due and self.on_due is not None:
            try:
                self.on_due(request_id)
            except Exception as exc:  # noqa: BLE001 - the sweeper sends it a little later
                log.warning("could not start delivering event %s now: %s", event, exc)

    def read(
        self, request_id: str, after: int = 0, block_ms: int | None = None, count: int = 100
    ) -> list[dict[str, Any]]:
        """Events with ``Seq`` above ``after`` (waiting up to ``block_ms`` for new ones)."""
        answer = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            self.redis.xread({events_key(request_id): f"0-{after}"}, count=count, block=block_ms),
        )
        return [json.loads(fields[b"json"]) for _, entries in answer or [] for _, fields in entries]

    def between(self, request_id: str, after: int, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` events after ``Seq`` ``after``, as stored: (Seq, JSON bytes)."""
        entries = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]",
            self.redis.xrange(events_key(request_id), f"0-{after + 1}", "+", count=count),
        )
        return [(int(entry_id.split(b"-")[1]), fields[b"json"]) for entry_id, fields in entries]
