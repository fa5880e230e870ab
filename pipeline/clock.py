"""The time a push is paced by: the wall clock, or a virtual one that runs ahead.

A push sends each packet when its media time falls due (:mod:`pipeline.pacer`), and waits
for a live source that dropped a while before it gives up. Both ask a :class:`Clock`, so
that the same pipeline can run at real speed into a room, or as fast as it can on a
:class:`VirtualClock`: the output's timestamps are the same, only the waiting is skipped.
That is how tests check switching, pausing, looping and resuming in milliseconds, with
commands that arrive at chosen media times (:meth:`VirtualClock.at`).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol

from .control import Control


class Clock(Protocol):
    """Where a push reads the time and waits."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, control: Control, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as ``control`` asks the push to stop.

        May return False early (woken without a stop), as ``Control.wait`` does.
        """
        ...


class WallClock:
    """Real time: ``time.monotonic``, and waits that a stop ends at once."""

    def now(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, control: Control, seconds: float) -> bool:
        """``control.wait(seconds)``: a stop, or a poke, ends it early."""
        return control.wait(seconds)


#: The clock every push uses unless it is given another.
WALL_CLOCK = WallClock()


class VirtualClock:
    """Time that passes only when the push waits for it, and at once.

    Actions scheduled with :meth:`at` (a player command, a stop) run when the clock passes
    their time, in order, so a test can say "switch at 2.5 s of output" and check what the
    room would have received, without waiting 2.5 s.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._origin = start
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """The virtual time."""
        return self._now

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._now - self._origin

    def at(self, elapsed: float, action: Callable[[], None]) -> None:
        """Run ``action`` once the clock has run ``elapsed`` seconds from its start."""
        heapq.heappush(self._due, (self._origin + elapsed, next(self._order), action))

    def sleep(self, control: Control, seconds: float) -> bool:
        """Move the time on by ``seconds``, running the actions due on the way."""
        target = self._now + max(0.0, seconds)
        while self._due and self._due[0][0] <= target and not control.stop_requested:
            when, _, action = heapq.heappop(self._due)
            self._now = max(self._now, when)
            action()
        if not control.stop_requested:
            self._now = target
        return control.stop_requested
