"""The life of a push: ``queued → running → succeeded | failed | stopped``."""

from __future__ import annotations

from enum import StrEnum


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
