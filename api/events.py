"""A push's events: streamed as server-sent events, and delivered again on request.

``GET /v1/pushes/<id>/events`` sends each event with its ``Id`` (``<RequestId>.<Seq>``) as the
SSE ``id``, so a client that reconnects with ``Last-Event-ID`` (or ``?After=<Id or Seq>``)
continues with the next one. The stream ends after the push's final state (succeeded, failed
or stopped).

Each follower waits on a Redis connection of its own (a blocking XREAD of its push's
stream, from a pool apart from the one status calls use, so that followers never starve
them); under the Procfile's gevent workers a follower is a greenlet, not a thread.

``POST /v1/pushes/<id>/events/replay`` sends a push's events to its callback URL again: from
``From`` (a Seq) on, or from the first one its receiver has not acknowledged. It restarts
retries that gave up (``Callbacks.State`` ``gave-up``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import cast

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jobs.errors import InvalidJob, NoCallback, NotFound
from jobs.events import FINAL_EVENTS, EventLog, seq_of
from jobs.records import CallbackStatus
from jobs.settings import Settings
from jobs.store import Job, JobStore, redis_client

from .errors import invalid_job_from
from .keys import visible_job
from .responses import Replayed

bp = Blueprint("events", __name__)

#: A follower's wait for its next event before it sends a keep-alive and looks at the job.
FOLLOW_WAIT_MS = 15_000
#: Followers one API process serves at once (each holds a Redis connection).
MAX_FOLLOWERS = 5000


def follower_log(settings: Settings) -> EventLog:
    """The event log followers read from: its own pool of long-waiting connections."""
    client = redis_client(
        settings, socket_timeout=FOLLOW_WAIT_MS / 1000 + 5, max_connections=MAX_FOLLOWERS
    )
    return EventLog(client, settings.job_ttl_seconds)


class ReplayRequest(BaseModel):
    """``POST /v1/pushes/{RequestId}/events/replay``'s optional body."""

    model_config = ConfigDict(extra="forbid")

    From: int | None = Field(
        None, ge=1, description="The first Seq to send again; default: the first undelivered."
    )


def _store() -> JobStore:
    return cast(JobStore, current_app.extensions["roomcast.store"])


def _job(request_id: str) -> Job:
    return visible_job(_store(), request_id)


@bp.get("/v1/pushes/<request_id>/events")
def events(request_id: str) -> ResponseReturnValue:
    """Stream the push's events (server-sent events) until its final state."""
    _job(request_id)

    def ended() -> bool:
        job = _store().get(request_id)
        return job is None or job.state.finished

    return event_stream(request_id, ended)


def event_stream(request_id: str, ended: Callable[[], bool]) -> Response:
    """The SSE response of a job's events (a push's or a preparation's), from the one after
    ``Last-Event-ID`` or ``?After=``; ``ended`` says, while no event comes, whether the
    job has ended without its final event in the stream (expired)."""
    after = seq_of(request.headers.get("Last-Event-ID") or request.args.get("After") or "0")
    log = cast(EventLog, current_app.extensions["roomcast.followers"])
    return Response(
        _stream(log, request_id, after, ended),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stream(log: EventLog, request_id: str, after: int, ended: Callable[[], bool]) -> Iterator[str]:
    while True:
        batch = log.read(request_id, after, block_ms=FOLLOW_WAIT_MS)
        for event in batch:
            name = event.get("Event", "message")
            yield f"id: {event['Id']}\nevent: {name}\ndata: {json.dumps(event)}\n\n"
            after = int(event["Seq"])
            if name in FINAL_EVENTS:
                return
        if not batch:
            if ended():
                return
            yield ": keep-alive\n\n"  # proxies close silent connections


@bp.post("/v1/pushes/<request_id>/events/replay")
def replay(request_id: str) -> ResponseReturnValue:
    """Send the push's events to its callback URL again (after its receiver was down)."""
    return replay_events(request_id, _job(request_id).callbacks, "push")


def replay_events(request_id: str, callbacks: CallbackStatus | None, what: str) -> Response:
    """Send a job's events to its callback URL again; ``what`` it is, for messages."""
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise InvalidJob("the body must be a JSON object")
    try:
        asked = ReplayRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    if callbacks is None:
        raise NoCallback(f"this {what} has no CallbackUrl: its events go to no receiver")
    first = asked.From or callbacks.Delivered + 1
    last = _store().outbox.replay(request_id, first)
    if last is None:  # the record expired meanwhile
        raise NotFound(f"no {what} with request id {request_id!r}")
    deliver = _store().events.on_due
    if deliver is not None:
        deliver(request_id)
    current_app.logger.info("%s %s: events from %d sent again", what, request_id, first)
    answer = jsonify(Replayed(RequestId=request_id, From=first, Events=last).model_dump())
    answer.status_code = 202
    return answer
