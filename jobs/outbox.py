"""The callback outbox: which pushes have events their callback URL has not received yet.

Delivery is owned by the system, not by a push's thread. An event is appended and its push
put in the outbox in one Lua step (``jobs/events.py``); a Celery task on the events queue
(``roomcast.deliver``, ``worker/callbacks.py``) sends the push's undelivered events in order
and moves its cursor past each one the receiver acknowledged; a sweeper sends the task again
for any push whose turn has come (a retry after backoff, a task lost with a killed worker).
Everything lives in Redis, so a worker's SIGKILL or a Redis restart with its AOF loses no
delivery, and at most repeats the one in flight: delivery is at least once, in order, and a
receiver dedupes by the event's ``Id`` (the ``webhook-id`` header).

Per push, in its job hash::

    callback     1 when the push has a callback URL (the URL is a secret apart:
                 ``roomcast:job:<id>:callback``, which lives as long as the record)
    seq          the last event's number (jobs/events.py)
    cb_sent      the last number the receiver acknowledged (the cursor)
    cb_failures  failed attempts in a row; cb_since when the first of them failed
    cb_error     why the last attempt failed; cb_next when the next one is due
    cb_state     'gave-up' once retrying stopped (ROOMCAST_CALLBACK_GIVE_UP_SECONDS)

and ``roomcast:outbox`` (a sorted set of request ids scored by when to look next), and
``roomcast:outbox:lock:<id>`` (the one deliverer sending a push's events now).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import cast

import redis

from .keys import METRICS_KEY, OUTBOX_KEY, PREFIX, callback_key, job_key
from .records import CallbackStatus, iso

#: Held by the one worker process sweeping the outbox for the next second.
SWEEPER_KEY = f"{PREFIX}outbox:sweeper"
#: The job hash fields a status read needs to describe the callbacks.
STATUS_FIELDS = ("callback", "seq", "cb_sent", "cb_failures", "cb_error", "cb_next", "cb_state")

# Compare-and-delete / compare-and-extend of a lock (KEYS[1]) held by token ARGV[1].
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Take a push (ARGV[1]) out of the outbox (KEYS[2]) if every event of its job (KEYS[1]) was
# delivered, or its job is gone, and release its lock (KEYS[3]) held by token ARGV[2]. One
# step: an event appended before it keeps the push in (the deliverer goes round again); one
# appended after it finds the push out and unlocked, so its own delivery task proceeds.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0
  local sent = tonumber(redis.call('HGET', KEYS[1], 'cb_sent')) or 0
  if sent < seq and redis.call('HGET', KEYS[1], 'cb_state') ~= 'gave-up' then return 0 end
end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
"""

# A deliverer's writes are fenced: they count only while it holds the lock (KEYS[2]) with
# its token (ARGV[1]) and the job (KEYS[1]) exists. Returns -1 (the lock was lost: another
# deliverer took over) or -2 (the job is gone) before the write, else falls through.
_FENCE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
"""

# The receiver acknowledged event ARGV[3]: move the cursor there from ARGV[2] (0: a replay
# moved it meanwhile, and the deliverer reads it again), forget the failures. KEYS[3] the
# counters.
_DELIVERED = (
    _FENCE
    + """
if (tonumber(redis.call('HGET', KEYS[1], 'cb_sent')) or 0) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'cb_sent', ARGV[3])
redis.call('HDEL', KEYS[1], 'cb_failures', 'cb_since', 'cb_error', 'cb_next')
redis.call('HINCRBY', KEYS[3], 'callbacks_delivered', 1)
return 1
"""
)

# Record a failed attempt for a job (KEYS[1]), fenced by its lock (KEYS[2], ARGV[1]):
# ARGV[2] the error, ARGV[3] now, ARGV[4] when to try again ('' to give up), ARGV[5] the
# request id. KEYS[3] the outbox, KEYS[4] the counters. Returns the failures in a row.
_FAILED = (
    _FENCE
    + """
local failures = redis.call('HINCRBY', KEYS[1], 'cb_failures', 1)
redis.call('HSETNX', KEYS[1], 'cb_since', ARGV[3])
redis.call('HSET', KEYS[1], 'cb_error', ARGV[2])
redis.call('HINCRBY', KEYS[4], 'callback_failures', 1)
if ARGV[4] == '' then
  redis.call('HSET', KEYS[1], 'cb_state', 'gave-up')
  redis.call('HDEL', KEYS[1], 'cb_next')
  redis.call('ZREM', KEYS[3], ARGV[5])
  redis.call('HINCRBY', KEYS[4], 'callbacks_given_up', 1)
else
  redis.call('HSET', KEYS[1], 'cb_next', ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
return failures
"""
)

# The pushes (at most ARGV[2]) whose turn has come by ARGV[1], each claimed until ARGV[3]
# so that the next sweep leaves it to the task sent now.
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id) end
return ids
"""

# Deliver a job's (KEYS[1]) events again from number ARGV[1] on, however its retries ended.
_REPLAY = """
if redis.call('HEXISTS', KEYS[1], 'callback') == 0 then return -1 end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0
redis.call('HSET', KEYS[1], 'cb_sent', math.max(0, math.min(tonumber(ARGV[1]) - 1, seq)))
redis.call('HDEL', KEYS[1], 'cb_state', 'cb_failures', 'cb_since', 'cb_next', 'cb_error')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return seq
"""


#: What a fenced write answers when it was refused.
LOCK_LOST, JOB_GONE = -1, -2


def lock_key(request_id: str) -> str:
    """The key held by the one deliverer sending a push's events."""
    return f"{PREFIX}outbox:lock:{request_id}"


def retry_delay(failures: int, longest: float, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``failures`` failed ones in a row.

    1, 2, 4, 8… seconds up to ``longest``, each shortened by up to a fifth at random so
    that the pushes of a receiver that comes back do not all knock at once.
    """
    delay = min(float(longest), 2.0 ** max(0, failures - 1))
    return delay * (1.0 - 0.2 * (rng or random).random())


@dataclass(frozen=True)
class Target:
    """What a deliverer needs to know of one push before it sends."""

    url: str
    #: The last event number the receiver acknowledged.
    sent: int
    #: The last event number.
    seq: int
    #: When the next attempt is due (0 unless retrying after a failure).
    next_at: float
    gave_up: bool
    #: Failed attempts in a row, and when the first of them failed.
    failures: int = 0
    failing_since: float | None = None


class Outbox:
    """The outbox's Redis operations (one Lua step each where a race would matter)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._unlock = client.register_script(_UNLOCK)
        self._hold = client.register_script(_HOLD)
        self._settle = client.register_script(_SETTLE)
        self._delivered = client.register_script(_DELIVERED)
        self._failed = client.register_script(_FAILED)
        self._due = client.register_script(_DUE)
        self._replay = client.register_script(_REPLAY)

    # -- the one deliverer per push ------------------------------------------------------

    def lock(self, request_id: str, token: str, seconds: float) -> bool:
        """Become the deliverer of a push's events for ``seconds`` (False: another is)."""
        return bool(self.redis.set(lock_key(request_id), token, nx=True, px=_ms(seconds)))

    def hold(self, request_id: str, token: str, seconds: float) -> bool:
        """Stay the deliverer ``seconds`` longer (False: the lock expired and was taken)."""
        return bool(self._hold(keys=[lock_key(request_id)], args=[token, _ms(seconds)]))

    def unlock(self, request_id: str, token: str) -> None:
        """Stop being the deliverer (only if still the one)."""
        self._unlock(keys=[lock_key(request_id)], args=[token])

    # -- one round of delivery -----------------------------------------------------------

    def target(self, request_id: str) -> Target | None:
        """Where and from which event to deliver; None if the job or its URL is gone."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(callback_key(request_id))
        pipe.hmget(
            job_key(request_id),
            ["callback", "seq", "cb_sent", "cb_next", "cb_state", "cb_failures", "cb_since"],
        )
        url, (flag, seq, sent, next_at, state, failures, since) = pipe.execute()
        if url is None or flag is None:
            return None
        return Target(
            url=url.decode(),
            sent=int(sent or 0),
            seq=int(seq or 0),
            next_at=float(next_at or 0.0),
            gave_up=state == b"gave-up",
            failures=int(failures or 0),
            failing_since=float(since) if since else None,
        )

    def delivered(self, request_id: str, token: str, after: int, seq: int) -> int:
        """The receiver acknowledged event ``seq``: move the cursor from ``after`` to it
        and forget the failures. 1 if moved; 0 if a replay moved the cursor meanwhile;
        ``LOCK_LOST`` or ``JOB_GONE`` (nothing written)."""
        return int(
            self._delivered(
                keys=[job_key(request_id), lock_key(request_id), METRICS_KEY],
                args=[token, after, seq],
            )
        )

    def settle(self, request_id: str, token: str) -> bool:
        """Leave the outbox and release the lock if nothing is left to deliver (False: an
        event came meanwhile)."""
        return bool(
            self._settle(
                keys=[job_key(request_id), OUTBOX_KEY, lock_key(request_id)],
                args=[request_id, token],
            )
        )

    def failed(
        self, request_id: str, token: str, error: str, at: float, retry_at: float | None
    ) -> int:
        """An attempt at time ``at`` failed: try again at ``retry_at``, or give up (None).
        Returns the failures in a row, or ``LOCK_LOST`` or ``JOB_GONE`` (nothing written)."""
        return int(
            self._failed(
                keys=[job_key(request_id), lock_key(request_id), OUTBOX_KEY, METRICS_KEY],
                args=[token, error, at, "" if retry_at is None else retry_at, request_id],
            )
        )

    # -- the sweeper and the API ---------------------------------------------------------

    def take_sweep(self, holder: str, seconds: float) -> bool:
        """Whether ``holder`` is the process to sweep the outbox for the next ``seconds``."""
        return bool(self.redis.set(SWEEPER_KEY, holder, nx=True, px=_ms(seconds)))

    def due(self, now: float, limit: int, claim_seconds: float) -> list[str]:
        """Pushes whose turn has come, each left to the caller for ``claim_seconds``."""
        ids = cast(
            "list[bytes]",
            self._due(keys=[OUTBOX_KEY], args=[now, limit, now + claim_seconds]),
        )
        return [rid.decode() for rid in ids]

    def replay(self, request_id: str, first: int) -> int | None:
        """Deliver a push's events again from number ``first`` on (retrying afresh).

        Returns the number of its last event, or None if the push has no callback URL.
        """
        seq = int(
            self._replay(
                keys=[job_key(request_id), OUTBOX_KEY], args=[first, time.time(), request_id]
            )
        )
        return None if seq < 0 else seq

    def pending(self) -> int:
        """How many pushes have events waiting for delivery."""
        return int(self.redis.zcard(OUTBOX_KEY))


def callback_status(fields: list[bytes | None]) -> CallbackStatus | None:
    """A push's ``Callbacks`` status from its hash's ``STATUS_FIELDS`` (None: no URL)."""
    url, seq, sent, failures, error, next_at, state = fields
    if url is None:
        return None
    events, delivered = int(seq or 0), int(sent or 0)
    if state == b"gave-up":
        phase = "gave-up"
    elif failures:
        phase = "retrying"
    elif delivered < events:
        phase = "delivering"
    else:
        phase = "delivered"
    return CallbackStatus(
        State=phase,
        Events=events,
        Delivered=delivered,
        Failures=int(failures or 0),
        LastError=error.decode() if error else None,
        NextAttemptAt=iso(float(next_at)) if next_at else None,
    )


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
