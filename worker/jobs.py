"""Job records in Redis: what the status API, Flower's neighbours and the workers share.

Layout (all keys expire with the job TTL, 3 days by default)::

    roomcast:job:<id>            hash  state, doc (JSON), progress (JSON), heartbeat, stop
    roomcast:job:<id>:secrets    str   JSON of UserSig, RedisPassword, the full VideoSrc;
                                       deleted as soon as the push ends
    roomcast:jobs                zset  every job id, scored by creation time
    roomcast:jobs:state:<state>  zset  the ids in each state (Stats and State filters)
    roomcast:jobs:user:<app>:<user>, roomcast:jobs:room:<app>:<room>   zset  filters

State changes go through one Lua script, so two writers (the API stopping a queued job,
the worker starting it) can never both win.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis

PREFIX = "roomcast:"


class State(StrEnum):
    """The life of a push."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def finished(self) -> bool:
        """Whether the push has ended for good."""
        return self in FINISHED


FINISHED = frozenset({State.SUCCEEDED, State.FAILED, State.STOPPED})

_TRANSITION = """
local key = KEYS[1]
local state = redis.call('HGET', key, 'state')
if not state then return {0, false} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return {0, state} end
local doc = cjson.decode(redis.call('HGET', key, 'doc'))
local patch = cjson.decode(ARGV[3])
for k, v in pairs(patch) do doc[k] = v end
redis.call('HSET', key, 'state', ARGV[2], 'doc', cjson.encode(doc))
local score = redis.call('ZSCORE', KEYS[2] .. state, ARGV[4])
if score then
  redis.call('ZREM', KEYS[2] .. state, ARGV[4])
  redis.call('ZADD', KEYS[2] .. ARGV[2], score, ARGV[4])
end
return {1, state}
"""


def job_key(request_id: str) -> str:
    """The Redis key of a job's hash."""
    return f"{PREFIX}job:{request_id}"


def secrets_key(request_id: str) -> str:
    """The Redis key holding a job's secrets until it ends."""
    return f"{PREFIX}job:{request_id}:secrets"


def control_channel(request_id: str) -> str:
    """The pub/sub channel carrying control messages (stop...) to a running push."""
    return f"{PREFIX}control:{request_id}"


def now() -> float:
    """Wall-clock time as stored in records (seconds since the epoch)."""
    return time.time()


def iso(ts: float | None) -> str | None:
    """An epoch time as the API's ISO 8601 UTC string."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


@dataclass
class Job:
    """One job record as read from Redis."""

    request_id: str
    state: State
    doc: dict[str, Any]
    progress: dict[str, Any] | None
    heartbeat: float | None

    def as_status(self) -> dict[str, Any]:
        """The status API's JSON object (no secret is ever stored in a record)."""
        d = self.doc
        return {
            "RequestId": self.request_id,
            "State": self.state.value,
            "Mode": d.get("Mode"),
            "SdkAppId": d.get("SdkAppId"),
            "Room": d.get("Room"),
            "UserId": d.get("UserId"),
            "VideoSrc": d.get("VideoSrc"),
            "Redis": d.get("Redis", False),
            "Progress": self.progress,
            "Reason": d.get("Reason"),
            "Error": d.get("Error"),
            "CreatedAt": iso(d.get("CreatedAt")),
            "StartedAt": iso(d.get("StartedAt")),
            "FinishedAt": iso(d.get("FinishedAt")),
        }


class JobStore:
    """Reads and writes job records; shared by the API and the workers."""

    def __init__(self, client: redis.Redis, ttl: int, lost_after: float) -> None:
        self.redis = client
        self.ttl = ttl
        self.lost_after = lost_after
        self._transition = client.register_script(_TRANSITION)

    def create(self, request_id: str, doc: dict[str, Any], secrets: dict[str, Any]) -> None:
        """Record a new queued job and its secrets in one round trip."""
        created = doc["CreatedAt"]
        key = job_key(request_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": State.QUEUED.value, "doc": json.dumps(doc)})
        pipe.expire(key, self.ttl)
        pipe.set(secrets_key(request_id), json.dumps(secrets), ex=self.ttl)
        for index in self._indexes(doc, State.QUEUED):
            pipe.zadd(index, {request_id: created})
            pipe.zremrangebyscore(index, "-inf", created - self.ttl)
            pipe.expire(index, self.ttl)
        pipe.execute()

    def _indexes(self, doc: dict[str, Any], state: State) -> list[str]:
        app = doc["SdkAppId"]
        return [
            f"{PREFIX}jobs",
            f"{PREFIX}jobs:state:{state.value}",
            f"{PREFIX}jobs:user:{app}:{doc['UserId']}",
            f"{PREFIX}jobs:room:{app}:{doc['Room']['RtmpRoom']}",
        ]

    def secrets(self, request_id: str) -> dict[str, Any] | None:
        """A job's secrets, or None once the job has ended (they are deleted then)."""
        raw = cast("bytes | None", self.redis.get(secrets_key(request_id)))
        return None if raw is None else cast("dict[str, Any]", json.loads(raw))

    def forget_secrets(self, request_id: str) -> None:
        """Delete a job's secrets (called when it ends)."""
        self.redis.delete(secrets_key(request_id))

    def get(self, request_id: str) -> Job | None:
        """The job, or None if unknown or expired; a silent running job becomes failed."""
        raw = cast(
            "list[bytes | None]",
            self.redis.hmget(job_key(request_id), ["state", "doc", "progress", "heartbeat"]),
        )
        job = _parse(request_id, raw)
        if job is not None:
            job = self._reap(job)
        return job

    def transition(
        self, request_id: str, allowed: Iterable[State], to: State, **fields: Any
    ) -> tuple[bool, State | None]:
        """Move a job to ``to`` if it is in one of ``allowed`` states, merging ``fields``.

        Returns (whether it moved, the state it was in).
        """
        ok, previous = self._transition(
            keys=[job_key(request_id), f"{PREFIX}jobs:state:"],
            args=[",".join(s.value for s in allowed), to.value, json.dumps(fields), request_id],
        )
        return bool(ok), (State(previous.decode()) if previous else None)

    def finish(self, request_id: str, to: State, **fields: Any) -> bool:
        """End a queued or running job in ``to`` (with FinishedAt) and drop its secrets."""
        moved, _ = self.transition(
            request_id, (State.QUEUED, State.RUNNING), to, FinishedAt=now(), **fields
        )
        self.forget_secrets(request_id)
        return moved

    def set_progress(self, request_id: str, progress: dict[str, Any]) -> None:
        """Store the latest progress snapshot (about once a second)."""
        self.redis.hset(job_key(request_id), "progress", json.dumps(progress))

    def beat(self, request_id: str) -> None:
        """Prove that the push is alive."""
        self.redis.hset(job_key(request_id), "heartbeat", now())

    def request_stop(self, request_id: str, reason: str) -> None:
        """Ask a running push to stop: a flag it reads at start, and a message it hears."""
        self.redis.hset(job_key(request_id), "stop", reason)
        self.redis.publish(
            control_channel(request_id), json.dumps({"Command": "stop", "Reason": reason})
        )

    def stop_requested(self, request_id: str) -> str | None:
        """The reason of a stop requested before the push listened, if any."""
        raw = cast("bytes | None", self.redis.hget(job_key(request_id), "stop"))
        return None if raw is None else raw.decode()

    def _reap(self, job: Job) -> Job:
        """A running job whose heartbeat stopped has lost its worker: fail it."""
        if job.state is not State.RUNNING:
            return job
        last = job.heartbeat or job.doc.get("StartedAt") or job.doc["CreatedAt"]
        silent = now() - last
        if silent <= self.lost_after:
            return job
        error = {
            "Code": "WorkerLost",
            "Message": f"worker lost: the push sent no heartbeat for {silent:.0f} s",
        }
        moved, _ = self.transition(
            job.request_id,
            (State.RUNNING,),
            State.FAILED,
            FinishedAt=now(),
            Error=error,
            Reason=error["Message"],
        )
        if moved:
            self.forget_secrets(job.request_id)
        return self.get(job.request_id) or job

    def list(
        self,
        state: State | None = None,
        limit: int = 50,
        user: tuple[int, str] | None = None,
        room: tuple[int, str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered; the most selective index is read, the rest checked."""
        if room is not None:
            index = f"{PREFIX}jobs:room:{room[0]}:{room[1]}"
        elif user is not None:
            index = f"{PREFIX}jobs:user:{user[0]}:{user[1]}"
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
                pipe.hmget(job_key(rid.decode()), ["state", "doc", "progress", "heartbeat"])
            for rid, raw in zip(ids, pipe.execute(), strict=True):
                job = _parse(rid.decode(), raw)
                if job is None:
                    continue
                job = self._reap(job)
                if state is not None and job.state is not state:
                    continue
                if user is not None and (job.doc["SdkAppId"], job.doc["UserId"]) != user:
                    continue
                jobs.append(job)
                if len(jobs) >= limit:
                    break
        return jobs

    def stats(self) -> dict[str, int]:
        """How many live records are in each state."""
        low = now() - self.ttl
        pipe = self.redis.pipeline(transaction=False)
        for s in State:
            pipe.zcount(f"{PREFIX}jobs:state:{s.value}", low, "+inf")
        return {s.value: int(n) for s, n in zip(State, pipe.execute(), strict=True)}


def _parse(request_id: str, raw: list[bytes | None]) -> Job | None:
    state, doc, progress, heartbeat = raw
    if state is None or doc is None:
        return None
    return Job(
        request_id=request_id,
        state=State(state.decode()),
        doc=json.loads(doc),
        progress=json.loads(progress) if progress else None,
        heartbeat=float(heartbeat) if heartbeat else None,
    )
