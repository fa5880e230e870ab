"""Preparing renditions ahead of class: the request's record, and where it is kept.

``POST /v1/renditions`` records a :class:`Preparation` and its clip URLs (the secrets: a
signed URL is a credential) and enqueues ``roomcast.prepare``; a worker encodes each clip
once into the rendition cache (pipeline/renditions.py) and updates the record as it goes.

A preparation has events, as a push has: ``queued``, ``running``, ``clip-ready`` and
``clip-failed`` for each clip, then ``succeeded``, ``failed`` or ``stopped``. They go
through the push's machinery (``jobs/events.py``, the outbox, ``roomcast.deliver``), which
needs only the job hash's event and callback fields: a preparation's job hash holds those
and ``kind``, no ``state`` or ``doc``, so the push API never mistakes it for a push. Each
change of ``State`` and its event are written in one transaction.

Redis keys (``ROOMCAST_JOB_TTL_SECONDS`` each):

    roomcast:prepare:<id>            str   the Preparation as JSON (URLs redacted)
    roomcast:prepare:<id>:secrets    str   JSON list of the clip URLs as given
    roomcast:prepare:<id>:stop       str   the Stop asked for (jobs/stops.py), if any
    roomcast:job:<id>                hash  kind=preparation, seq, callback, cb_* (events)
    roomcast:job:<id>:callback       str   the callback URL, a secret
    roomcast:events:<id>             stream  its events
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal, cast

import redis
from pydantic import BaseModel, Field

from .events import EventLog
from .keys import PREFIX, callback_key, events_key, job_key
from .outbox import STATUS_FIELDS, callback_status
from .records import CallbackStatus, epoch, iso
from .stops import Stop

ClipState = Literal["queued", "preparing", "ready", "failed", "stopped"]
PreparationState = Literal["queued", "running", "succeeded", "failed", "stopped"]
#: The states a preparation ends in.
ENDED: frozenset[str] = frozenset({"succeeded", "failed", "stopped"})
#: The job hash's ``kind`` for a preparation.
KIND = "preparation"
#: A running preparation not written for this long lost its worker (a killed process:
#: tasks are acknowledged when taken, so nothing runs it again). Its worker writes it every
#: second while it encodes, and opening a clip takes at most a source time-out.
LOST_AFTER_SECONDS = 120.0


class ClipPreparation(BaseModel):
    """One clip of a preparation."""

    VideoSrc: str = Field(description="The clip's URL, its secrets masked.")
    State: ClipState = "queued"
    Cached: bool | None = Field(None, description="true: its rendition was there already.")
    Seconds: float | None = Field(None, description="Length of the rendition.")
    Progress: float | None = Field(None, description="Seconds encoded so far.")
    Error: str | None = Field(None, description="Why it could not be prepared.")


class Preparation(BaseModel):
    """``GET /v1/renditions/<id>``: clips being encoded into renditions."""

    RequestId: str
    SdkAppId: int
    State: PreparationState = "queued"
    Reason: str | None = Field(None, description="Why it failed or was stopped.")
    Format: dict[str, Any] | None = Field(
        None,
        description=(
            "Width, Height, Fps of the renditions: as asked, else those of a push that starts "
            "with the first clip."
        ),
    )
    Clips: list[ClipPreparation]
    CreatedAt: str = Field(description="ISO 8601 UTC.")
    UpdatedAt: str | None = Field(
        None, description="ISO 8601 UTC: when it was last written (each second while encoding)."
    )
    EndedAt: str | None = Field(None, description="ISO 8601 UTC.")
    Callbacks: CallbackStatus | None = Field(
        None, description="Where the delivery of its events to its CallbackUrl stands."
    )


def preparation_key(request_id: str) -> str:
    """The Redis key of a preparation's record."""
    return f"{PREFIX}prepare:{request_id}"


class PreparationStore:
    """Preparation records, their clip URLs and their events in the service's Redis."""

    def __init__(self, client: redis.Redis, ttl: int, events: EventLog | None = None) -> None:
        self.redis = client
        self.ttl = ttl
        self.events = events if events is not None else EventLog(client, ttl)

    def create(
        self, preparation: Preparation, urls: list[str], callback_url: str | None = None
    ) -> None:
        """Record a new preparation, its clip URLs and its ``queued`` event."""
        request_id = preparation.RequestId
        key = preparation_key(request_id)
        with self.redis.pipeline() as pipe:
            pipe.set(key, _dump(preparation), ex=self.ttl)
            pipe.set(f"{key}:secrets", json.dumps(urls), ex=self.ttl)
            pipe.hset(job_key(request_id), mapping={"kind": KIND, "seq": 0})
            if callback_url is not None:
                pipe.hset(job_key(request_id), "callback", "1")
                pipe.set(callback_key(request_id), callback_url, ex=self.ttl)
            pipe.expire(job_key(request_id), self.ttl)
            self._event(pipe, preparation, "queued", Clips=len(urls))
            seq, due = pipe.execute()[-1]
        self.events.recorded(request_id, "queued", bool(due))

    def save(self, preparation: Preparation) -> None:
        """Write the record as it stands now (its progress; not a change of State)."""
        key = preparation_key(preparation.RequestId)
        preparation.UpdatedAt = iso(time.time())
        self.redis.set(key, _dump(preparation), ex=self.ttl)

    def get(self, request_id: str) -> Preparation | None:
        """The record, or None if there is none (never was, or expired)."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(preparation_key(request_id))
            pipe.hmget(job_key(request_id), list(STATUS_FIELDS))
            raw, fields = pipe.execute()
        if raw is None:
            return None
        found = Preparation.model_validate_json(raw)
        found.Callbacks = callback_status(fields)
        return found

    def urls(self, request_id: str) -> list[str] | None:
        """The clip URLs as given (None once expired)."""
        raw = cast("bytes | None", self.redis.get(f"{preparation_key(request_id)}:secrets"))
        return None if raw is None else list(json.loads(raw))

    def event(self, preparation: Preparation, event: str, **fields: Any) -> None:
        """Record one of its events that changes no State (``clip-ready``, ``clip-failed``)."""
        self.events.append(preparation.RequestId, event, **fields)

    def change(
        self,
        request_id: str,
        allowed: tuple[str, ...],
        update: Callable[[Preparation], dict[str, Any]],
        when: Callable[[Preparation], bool] | None = None,
    ) -> Preparation | None:
        """Change the record's ``State`` from one of ``allowed``, with its event, in one
        transaction; None if it is in another State (or gone).

        ``update`` changes the record and returns the event's fields; the event is named
        for the new State. Two writers (the API stopping a queued preparation, a worker
        starting it) cannot both win.
        """
        key = preparation_key(request_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        return None
                    preparation = Preparation.model_validate_json(cast(bytes, raw))
                    if preparation.State not in allowed or (when and not when(preparation)):
                        return None
                    fields = update(preparation)
                    preparation.UpdatedAt = iso(time.time())
                    pipe.multi()
                    pipe.set(key, _dump(preparation), ex=self.ttl)
                    self._event(pipe, preparation, preparation.State, **fields)
                    seq, due = pipe.execute()[-1]
                except redis.WatchError:
                    continue
                self.events.recorded(request_id, preparation.State, bool(due))
                return preparation

    @classmethod
    def of(cls, jobs: Any) -> PreparationStore:
        """The preparations beside a :class:`~jobs.store.JobStore`: its Redis, TTL and
        event log (whose deliveries it starts)."""
        return cls(jobs.redis, jobs.ttl, jobs.events)

    def end_if_lost(self, request_id: str, seen: Preparation | None = None) -> Preparation | None:
        """End ``failed`` a running preparation whose worker was lost (see
        :data:`LOST_AFTER_SECONDS`), with its event; None if it is not such a one.
        ``seen``: the record as just read, which spares the transaction when it is fresh."""
        if seen is not None and not (seen.State == "running" and _lost(seen)):
            return None
        return self.change(request_id, ("running",), _end_lost, when=_lost)

    def ask_stop(self, request_id: str, stop: Stop) -> None:
        """Ask the worker preparing it to stop (it looks every second or so)."""
        self.redis.set(f"{preparation_key(request_id)}:stop", stop.to_json(), ex=self.ttl, nx=True)

    def stop_asked(self, request_id: str) -> Stop | None:
        """The stop asked for, if any."""
        raw = cast("bytes | None", self.redis.get(f"{preparation_key(request_id)}:stop"))
        return None if raw is None else Stop.from_json(raw)

    def discard(self, request_id: str) -> None:
        """Remove a preparation that could not be enqueued."""
        key = preparation_key(request_id)
        self.redis.delete(
            key,
            f"{key}:secrets",
            job_key(request_id),
            callback_key(request_id),
            events_key(request_id),
        )

    def _event(self, pipe: Any, preparation: Preparation, event: str, **fields: Any) -> None:
        """Queue the recording of an event in ``pipe``, after the writes before it."""
        request_id = preparation.RequestId
        self.events.script(
            keys=self.events.keys(request_id),
            args=self.events.args(request_id, event, **fields),
            client=pipe,
        )


def stop_preparation(
    store: PreparationStore, request_id: str, stop: Stop, found: Preparation | None = None
) -> str | None:
    """Stop a preparation: a queued one ends ``stopped`` at once, a running one is asked.
    Returns the State it was found in (None: there is no such preparation). ``found``:
    the record as the caller just read it."""
    found = found or store.get(request_id)
    if found is None:
        return None
    if found.State in ENDED:
        return found.State
    store.ask_stop(request_id, stop)
    if found.State == "queued" and store.change(
        request_id, ("queued",), lambda p: end_stopped(p, stop.reason_queued)
    ):
        return "queued"
    store.end_if_lost(request_id, found)  # no worker will hear the stop: it ends here
    return "running"


def end_stopped(preparation: Preparation, reason: str) -> dict[str, Any]:
    """Mark the clips not prepared yet and the preparation stopped; the event's fields."""
    return end(preparation, "stopped", reason, "stopped")


def end(
    preparation: Preparation,
    state: PreparationState,
    reason: str | None,
    unfinished: ClipState,
    error: str | None = None,
) -> dict[str, Any]:
    """End the preparation in ``state`` (with ``reason``), its clips not done yet
    ``unfinished`` (with ``error``); the final event's fields."""
    for clip in preparation.Clips:
        if clip.State in ("queued", "preparing"):
            clip.State, clip.Error = unfinished, error
    preparation.State, preparation.Reason = state, reason
    preparation.EndedAt = iso(time.time())
    return {**({"Reason": reason} if reason else {}), **tally(preparation)}


def _lost(preparation: Preparation) -> bool:
    written = epoch(preparation.UpdatedAt or preparation.CreatedAt)
    return written is not None and time.time() - written > LOST_AFTER_SECONDS


def _end_lost(preparation: Preparation) -> dict[str, Any]:
    reason = f"its worker was lost: no word from it for over {LOST_AFTER_SECONDS:g} s"
    return end(preparation, "failed", reason, "failed", "the preparation's worker was lost")


def tally(preparation: Preparation) -> dict[str, int]:
    """How many clips are ready and how many failed: the final events' fields."""
    states = [clip.State for clip in preparation.Clips]
    return {"Ready": states.count("ready"), "Failed": states.count("failed")}


def _dump(preparation: Preparation) -> str:
    # Callbacks is read from the job hash, never stored in the record.
    return preparation.model_dump_json(exclude={"Callbacks"})
