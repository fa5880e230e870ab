"""``GET /v1/pushes/<id>/events``: a push's events as server-sent events, in order.

Each event is sent with its Redis stream id as the SSE ``id``, so a client that reconnects
with ``Last-Event-ID`` continues where it left off. The stream ends after the push's final
state (succeeded, failed or stopped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import cast

from flask import Blueprint, Response, current_app, request
from flask.typing import ResponseReturnValue

from jobs.errors import NotFound
from jobs.events import FINAL_EVENTS
from jobs.store import JobStore

bp = Blueprint("events", __name__)


@bp.get("/v1/pushes/<request_id>/events")
def events(request_id: str) -> ResponseReturnValue:
    """Stream the push's events (server-sent events) until its final state."""
    store = cast(JobStore, current_app.extensions["roomcast.store"])
    if store.get(request_id) is None:
        raise NotFound(f"no push with request id {request_id!r}")
    after = request.headers.get("Last-Event-ID") or request.args.get("After") or "0"
    return Response(
        _stream(store, request_id, after),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stream(store: JobStore, request_id: str, after: str) -> Iterator[str]:
    while True:
        batch = store.events.read(request_id, after, block_ms=1000)
        for entry_id, event in batch:
            name = event.get("Event", "message")
            yield f"id: {entry_id}\nevent: {name}\ndata: {json.dumps(event)}\n\n"
            after = entry_id
            if name in FINAL_EVENTS:
                return
        if not batch:
            job = store.get(request_id)
            if job is None or job.state.finished:
                return
            yield ": keep-alive\n\n"  # proxies close silent connections
