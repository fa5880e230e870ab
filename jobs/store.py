"""Job records in Redis: what the status API, Flower's neighbours and the workers share.

Layout (all keys expire with the job TTL, 3 days by default)::

    roomcast:job:<id>            hash  state, doc (JSON), progress (JSON), heartbeat, stop,
                                       seq and callback, cb_* (jobs/outbox.py)
    roomcast:events:<id>         stream  the job's events (jobs/events.py)
    roomcast:job:<id>:secrets    str   JSON of UserSig, RedisPassword, the full VideoSrc;
                                       deleted as soon as the push ends
    roomcast:jobs                zset  every job id, scored by creation time
    roomcast:jobs:state:<state>  zset  the ids in each state (Stats and State filters)
    roomcast:jobs:user:<app>:<user>, roomcast:jobs:room:<app>:<room>   zset  filters
    roomcast:publisher:<app>:<room>:<user>   str  the request id holding the publisher lease
    roomcast:metrics             hash  service-wide counters for GET /metrics (no expiry)
    roomcast:outbox              zset  pushes with undelivered callback events (jobs/outbox.py)
    roomcast:watchdog            str   the worker process looking for lost pushes (a lease
                                       of a few seconds, so that one process at a time does)
    roomcast:reply:<token>       str   JSON: a push's answer to one player command
                                       (Engine=cloud), read by the API; expires in a minute

The publisher lease makes sure that two jobs never publish as the same (SdkAppId, room,
UserId) at once: it is taken with the record (queued), renewed by the running push's
heartbeat, and released when the job ends (docs/celery.md, "Publisher lease"). A fan-out
push holds one for each of its rooms too (the hash's ``leases``).

State changes go through one Lua script, so two writers (the API stopping a queued job,
the worker starting it) can never both win.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import redis

from .errors import (
    InvalidJob,
    LastTarget,
    NotFanout,
    NotFound,
    NotRunning,
    PublisherBusy,
    QuotaExceeded,
    WorkerLost,
)
from .events import APPEND_FUNCTION, EventLog
from .keys import (
    METRICS_KEY,
    OUTBOX_KEY,
    PREFIX,
    callback_key,
    events_key,
    job_key,
    reply_key,
)
from .outbox import STATUS_FIELDS, Outbox, callback_status
from .records import (
    MAIN_TARGET,
    CallbackStatus,
    JobRecord,
    JobSecrets,
    PushRoom,
    PushStatus,
    PushTarget,
)
from .settings import Settings
from .states import State
from .stops import REQUESTED, Stop, StopCause

log = logging.getLogger(__name__)

#: Held by the one worker process that looks for lost pushes for the next few seconds.
WATCHDOG_KEY = f"{PREFIX}watchdog"
#: How long a worker's "shutting down" mark lasts (its warm shutdown is much shorter).
STOPPING_SECONDS = 300
#: How long a push's answer to a player command waits for the API to read it.
REPLY_SECONDS = 60
#: Running jobs whose heartbeats are read per round trip when looking for lost pushes.
_WATCH_PAGE = 500
#: What a read of a job takes from its hash: the record, then its callbacks' delivery.
_READ_FIELDS = ["state", "doc", "progress", "heartbeat", *STATUS_FIELDS]


# The cause of the stop recorded in a job's hash (KEYS[1]); an unreadable one reads as "api",
# as Stop.from_json reads it.
_STOP_CAUSE = """
local function stop_cause(key)
  local raw = redis.call('HGET', key, 'stop')
  if not raw then return false end
  local ok, parsed = pcall(cjson.decode, raw)
  if ok and type(parsed) == 'table' and type(parsed['Cause']) == 'string' then
    return parsed['Cause']
  end
  return 'api'
end
local function listed(item, list)
  for x in string.gmatch(list, '[^,]+') do if x == item then return true end end
  return false
end
"""

# Move a job (KEYS[1]) from one of the states ARGV[1] to ARGV[2], merging the JSON fields
# ARGV[3] into its doc and moving it between the state indexes (KEYS[2] .. state, and its
# app's, KEYS[5] .. SdkAppId .. ':state:' .. state; ARGV[4] its id). Not if a stop with
# one of the causes ARGV[5] is recorded; ARGV[6] = '1' clears the stop field. The move is
# recorded as the job's event (KEYS[3] its stream, KEYS[4] the outbox, ARGV[7..11] as
# EventLog.args gives them). Returns {moved, the state it was in, and when moved whether
# the event put the job in the outbox}.
_TRANSITION = (
    _STOP_CAUSE
    + APPEND_FUNCTION
    + """
local key = KEYS[1]
local state = redis.call('HGET', key, 'state')
if not state then return {0, false} end
if not listed(state, ARGV[1]) then return {0, state} end
local cause = stop_cause(key)
if cause and listed(cause, ARGV[5]) then return {0, state} end
local doc = cjson.decode(redis.call('HGET', key, 'doc'))
local patch = cjson.decode(ARGV[3])
for k, v in pairs(patch) do doc[k] = v end
redis.call('HSET', key, 'state', ARGV[2], 'doc', cjson.encode(doc))
for _, prefix in ipairs({KEYS[2], KEYS[5] .. string.format('%d', doc['SdkAppId']) .. ':state:'}) do
  local score = redis.call('ZSCORE', prefix .. state, ARGV[4])
  if score then
    redis.call('ZREM', prefix .. state, ARGV[4])
    redis.call('ZADD', prefix .. ARGV[2], score, ARGV[4])
  end
end
if ARGV[6] == '1' then redis.call('HDEL', key, 'stop') end
local event = append_event(key, KEYS[3], KEYS[4], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
return {1, state, event[2]}
"""
)

# Record a stop (ARGV[1]) in a job's hash (KEYS[1]) unless one stands: a stop a person or a
# script asked for (causes ARGV[2]) stands against any later one; any other stands only
# against a later one that was not asked for (ARGV[3] = '0'). So a revoke that lands during
# a deploy's shutdown wins, and a shutdown never hides a revoke. Returns 1 if recorded.
_REQUEST_STOP = (
    _STOP_CAUSE
    + """
local cause = stop_cause(KEYS[1])
if cause and (listed(cause, ARGV[2]) or ARGV[3] ~= '1') then return 0 end
redis.call('HSET', KEYS[1], 'stop', ARGV[1])
return 1
"""
)


# The live job other than ``me`` that holds ``lease``, if any (``jobs``: the job key prefix).
# A holder whose job is no longer queued or running has ended without releasing its lease.
_HELD_BY_OTHER = """
local function held_by_other(lease, me, jobs)
  local holder = redis.call('GET', lease)
  if holder and holder ~= me then
    local state = redis.call('HGET', jobs .. holder, 'state')
    if state == 'queued' or state == 'running' then return holder end
  end
  return nil
end
"""

# Take or renew the publisher leases of a running job (KEYS[1], its hash; ARGV: request id,
# lease in ms, job key prefix): its own room's, and a fan-out's rooms' (``leases``, a JSON
# list). Returns the other job holding its own room's, or nil once it is ours. A holder
# whose job is no longer queued or running has ended without releasing (a crash between
# its end and its release, a Redis blip): its lease is stale and taken over. A fan-out room
# another live job took meanwhile stays that job's: one room is not worth the push.
# Only a running job claims, so a heartbeat racing the end of its push cannot re-take it.
_CLAIM = (
    _HELD_BY_OTHER
    + """
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'running' then return 'ended:' .. (st or 'gone') end
local function other(lease) return held_by_other(lease, ARGV[1], ARGV[3]) end
local lease = redis.call('HGET', KEYS[1], 'publisher')
if lease then
  local holder = other(lease)
  if holder then return holder end
  redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
end
local rooms = redis.call('HGET', KEYS[1], 'leases')
if rooms then
  for _, room in ipairs(cjson.decode(rooms)) do
    if not other(room) then redis.call('SET', room, ARGV[1], 'PX', ARGV[2]) end
  end
end
return false
"""
)

# Store a progress snapshot (ARGV[1]) in the job's hash (KEYS[1]) and add what was sent since
# the previous one to the service's counters (KEYS[2]). The job remembers what it already
# counted (metered_*), so the counters grow by deltas and never count a byte twice. A total
# below the one remembered is a new run of a handed-back job, whose totals start again at 0.
_SET_PROGRESS = """
redis.call('HSET', KEYS[1], 'progress', ARGV[1])
local function meter(field, counter, value)
  local seen = tonumber(redis.call('HGET', KEYS[1], field)) or 0
  local sent = value - seen
  if value < seen then sent = value end
  if sent > 0 then redis.call('HINCRBY', KEYS[2], counter, sent) end
  redis.call('HSET', KEYS[1], field, value)
end
meter('metered_bytes', 'sent_bytes', tonumber(ARGV[2]))
meter('metered_frames', 'sent_frames', tonumber(ARGV[3]))
return 0
"""

# Release a job's publisher leases (KEYS[1], its hash; ARGV[1], its request id), each only
# if it still holds it: a lease taken over by a later job is not ours to delete.
_RELEASE = """
local function release(lease)
  if redis.call('GET', lease) == ARGV[1] then redis.call('DEL', lease) end
end
local lease = redis.call('HGET', KEYS[1], 'publisher')
if lease then release(lease) end
local rooms = redis.call('HGET', KEYS[1], 'leases')
if rooms then for _, room in ipairs(cjson.decode(rooms)) do release(room) end end
return 0
"""


# A fan-out push's rooms (jobs/records.py JobRecord.Targets) change in one step each, record
# (KEYS[1], the job's hash) and secrets (KEYS[2]) together, and only while the push runs or
# waits to (queued, or handed back: its next run reads the record): the state is checked
# and the doc rewritten as _TRANSITION does. ARGV[1] is the TargetId of
# the push's own room. Each answers {"ok", TargetId} or {what went wrong, detail}.
_TARGETS = (
    _HELD_BY_OTHER
    + """
local function fanout(key)
  local state = redis.call('HGET', key, 'state')
  if state ~= 'running' and state ~= 'queued' then return nil, nil, {'state', state or ''} end
  local doc = cjson.decode(redis.call('HGET', key, 'doc'))
  local targets = doc['Targets']
  if targets == nil or targets == cjson.null then return nil, nil, {'notfanout', ''} end
  return doc, targets, nil
end
-- The publisher lease of a fan-out room (ARGV[3]: the lease key prefix, ARGV[4]: the
-- request id, ARGV[5]: the job key prefix), and the job's ``leases`` list kept with it.
local function lease_of(doc, t)
  local app = string.format('%d', doc['SdkAppId'])
  return ARGV[3] .. app .. ':' .. t['Room']['RtmpRoom'] .. ':' .. t['UserId']
end
local function set_leases(update)
  local raw = redis.call('HGET', KEYS[1], 'leases')
  local leases = raw and cjson.decode(raw) or {}
  local kept = {}
  for _, lease in ipairs(leases) do if lease ~= update.drop then table.insert(kept, lease) end end
  if update.add then table.insert(kept, update.add) end
  if #kept == 0 then redis.call('HDEL', KEYS[1], 'leases')
  else redis.call('HSET', KEYS[1], 'leases', cjson.encode(kept)) end
end
local function save(doc, targets, id, sig)
  doc['Targets'] = targets
  redis.call('HSET', KEYS[1], 'doc', cjson.encode(doc))
  local raw = redis.call('GET', KEYS[2])
  if not raw then return end
  local secrets = cjson.decode(raw)
  if type(secrets['TargetSigs']) ~= 'table' then secrets['TargetSigs'] = {} end
  secrets['TargetSigs'][id] = sig
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl > 0 then
    redis.call('SET', KEYS[2], cjson.encode(secrets), 'PX', ttl)
  else
    redis.call('SET', KEYS[2], cjson.encode(secrets))
  end
end
"""
)

# Add the target ARGV[2] (JSON; an empty TargetId takes the first free t<n>) with UserSig
# ARGV[7], taking its publisher lease for ARGV[6] ms. Refused: a TargetId in use ({"id",
# it}), a room this UserId already publishes into ({"room", the TargetId that does}), or
# into for another live job ({"busy", its request id}).
_ADD_TARGET = (
    _TARGETS
    + """
local doc, targets, refused = fanout(KEYS[1])
if refused then return refused end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'state', 'ending'} end
local target = cjson.decode(ARGV[2])
local function used(id)
  if id == ARGV[1] then return true end
  for _, t in ipairs(targets) do if t['TargetId'] == id then return true end end
  return false
end
local id = target['TargetId']
if id == '' then
  local n = #targets + 1
  while used('t' .. n) do n = n + 1 end
  id = 't' .. n
  target['TargetId'] = id
elseif used(id) then
  return {'id', id}
end
local room, user = target['Room']['RtmpRoom'], target['UserId']
if not doc['MainRemoved'] and doc['Room']['RtmpRoom'] == room and doc['UserId'] == user then
  return {'room', ARGV[1]}
end
for _, t in ipairs(targets) do
  if t['Room']['RtmpRoom'] == room and t['UserId'] == user then return {'room', t['TargetId']} end
end
local lease = lease_of(doc, target)
local holder = held_by_other(lease, ARGV[4], ARGV[5])
if holder then return {'busy', holder} end
redis.call('SET', lease, ARGV[4], 'PX', ARGV[6])
set_leases({add = lease})
table.insert(targets, target)
save(doc, targets, id, ARGV[7])
return {'ok', id}
"""
)

# Remove the target ARGV[2] (its UserSig goes too). Refused: an unknown one ({"unknown"}),
# or the last one left ({"last"}).
_REMOVE_TARGET = (
    _TARGETS
    + """
local doc, targets, refused = fanout(KEYS[1])
if refused then return refused end
local id = ARGV[2]
local left = #targets
if not doc['MainRemoved'] then left = left + 1 end
local found = nil
if id == ARGV[1] then
  if not doc['MainRemoved'] then found = 0 end
else
  for i, t in ipairs(targets) do if t['TargetId'] == id then found = i end end
end
if found == nil then return {'unknown', id} end
if left <= 1 then return {'last', id} end
if found == 0 then
  doc['MainRemoved'] = true
  local main = redis.call('HGET', KEYS[1], 'publisher')
  if main and redis.call('GET', main) == ARGV[4] then redis.call('DEL', main) end
  redis.call('HDEL', KEYS[1], 'publisher')
else
  local lease = lease_of(doc, targets[found])
  if redis.call('GET', lease) == ARGV[4] then redis.call('DEL', lease) end
  set_leases({drop = lease})
  table.remove(targets, found)
end
save(doc, targets, id, nil)
return {'ok', id}
"""
)


def publisher_key(app_id: int, rtmp_room: str, user_id: str) -> str:
    """The lease key of one publisher: a user of an application in an RTMP room."""
    return f"{PREFIX}publisher:{app_id}:{rtmp_room}:{user_id}"


def secrets_key(request_id: str) -> str:
    """The Redis key holding a job's secrets until it ends."""
    return f"{PREFIX}job:{request_id}:secrets"


class Beat(NamedTuple):
    """What one heartbeat of a running push found (``JobStore.heartbeats``)."""

    #: Whether the push still holds its publisher lease (renewed by the beat).
    held: bool
    #: The ``RunId`` of the job's current run: another one than the push's is a takeover.
    run_id: str | None
    #: A stop requested for the job, if any.
    stop: Stop | None


#: Replies per push in a heartbeat pipeline (``JobStore._heartbeat_pipeline``).
_BEAT_REPLIES = 5


def _run_id(raw: bytes | None) -> str | None:
    try:
        return None if raw is None else json.loads(raw).get("RunId")
    except ValueError:
        return None


def control_channel(request_id: str) -> str:
    """The pub/sub channel carrying control messages (stop...) to a running push."""
    return f"{PREFIX}control:{request_id}"


def now() -> float:
    """Wall-clock time as stored in records (seconds since the epoch)."""
    return time.time()


@dataclass
class Job:
    """One job as read from Redis: its state, record and latest progress."""

    request_id: str
    state: State
    record: JobRecord
    progress: dict[str, Any] | None
    heartbeat: float | None
    callbacks: CallbackStatus | None = None

    def status(self) -> PushStatus:
        """The status API's answer (a record never holds a secret)."""
        return PushStatus.of(
            self.request_id, self.state, self.record, self.progress, self.callbacks
        )

    def as_status(self) -> dict[str, Any]:
        """The status answer as JSON."""
        return self.status().answer()


class JobStore:
    """Reads and writes job records; shared by the API and the workers."""

    def __init__(
        self,
        client: redis.Redis,
        ttl: int,
        lost_after: float,
        requeue: Callable[[Job], None] | None = None,
        max_attempts: int = 3,
        deliver: Callable[[str], None] | None = None,
        quotas: Callable[[int], Quota] | None = None,
    ) -> None:
        self.redis = client
        #: Each SdkAppId's quota, checked as a job is created (None: no quotas).
        self.quotas = quotas
        self.ttl = ttl
        self.lost_after = lost_after
        # Sends a handed-back job to the queue again (the Celery task); None: fail instead.
        self._requeue = requeue
        self.max_attempts = max_attempts
        self._transition = client.register_script(_TRANSITION)
        # ``deliver(request_id)`` sends the delivery task of a push whose events wait for
        # its callback URL (worker/callbacks.py); without it the outbox's sweeper does.
        self.events = EventLog(client, ttl, on_due=deliver)
        self.outbox = Outbox(client)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._set_progress = client.register_script(_SET_PROGRESS)
        self._request_stop = client.register_script(_REQUEST_STOP)
        self._add_target = client.register_script(_ADD_TARGET)
        self._remove_target = client.register_script(_REMOVE_TARGET)

    def create(
        self,
        request_id: str,
        record: JobRecord,
        secrets: JobSecrets,
        replacing: bool = False,
        slots: int = 1,
    ) -> None:
        """Record a new queued job, its secrets and its publisher lease, all or nothing.

        Raises :class:`QuotaExceeded` first (before anything is stopped to replace): with
        ``replacing``, the job holding the lease does not count, since it is about to end.
        Raises :class:`PublisherBusy` when another queued or running job holds the lease.
        The lease is checked and taken in one optimistic transaction (WATCH), so two
        concurrent submissions for one publisher never both win, and a job is never
        recorded without its lease.

        A push split into shards (jobs/shards.py) takes ``slots`` of its app's quota, one a
        shard; a shard (``record.ShardOf``) is part of a push admitted already: it takes no
        lease and is not checked against the quota again.
        """
        created = record.CreatedAt
        key = job_key(request_id)
        part = record.ShardOf is not None
        lease = publisher_key(record.SdkAppId, record.Room.RtmpRoom, record.UserId)
        rooms = {
            publisher_key(record.SdkAppId, t.Room.RtmpRoom, t.UserId): t
            for t in record.Targets or ()
        }
        quota = self.quotas(record.SdkAppId) if self.quotas is not None else Quota()
        minute = rate_key(record.SdkAppId, created)
        active = [app_index(record.SdkAppId, s) for s in (State.QUEUED, State.RUNNING)]
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # The quota's counts are watched too: two submissions never both take
                    # the last slot, and a refused one leaves nothing behind.
                    pipe.watch(*active, minute, *([] if part else [lease]), *rooms)  # type: ignore[no-untyped-call]
                    self._check_room_leases(pipe, rooms)
                    holder = None if part else cast("bytes | None", pipe.get(lease))
                    busy = holder is not None and self._active(holder.decode())
                    leaving = 1 if busy and replacing else 0
                    if not part:
                        self._check_quota(
                            pipe, record.SdkAppId, quota, active, minute, leaving - slots + 1
                        )
                    if busy:
                        assert holder is not None
                        raise PublisherBusy(holder.decode())
                    pipe.multi()
                    # Queued, the lease lives as long as the record: a job may wait long for
                    # a free worker. Running, the heartbeat shortens it to lost_after.
                    if not part:
                        pipe.set(lease, request_id, ex=self.ttl)
                    for room_lease in rooms:
                        pipe.set(room_lease, request_id, ex=self.ttl)
                    pipe.hset(
                        key,
                        mapping={
                            "state": State.QUEUED.value,
                            # What was set, so that the record reads back as it was written.
                            "doc": record.model_dump_json(exclude_unset=True),
                            **({} if part else {"publisher": lease}),
                            **({"leases": json.dumps(list(rooms))} if rooms else {}),
                            # The URL itself is a secret of its own (callback_key): unlike
                            # the others it outlives the push, whose events follow it.
                            **({"callback": "1"} if secrets.CallbackUrl else {}),
                        },
                    )
                    pipe.expire(key, self.ttl)
                    pipe.set(secrets_key(request_id), secrets.model_dump_json(), ex=self.ttl)
                    if secrets.CallbackUrl:
                        pipe.set(callback_key(request_id), secrets.CallbackUrl, ex=self.ttl)
                    pipe.hincrby(METRICS_KEY, "created", 1)
                    if not part:
                        pipe.incr(minute)
                        pipe.expire(minute, 120)
                    for index in self._indexes(record, State.QUEUED):
                        pipe.zadd(index, {request_id: created})
                        pipe.zremrangebyscore(index, "-inf", created - self.ttl)
                        pipe.expire(index, self.ttl)
                    # Jobs move between the state indexes: trim the others too.
                    for state in State:
                        for index in (
                            f"{PREFIX}jobs:state:{state.value}",
                            app_index(record.SdkAppId, state),
                        ):
                            pipe.zremrangebyscore(index, "-inf", created - self.ttl)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue  # the lease changed hands meanwhile: look again
        self.events.append(request_id, State.QUEUED.value)

    def _check_quota(
        self,
        pipe: Any,
        app: int,
        quota: Quota,
        active: list[str],
        minute: str,
        leaving: int,
    ) -> None:
        """Raise QuotaExceeded if ``app`` may not start another push now (``leaving``:
        pushes about to end that free their slot for this one)."""
        at = now()
        if quota.concurrent:
            low = at - self.ttl
            running = sum(int(pipe.zcount(index, low, "+inf")) for index in active) - leaving
            if running >= quota.concurrent:
                raise QuotaExceeded(
                    f"SdkAppId {app} has {running} pushes queued or running, its limit; "
                    "stop one or try again when one ends",
                    retry_after=QUOTA_RETRY_SECONDS,
                )
        if quota.per_minute and int(pipe.get(minute) or 0) >= quota.per_minute:
            raise QuotaExceeded(
                f"SdkAppId {app} has submitted {quota.per_minute} pushes this minute, its limit",
                retry_after=max(1, 60 - int(at) % 60),
            )

    def _check_room_leases(self, pipe: Any, rooms: dict[str, PushTarget]) -> None:
        """Raise PublisherBusy when another live job publishes as one of a fan-out's rooms'
        users into that room (``rooms``: lease key → target; ``pipe`` watches them)."""
        if not rooms:
            return
        for target, holder in zip(rooms.values(), pipe.mget(list(rooms)), strict=True):
            if holder is not None and self._active(holder.decode()):
                raise PublisherBusy(
                    holder.decode(),
                    f"target {target.TargetId!r}: UserId {target.UserId!r} already publishes "
                    f"into room {target.Room.RtmpRoom!r} (request {holder.decode()}): stop "
                    "that push first, or publish as another UserId",
                )

    def _active(self, request_id: str) -> bool:
        """Whether a job is queued or running. A running job whose worker died holds its
        lease no longer than ``lost_after``: the heartbeat no longer renews it."""
        job = self.get(request_id)
        return job is not None and not job.state.finished

    def discard(self, request_id: str) -> None:
        """Remove a job that was recorded but could not be enqueued, lease included."""
        job = self.get(request_id)
        self._release(keys=[job_key(request_id)], args=[request_id])
        pipe = self.redis.pipeline(transaction=True)
        # Its "queued" event goes too: a push that never was has nothing to deliver.
        pipe.delete(
            job_key(request_id),
            secrets_key(request_id),
            events_key(request_id),
            callback_key(request_id),
        )
        pipe.zrem(OUTBOX_KEY, request_id)
        if job is not None:
            for index in self._indexes(job.record, job.state):
                pipe.zrem(index, request_id)
        pipe.execute()

    def claim_publisher(self, request_id: str) -> None:
        """Take (or renew) a running job's publisher lease before it publishes.

        The API took the lease at submit; this is the worker's own check, in case the
        lease was lost meanwhile (expired during a Redis outage, or a record written by an
        older API). Raises :class:`PublisherBusy` when another live job holds it.
        """
        holder = self._claim_once(request_id)
        if holder is not None:
            raise PublisherBusy(
                holder,
                f"not publishing: request {holder} already publishes as this UserId in this room",
            )

    def _claim_once(self, request_id: str) -> str | None:
        holder = self._claim(keys=[job_key(request_id)], args=self._claim_args(request_id))
        return None if holder is None else cast(bytes, holder).decode()

    def _claim_args(self, request_id: str) -> list[Any]:
        return [request_id, int(self.lost_after * 1000), f"{PREFIX}job:"]

    def _indexes(self, record: JobRecord, state: State) -> list[str]:
        app = record.SdkAppId
        return [
            f"{PREFIX}jobs",
            f"{PREFIX}jobs:state:{state.value}",
            f"{PREFIX}jobs:user:{app}:{record.UserId}",
            f"{PREFIX}jobs:room:{app}:{record.Room.RtmpRoom}",
            app_index(app),
            app_index(app, state),
        ]

    def secrets(self, request_id: str) -> JobSecrets | None:
        """A job's secrets, or None once the job has ended (they are deleted then)."""
        raw = cast("bytes | None", self.redis.get(secrets_key(request_id)))
        return None if raw is None else JobSecrets.model_validate_json(raw)

    def forget_secrets(self, request_id: str) -> None:
        """Delete a job's secrets (called when it ends)."""
        self.redis.delete(secrets_key(request_id))

    def get(self, request_id: str) -> Job | None:
        """The job, or None if unknown or expired. Only reads: a push whose worker died
        is found by the workers' watchdog (:meth:`reap_lost`), not by whoever reads it."""
        raw = cast(
            "list[bytes | None]",
            self.redis.hmget(job_key(request_id), _READ_FIELDS),
        )
        return _parse(request_id, raw)

    def transition(
        self,
        request_id: str,
        allowed: Iterable[State],
        to: State,
        unless_stopped_by: Iterable[StopCause] = (),
        clear_stop: bool = False,
        **fields: Any,
    ) -> tuple[bool, State | None]:
        """Move a job to ``to`` if it is in one of ``allowed`` states, merging ``fields``;
        not if a stop with a cause in ``unless_stopped_by`` is recorded. ``clear_stop``
        forgets the recorded stop in the same step.

        Returns (whether it moved, the state it was in).
        """
        # Every state change, whoever makes it (worker, API, reaper), is an event, recorded
        # in the same step: no crash between the two can lose it.
        extra = {k: fields[k] for k in ("Reason", "Error") if fields.get(k) is not None}
        ok, previous, *due = self._transition(
            keys=[
                job_key(request_id),
                f"{PREFIX}jobs:state:",
                *self.events.keys(request_id)[1:],
                f"{PREFIX}jobs:app:",
            ],
            args=[
                ",".join(s.value for s in allowed),
                to.value,
                json.dumps(fields),
                request_id,
                ",".join(c.value for c in unless_stopped_by),
                "1" if clear_stop else "0",
                *self.events.args(request_id, to.value, **extra),
            ],
        )
        if ok:
            self.events.recorded(request_id, to.value, bool(due and due[0]))
            if to.finished:
                self._count_end(to, fields.get("Error"))
        return bool(ok), (State(previous.decode()) if previous else None)

    def finish(
        self,
        request_id: str,
        to: State,
        allowed: tuple[State, ...] = (State.QUEUED, State.RUNNING),
        **fields: Any,
    ) -> bool:
        """End a job that is in one of ``allowed`` states in ``to`` (with FinishedAt)."""
        moved, _ = self.transition(request_id, allowed, to, FinishedAt=now(), **fields)
        if moved:
            self.forget_secrets(request_id)
            # Only when this call ended the job: otherwise it may still be publishing.
            self._release(keys=[job_key(request_id)], args=[request_id])
            if to is not State.SUCCEEDED:
                # A shard that started a moment later ends its own play a moment later.
                self.end_shards(request_id, to)
        return moved

    def end_shards(self, request_id: str, state: State) -> None:
        """A push split into shards (jobs/shards.py) was stopped or failed: its shards that
        still run or wait stop too, so no room goes on without the push."""
        job = self.get(request_id)
        for shard in (job.record.Shards if job is not None else None) or ():
            self.stop(shard, Stop(StopCause.PUSH_ENDED, f"{request_id}, {state.value}"))

    def _count_end(self, to: State, error: dict[str, Any] | None) -> None:
        """Count an ended push for /metrics: by final state, and a failure by Error.Code."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(METRICS_KEY, f"ended:{to.value}", 1)
        if to is State.FAILED:
            code = (error or {}).get("Code") or "Unknown"
            pipe.hincrby(METRICS_KEY, f"error:{code}", 1)
        pipe.execute()

    def count(self, **increments: int) -> None:
        """Add to service-wide counters (see METRICS_KEY); zero increments are skipped."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name, by in increments.items():
                if by:
                    pipe.hincrby(METRICS_KEY, name, by)
            pipe.execute()

    def counters(self) -> dict[str, int]:
        """The service-wide counters (see METRICS_KEY)."""
        raw = cast("dict[bytes, bytes]", self.redis.hgetall(METRICS_KEY))
        return {k.decode(): int(v) for k, v in raw.items()}

    def set_progress(self, request_id: str, progress: dict[str, Any]) -> None:
        """Store the latest progress snapshot (about once a second), counting what was sent."""
        self._set_progress(
            keys=[job_key(request_id), METRICS_KEY],
            args=[
                json.dumps(progress),
                int(progress.get("Bytes") or 0),
                int(progress.get("Frames") or 0),
            ],
        )

    def beat(self, request_id: str) -> bool:
        """Prove that the push is alive and renew its publisher lease.

        Returns False when another live job holds the lease (this one lost it, e.g. while
        cut off from Redis for longer than the lease): the push must stop publishing.
        """
        held, _ = self.heartbeat(request_id)
        return held

    def heartbeat(self, request_id: str) -> tuple[bool, str | None]:
        """``beat()``, and which run of the job is current, in one round trip."""
        beat = self.heartbeats([request_id]).get(request_id)
        if beat is None:
            raise redis.exceptions.ResponseError(f"the record of {request_id} is not a job's")
        return beat.held, beat.run_id

    def heartbeats(self, request_ids: Sequence[str]) -> dict[str, Beat]:
        """A heartbeat for many pushes in one round trip: a worker process's pushes.

        Separate round trips per push were a tenth of a busy worker's time. A record Redis
        answers with errors for (not a job's hash) is logged and left out, so that it does
        not cost the others their beat.
        """
        replies = self._heartbeat_pipeline(request_ids).execute(raise_on_error=False)
        if any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
            # Redis lost its scripts (a restart): load the claim again and beat once more.
            self.redis.script_load(_CLAIM)
            replies = self._heartbeat_pipeline(request_ids).execute(raise_on_error=False)
        beats: dict[str, Beat] = {}
        for i, request_id in enumerate(request_ids):
            mine = replies[_BEAT_REPLIES * i : _BEAT_REPLIES * (i + 1)]
            errors = [reply for reply in mine if isinstance(reply, Exception)]
            if errors:
                log.warning("heartbeat of %s failed: %s", request_id, errors[0])
                continue
            _, _, holder, raw, stop = mine
            beats[request_id] = Beat(
                held=holder is None,
                run_id=_run_id(raw),
                stop=None if stop is None else Stop.from_json(stop),
            )
        return beats

    def _heartbeat_pipeline(self, request_ids: Sequence[str]) -> redis.client.Pipeline:
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            key = job_key(request_id)
            pipe.hset(key, "heartbeat", now())
            # A push may outlive the record TTL (MaxDuration up to 7 days): keep it alive.
            pipe.expire(key, self.ttl)
            # EVALSHA, not the registered Script: in a pipeline, redis-py asks SCRIPT EXISTS
            # first, a second round trip on every beat.
            pipe.evalsha(self._claim.sha, 1, key, *self._claim_args(request_id))
            pipe.hget(key, "doc")
            pipe.hget(key, "stop")
        return pipe

    def stop_requests(self, request_ids: Sequence[str]) -> dict[str, Stop | None]:
        """``stop_requested()`` for many pushes in one round trip (errors read as none)."""
        pipe = self.redis.pipeline(transaction=False)
        for request_id in request_ids:
            pipe.hget(job_key(request_id), "stop")
        flags: dict[str, Stop | None] = {}
        for request_id, raw in zip(request_ids, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(raw, Exception):
                log.warning("stop flag of %s unreadable: %s", request_id, raw)
                raw = None
            flags[request_id] = None if raw is None else Stop.from_json(raw)
        return flags

    def stop(self, request_id: str, stop: Stop) -> State | None:
        """Stop a job however it is: the one place every stop path goes through.

        A queued job ends ``stopped`` at once (it never starts: a worker starts only a
        ``queued`` job); a running one is asked to stop (:meth:`request_stop`). Returns the
        state the stop found: ``QUEUED`` only for the call that ended a queued job,
        ``RUNNING`` when the push was asked, a finished state as it was, None if unknown.
        A push split into shards stops them first (:meth:`stop_all`).
        """
        return self.stop_all(request_id, stop)[request_id]

    def stop_all(self, request_id: str, stop: Stop) -> dict[str, State | None]:
        """:meth:`stop` a push's shards (jobs/shards.py), then the push; what each stop
        found, by request id (the push's last): a caller tells Celery of each one it ended
        while queued."""
        job = self.get(request_id)
        shards = (job.record.Shards if job is not None else None) or ()
        found = {shard: self._stop_one(shard, self.get(shard), stop) for shard in shards}
        found[request_id] = self._stop_one(request_id, job, stop)
        return found

    def _stop_one(self, request_id: str, job: Job | None, stop: Stop) -> State | None:
        if job is None:
            return None
        if job.state is State.QUEUED:
            ended = _ended_by(stop, stop.reason_queued)
            if self.finish(request_id, State.STOPPED, allowed=(State.QUEUED,), **ended):
                return State.QUEUED
            job = self.get(request_id)  # a worker started it meanwhile, or another stop won
            if job is None:
                return None
        if job.state is not State.RUNNING:
            return job.state
        self.request_stop(request_id, stop)
        return State.RUNNING

    def request_stop(self, request_id: str, stop: Stop) -> None:
        """Ask a running push to stop: a flag it reads at start, and a message it hears.

        A stop a person or a script asked for (``REQUESTED``) stands against any later
        one, and replaces one that was not asked for: a revoke that lands during a deploy's
        shutdown makes the push end stopped, not handed back (``hand_back`` checks).
        """
        self._request_stop(
            keys=[job_key(request_id)],
            args=[
                stop.to_json(),
                ",".join(c.value for c in REQUESTED),
                "1" if stop.cause in REQUESTED else "0",
            ],
        )
        self.redis.publish(control_channel(request_id), stop.message())

    def send_command(self, request_id: str, command: dict[str, Any]) -> int:
        """Publish a player command to a running push; how many listeners got it."""
        return int(self.redis.publish(control_channel(request_id), json.dumps(command)))

    def reply(self, token: str, answer: dict[str, Any]) -> None:
        """A push's answer to the command sent with reply key ``token``; kept a minute."""
        self.redis.set(reply_key(token), json.dumps(answer), ex=REPLY_SECONDS)

    def reply_of(self, token: str) -> dict[str, Any] | None:
        """The answer to the command sent with reply key ``token``; None until there is one."""
        raw = cast("bytes | None", self.redis.get(reply_key(token)))
        return None if raw is None else cast("dict[str, Any]", json.loads(raw))

    def add_target(
        self, request_id: str, target_id: str | None, room: PushRoom, user_id: str, user_sig: str
    ) -> str:
        """Add a room to a fan-out push that runs or waits to: to its record, and its UserSig
        to its secrets, in one step. Returns its TargetId (``target_id``, or the first free
        ``t<n>``). Raises NotFound, NotRunning, NotFanout, or InvalidJob for a TargetId in
        use or a room this UserId publishes into already."""
        target = {
            "TargetId": target_id or "",
            "Room": room.model_dump(exclude_none=True),
            "UserId": user_id,
        }
        outcome, detail = self._targets_call(
            self._add_target, request_id, json.dumps(target), str(self.ttl * 1000), user_sig
        )
        if outcome == "busy":
            raise PublisherBusy(
                detail,
                f"UserId {user_id!r} already publishes into room {room.RtmpRoom!r} (request "
                f"{detail}): stop that push first",
            )
        if outcome == "id":
            raise InvalidJob(
                f"TargetId {detail!r} is taken in this push: give another", field="TargetId"
            )
        if outcome == "room":
            raise InvalidJob(
                f"target {detail!r} already publishes as UserId {user_id!r} into room "
                f"{room.RtmpRoom!r}: TRTC lets one user publish once per room",
                field="UserId",
            )
        return detail

    def remove_target(self, request_id: str, target_id: str) -> None:
        """Remove a room from the record of a fan-out push that runs or waits to (and its
        UserSig). Raises
        NotFound (no such push or target), NotRunning, NotFanout, or LastTarget."""
        outcome, _ = self._targets_call(self._remove_target, request_id, target_id)
        if outcome == "unknown":
            raise NotFound(f"push {request_id} has no target {target_id!r}")
        if outcome == "last":
            raise LastTarget(
                f"target {target_id!r} is the last room this push publishes to: stop the push "
                "instead"
            )

    def _targets_call(self, script: Any, request_id: str, *args: str) -> tuple[str, str]:
        """Run a target script; raise what every one of them may answer."""
        first, *rest = args
        raw = script(
            keys=[job_key(request_id), secrets_key(request_id)],
            args=[MAIN_TARGET, first, f"{PREFIX}publisher:", request_id, f"{PREFIX}job:", *rest],
        )
        outcome, detail = (part.decode() for part in cast("list[bytes]", raw))
        if outcome == "state" and not detail:
            raise NotFound(f"no push with request id {request_id!r}")
        if outcome == "state":
            raise NotRunning(f"the push is {detail}: its targets change while it runs or waits to")
        if outcome == "notfanout":
            raise NotFanout()
        return outcome, detail

    def target(self, request_id: str, target_id: str) -> tuple[JobRecord, PushTarget, str] | None:
        """A fan-out push's record, its target ``target_id`` and that target's UserSig, in
        one round trip; None when the push, the target or its UserSig is gone."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(job_key(request_id), "doc")
        pipe.get(secrets_key(request_id))
        doc, raw = pipe.execute()
        if doc is None or raw is None:
            return None
        record = JobRecord.model_validate_json(doc)
        sig = JobSecrets.model_validate_json(raw).TargetSigs.get(target_id)
        found = [t for t in record.Targets or [] if t.TargetId == target_id]
        return (record, found[0], sig) if found and sig else None

    def clear_stop(self, request_id: str, cause: StopCause) -> None:
        """Forget a stop flag with this cause (meant for an earlier run of the job)."""
        stop = self.stop_requested(request_id)
        if stop is not None and stop.cause is cause:
            self.redis.hdel(job_key(request_id), "stop")

    def stop_requested(self, request_id: str) -> Stop | None:
        """The stop requested for the job, if any (read at start and after a signal)."""
        raw = cast("bytes | None", self.redis.hget(job_key(request_id), "stop"))
        return None if raw is None else Stop.from_json(raw)

    def hand_back(self, job: Job, reason: str) -> bool:
        """Put a running job back in the queue, to continue from its position elsewhere.

        False when it may not (no requeue hook, or ``max_attempts`` runs already): the
        caller then ends it. The job keeps its publisher lease (same request id).
        """
        attempts = job.record.Attempts
        if self._requeue is None or attempts >= self.max_attempts:
            return False
        position = (job.progress or {}).get("Position")
        # Not if a person or a script asked for a stop meanwhile; the stop that ended this
        # run (a worker shutting down) is not for the next one. One atomic step.
        moved, _ = self.transition(
            job.request_id,
            (State.RUNNING,),
            State.QUEUED,
            unless_stopped_by=REQUESTED,
            clear_stop=True,
            Attempts=attempts + 1,
            ResumeFrom=position if job.record.Mode != "live" else None,
            Reason=reason,
        )
        if moved:
            self._requeue(job)
        return moved

    def requeue(self, job: Job) -> bool:
        """Send a queued job's task again (a worker that took it may not run it)."""
        if self._requeue is None:
            return False
        self._requeue(job)
        return True

    def mark_stopping(self, worker: str, stopping: bool = True) -> None:
        """Say that Celery worker ``worker`` is shutting down (or, at its start, is not).

        Its consumer may still take a message or two before it stops consuming, the very
        pushes its shutdown just handed back among them: they must go to another worker.
        """
        key = f"{PREFIX}worker-stopping:{worker}"
        if stopping:
            self.redis.set(key, 1, ex=STOPPING_SECONDS)
        else:
            self.redis.delete(key)

    def stopping(self, worker: str) -> bool:
        """Whether Celery worker ``worker`` is shutting down (:meth:`mark_stopping`)."""
        return bool(self.redis.exists(f"{PREFIX}worker-stopping:{worker}"))

    def take_watch(self, holder: str, seconds: float) -> bool:
        """Whether ``holder`` is the process to look for lost pushes for the next ``seconds``.

        Every worker process runs a watchdog; when each read every running job, the reads
        grew with workers × pushes (eight workers with 100 pushes: 270 records a second,
        16% of each worker's Python time, py-spy, docs/benchmarks.md). One lease, taken by
        whoever asks first once it has expired, leaves one of them looking at a time.
        """
        return bool(self.redis.set(WATCHDOG_KEY, holder, nx=True, px=max(1, int(seconds * 1000))))

    def reap_lost(self) -> int:
        """Hand back (or fail) each running job whose worker went silent; how many.

        Reads the running jobs' heartbeats only; a job that looks lost (or has not beaten
        yet) is read in full and judged.
        """
        cutoff = now() - self.lost_after
        suspects: list[str] = []
        running = self._ids(State.RUNNING)
        for start in range(0, len(running), _WATCH_PAGE):
            ids = running[start : start + _WATCH_PAGE]
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                pipe.hget(job_key(rid), "heartbeat")
            for rid, beat in zip(ids, pipe.execute(), strict=True):
                if beat is None or float(beat) < cutoff:
                    suspects.append(rid)
        reaped = 0
        for request_id in suspects:
            job = self.get(request_id)
            if job is not None and self._reap(job).state is not State.RUNNING:
                reaped += 1
        return reaped

    def _reap(self, job: Job) -> Job:
        """A running job whose heartbeat stopped has lost its worker: hand it back, or
        fail it once it has had ``max_attempts`` runs."""
        if job.state is not State.RUNNING:
            return job
        last = job.heartbeat or job.record.StartedAt or job.record.CreatedAt
        silent = now() - last
        if silent <= self.lost_after:
            return job
        stop = self.stop_requested(job.request_id)
        if stop is not None and stop.cause in REQUESTED:
            # Asked to stop, then silent (a terminate's SIGKILL, or the worker died while
            # stopping): what was asked for is what happened.
            ended = _ended_by(stop, f"{stop.reason}; its worker went silent while stopping")
            self.finish(job.request_id, State.STOPPED, allowed=(State.RUNNING,), **ended)
            return self.get(job.request_id) or job
        if self.hand_back(job, f"worker lost (no heartbeat for {silent:.0f} s): handed back"):
            log.warning("push %s lost its worker: handed back to the queue", job.request_id)
            return self.get(job.request_id) or job
        lost = WorkerLost(f"worker lost: the push sent no heartbeat for {silent:.0f} s")
        self.finish(
            job.request_id,
            State.FAILED,
            allowed=(State.RUNNING,),
            Error=lost.as_dict(),
            Reason=lost.message,
        )
        return self.get(job.request_id) or job

    def list(
        self,
        state: State | None = None,
        limit: int = 50,
        user: tuple[int, str] | None = None,
        room: tuple[int, str] | None = None,
        since: float | None = None,
        until: float | None = None,
        apps: frozenset[int] | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered (to ``apps``' only, if given); the most selective
        index is read, the rest checked."""
        if room is not None or user is not None:
            index = _filter_index(room, user)
        elif apps is not None and len(apps) == 1:
            index = app_index(next(iter(apps)), state)
        elif state is not None:
            index = f"{PREFIX}jobs:state:{state.value}"
        else:
            index = f"{PREFIX}jobs"
        low = max(now() - self.ttl, since if since is not None else float("-inf"))
        high = until if until is not None else float("+inf")
        jobs: list[Job] = []
        offset, page = 0, max(limit, 100)
        while len(jobs) < limit:
            ids = cast(
                "list[bytes]", self.redis.zrevrangebyscore(index, high, low, start=offset, num=page)
            )
            if not ids:
                break
            offset += len(ids)
            pipe = self.redis.pipeline(transaction=False)
            for rid in ids:
                pipe.hmget(job_key(rid.decode()), _READ_FIELDS)
            for rid, raw in zip(ids, pipe.execute(), strict=True):
                job = _parse(rid.decode(), raw)
                if job is None:
                    continue
                if state is not None and job.state is not state:
                    continue
                if user is not None and (job.record.SdkAppId, job.record.UserId) != user:
                    continue
                if apps is not None and job.record.SdkAppId not in apps:
                    continue
                jobs.append(job)
                if len(jobs) >= limit:
                    break
        return jobs

    def live(
        self, room: tuple[int, str] | None = None, user: tuple[int, str] | None = None
    ) -> Iterator[Job]:
        """Every queued and running job, or those of one ``room`` or ``user`` (SdkAppId and
        RTMP room or UserId), for stops that name pushes by what they are."""
        if room is not None or user is not None:
            index = _filter_index(room, user)
            ids = [rid.decode() for rid in cast("list[bytes]", self.redis.zrange(index, 0, -1))]
            for job in self._read(ids):
                if not job.state.finished:
                    yield job
            return
        for state in (State.QUEUED, State.RUNNING):
            for job in self._read(self._ids(state)):
                if job.state is state:
                    yield job

    def read(self, ids: Sequence[str]) -> dict[str, Job]:
        """The jobs of ``ids`` in one round trip a page, by request id (gone ones left out)."""
        return {job.request_id: job for job in self._read(ids)}

    def _read(self, ids: Sequence[str]) -> Iterator[Job]:
        """The records of ``ids``, a pipelined page at a time (gone ones left out)."""
        for start in range(0, len(ids), _WATCH_PAGE):
            page = ids[start : start + _WATCH_PAGE]
            pipe = self.redis.pipeline(transaction=False)
            for rid in page:
                pipe.hmget(job_key(rid), _READ_FIELDS)
            for rid, raw in zip(page, pipe.execute(), strict=True):
                job = _parse(rid, raw)
                if job is not None:
                    yield job

    def _ids(self, state: State) -> Sequence[str]:
        """The ids in one state's index, read at once: jobs leave it as they are handled."""
        ids = cast("list[bytes]", self.redis.zrange(f"{PREFIX}jobs:state:{state.value}", 0, -1))
        return [rid.decode() for rid in ids]

    def stats(self, apps: frozenset[int] | None = None) -> dict[str, int]:
        """How many live records are in each state (of ``apps`` only, if given)."""
        low = now() - self.ttl
        pipe = self.redis.pipeline(transaction=False)
        for s in State:
            if apps is None:
                pipe.zcount(f"{PREFIX}jobs:state:{s.value}", low, "+inf")
            else:
                for app in sorted(apps):
                    pipe.zcount(app_index(app, s), low, "+inf")
        counts = iter(pipe.execute())
        per_state = 1 if apps is None else len(apps)
        return {s.value: sum(int(next(counts)) for _ in range(per_state)) for s in State}


def redis_client(
    settings: Settings, socket_timeout: float = 5, max_connections: int | None = None
) -> redis.Redis:
    """A client of the service's Redis with short timeouts (``socket_timeout``: longer for
    a read that waits on purpose, an SSE follower's)."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=3,
        health_check_interval=30,
        max_connections=max_connections,
    )


def open_store(
    settings: Settings,
    requeue: Callable[[Job], None] | None = None,
    max_connections: int | None = None,
    deliver: Callable[[str], None] | None = None,
) -> JobStore:
    """The job records in the Redis ``settings`` name, on a client with short timeouts.

    ``requeue`` sends a handed-back job again (the workers'); the API needs none: only
    workers hand jobs back. ``deliver`` sends a push's callback delivery task.
    """
    client = redis_client(settings, max_connections=max_connections)
    return JobStore(
        client,
        ttl=settings.job_ttl_seconds,
        lost_after=settings.worker_lost_seconds,
        requeue=requeue,
        max_attempts=settings.max_attempts,
        deliver=deliver,
        quotas=lambda app: Quota(*settings.quota_for(app)),
    )


@dataclass(frozen=True)
class Quota:
    """What one SdkAppId may use: pushes queued or running at once, and submissions a
    minute (0: no limit)."""

    concurrent: int = 0
    per_minute: int = 0


#: Retry-After of a refusal for too many pushes at once: when one may have ended.
QUOTA_RETRY_SECONDS = 10


def rate_key(sdk_app_id: int, at: float) -> str:
    """The counter of one app's submissions in the minute of ``at``."""
    return f"{PREFIX}quota:{sdk_app_id}:{int(at // 60)}"


def app_index(sdk_app_id: int, state: State | None = None) -> str:
    """The index of one app's jobs (in one state, if given)."""
    base = f"{PREFIX}jobs:app:{sdk_app_id}"
    return base if state is None else f"{base}:state:{state.value}"


def _filter_index(room: tuple[int, str] | None, user: tuple[int, str] | None) -> str:
    """The index of one room's jobs, else of one user's (each keyed by its SdkAppId)."""
    if room is not None:
        return f"{PREFIX}jobs:room:{room[0]}:{room[1]}"
    assert user is not None
    return f"{PREFIX}jobs:user:{user[0]}:{user[1]}"


def _ended_by(stop: Stop, reason: str) -> dict[str, str]:
    """The record's fields for a push that ``stop`` ended without its run saying so."""
    return {"Reason": reason, "StopCause": stop.cause.value}


def _parse(request_id: str, raw: list[bytes | None]) -> Job | None:
    state, doc, progress, heartbeat = raw[:4]
    if state is None or doc is None:
        return None
    return Job(
        request_id=request_id,
        state=State(state.decode()),
        record=JobRecord.model_validate_json(doc),
        progress=json.loads(progress) if progress else None,
        heartbeat=float(heartbeat) if heartbeat else None,
        callbacks=callback_status(raw[4:]),
    )
