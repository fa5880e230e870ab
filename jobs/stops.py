"""Why a push stopped: one :class:`Stop` value from whoever asks to the job's ``Reason``.

A stop travels as data, never as a sentence: the API, Celery's revoke commands, a worker's
shutdown and the control hub each make a :class:`Stop`; it is stored in the job's ``stop``
field and published on its control channel as JSON, carried by the pipeline's ``Control``,
and read back by the runner, which decides from its :class:`StopCause` alone whether the push
ends ``stopped``, is handed back, or belongs to another run. The human ``reason`` is derived
from it for the record, the logs and Celery's ``REVOKED`` result.

This module imports nothing but the standard library: the API and Celery's main process use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class StopCause(StrEnum):
    """Who or what stopped a push."""

    #: ``POST /v1/pushes/<id>/stop`` (or ``DELETE``), the console, ``roomcast stop``.
    API = "api"
    #: A new push for the same publisher with ``Replace=true``; ``detail``: its request id.
    REPLACED = "replaced"
    #: Celery's ``revoke`` (``celery control revoke``, Flower's Revoke, ``app.control.revoke``).
    REVOKE = "revoke"
    #: Celery's ``revoke(terminate=True)`` (Flower's Terminate); ``detail``: the signal.
    TERMINATE = "terminate"
    #: Celery's ``revoke_by_stamped_headers``; ``detail``: the headers that matched.
    STAMPED = "stamped"
    #: The worker is shutting down (a deploy): the push is handed back to continue elsewhere.
    SHUTDOWN = "shutdown"
    #: The job's current run is another one: this worker was taken for lost.
    TAKEN_OVER = "taken_over"
    #: Another live job holds this publisher's lease.
    LEASE_LOST = "lease_lost"
    #: No heartbeat reached Redis: the worker stops publishing before it is taken for lost.
    FENCED = "fenced"
    #: SCF's ``TerminateAsyncEvent`` (the template's own stop, api/scf.py); ``detail``:
    #: ``GraceShutdown`` as sent.
    SCF = "scf"
    #: A signal reached the push's process before any stop was recorded in Redis; the
    #: runner looks for the recorded cause (``detail``: the signal's name).
    SIGNAL = "signal"
    #: A shard's push (jobs/shards.py) ended (``detail``: its request id and state).
    PUSH_ENDED = "push_ended"


_REASONS = {
    StopCause.API: "stopped through the API",
    StopCause.REPLACED: "replaced by push {detail} (Replace=true)",
    StopCause.REVOKE: "revoked through Celery (revoke)",
    StopCause.TERMINATE: "terminated through Celery (revoke terminate=True, signal {detail})",
    StopCause.STAMPED: "revoked through Celery by stamped headers ({detail})",
    StopCause.SHUTDOWN: "worker shutting down",
    StopCause.TAKEN_OVER: "another worker took this push over",
    StopCause.LEASE_LOST: "another push took over this UserId in this room (publisher lease lost)",
    StopCause.FENCED: (
        "this worker lost contact with Redis: it stopped publishing so that another worker can "
        "take the push over without two publishers"
    ),
    StopCause.SIGNAL: "stopped by signal {detail}",
    StopCause.SCF: "terminated through SCF's TerminateAsyncEvent (GraceShutdown {detail})",
    StopCause.PUSH_ENDED: "the push it is a shard of ended ({detail})",
}

#: Causes after which the record is not this run's to end: the push runs elsewhere now, or
#: will once a worker that reaches Redis finds it silent.
NOT_THIS_RUN = frozenset({StopCause.TAKEN_OVER, StopCause.FENCED})
#: Causes a person or a script asked for: the push ends ``stopped`` (Celery: ``REVOKED``),
#: even when its worker died before it could say so.
REQUESTED = frozenset(
    {
        StopCause.API,
        StopCause.REPLACED,
        StopCause.REVOKE,
        StopCause.TERMINATE,
        StopCause.STAMPED,
        StopCause.SCF,
        StopCause.PUSH_ENDED,
    }
)


@dataclass(frozen=True)
class Stop:
    """A request to stop one push: its cause, and a detail some causes name."""

    cause: StopCause
    detail: str = ""

    @property
    def reason(self) -> str:
        """The sentence shown as the job's ``Reason`` and in Celery's ``REVOKED`` result."""
        return _REASONS[self.cause].format(detail=self.detail or "?")

    @property
    def reason_queued(self) -> str:
        """``reason`` for a push that had not started yet."""
        return f"{self.reason}, before it started"

    def __str__(self) -> str:
        return self.reason

    def to_json(self) -> str:
        """The form stored in the job's ``stop`` field."""
        return json.dumps({"Cause": self.cause.value, "Detail": self.detail})

    def message(self) -> str:
        """The control-channel message asking a running push to stop."""
        return json.dumps({"Command": "stop", "Cause": self.cause.value, "Detail": self.detail})

    @classmethod
    def from_fields(cls, fields: dict[str, object]) -> Stop:
        """Read ``{"Cause", "Detail"}``; an unknown or missing cause reads as an API stop."""
        try:
            cause = StopCause(str(fields.get("Cause")))
        except ValueError:
            cause = StopCause.API
        return cls(cause, str(fields.get("Detail") or ""))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Stop:
        """Read the stored form (anything unreadable is a stop all the same)."""
        try:
            fields = json.loads(raw)
        except ValueError:
            fields = None
        return cls.from_fields(fields if isinstance(fields, dict) else {})
