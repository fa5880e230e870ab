"""Real-time pacing against a monotonic clock.

Each packet is due at ``start + media_time``: comparing with the clock every time (rather
than sleeping a frame duration after the previous one) keeps the error from growing with
the length of the video, the way aiortc's player and Pion's ticker do.

Packets due within ``batch`` seconds of a wake-up go out with it. Waking a thread costs far
more CPU than sending a packet (about 0.1 ms on a virtual machine, measured in
docs/benchmarks.md), so a push at 30 fps with audio wakes about 25 times a second at the
default 40 ms instead of 77: the largest single saving when a worker carries many pushes.
Nothing is ever sent late because of it, only up to ``batch`` early.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .control import Control


class Pacer:
    """Holds packets back until their media time has come on the wall clock."""

    def __init__(
        self,
        control: Control,
        lead: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        batch: float = 0.0,
    ) -> None:
        self._control = control
        self.lead = lead
        self.batch = batch
        self._clock = clock
        self._start: float | None = None
        # Packets due before this instant are part of the last wake-up's batch.
        self._window_end = float("-inf")

    @property
    def started(self) -> bool:
        """Whether the first packet has set the clock's origin."""
        return self._start is not None

    def due(self, media_time: float) -> float:
        """The clock instant ``media_time`` falls due (the first call sets the origin)."""
        if self._start is None:
            self._start = self._clock() - media_time
        return self._start + media_time - self.lead

    def lag(self, media_time: float) -> float:
        """How late (positive) or early the clock is relative to ``media_time``."""
        if self._start is None:
            return 0.0
        return self._clock() - (self._start + media_time)

    def wait(self, media_time: float) -> bool:
        """Block until ``media_time`` (seconds of output) is due; False if a stop came first."""
        now = self._clock()
        if self._start is None:
            self._start = now - media_time
            return not self._control.stop_requested
        due = self._start + media_time - self.lead
        if due <= self._window_end:
            return not self._control.stop_requested
        if due > now:
            if self._control.wait(due - now):
                return False
            now = due
        self._window_end = now + self.batch
        return not self._control.stop_requested
