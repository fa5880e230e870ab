"""The Redis keys roomcast writes, in one place (``jobs/store.py`` documents the layout)."""

from __future__ import annotations

PREFIX = "roomcast:"
#: Counters that outlive the job records, for Prometheus (``GET /metrics``): ``created``,
#: ``ended:<state>``, ``error:<Code>``, ``sent_bytes``, ``sent_frames``, ``callbacks_*``.
#: Kept in Redis because every worker process adds to them and the API reads them;
#: Prometheus handles a reset.
METRICS_KEY = f"{PREFIX}metrics"
#: Pushes with events waiting for their callback URL, scored by when a deliverer should
#: look at them next (``jobs/outbox.py``).
OUTBOX_KEY = f"{PREFIX}outbox"


def job_key(request_id: str) -> str:
    """The Redis key of a job's hash."""
    return f"{PREFIX}job:{request_id}"


def callback_key(request_id: str) -> str:
    """A job's callback URL: a secret (it may carry a token), apart from the record, and
    kept after the push ends, until its events are delivered or the job expires."""
    return f"{PREFIX}job:{request_id}:callback"


def events_key(request_id: str) -> str:
    """The Redis stream of one job's events."""
    return f"{PREFIX}events:{request_id}"


def reply_key(token: str) -> str:
    """Where a push answers one player command (Engine=cloud: TRTC's outcome), for a minute."""
    return f"{PREFIX}reply:{token}"
