"""Real-time pacing against a monotonic clock.

Each packet is due at ``start + media_time``: comparing with the clock every time (rather
than sleeping a frame duration after the previous one) keeps the error from growing with
the length of the video, the way aiortc's player and Pion's ticker do.

Packets due within ``batch`` seconds of a wake-up go out with it. Waking a thread costs far
more CPU than sending a packet (about 0.1 ms on a virtual machine, measured in
docs/benchmarks.md), and a push at 30 fps with sound has 77 packets a second. Nothing is
ever sent late because of it, only early.

Sound rides with the picture: an audio packet never wakes a push before it is due, but once
awake the push sends the audio due within :data:`AUDIO_EARLY` along. Viewers judge timing
by the picture (a player holds early sound in its buffer until its timestamp comes), and
audio packets outnumber video ones (47 a second at 48 kHz against 30), so a push with sound
wakes once per video frame at most and the picture keeps the ``batch`` accuracy: 30 wake-ups
a second at 30 fps, where sending every packet on time would take 77.
"""

from __future__ import annotations

import math

from .clock import WALL_CLOCK, Clock
from .control import Control

#: How early an audio packet may go out with a wake-up for the picture. Longer than a frame
#: interval down to 12 fps, so that the sound between two frames never needs a wake of its
#: own; short enough that a player's jitter buffer holds it without noticing.
AUDIO_EARLY = 0.1


class Pacer:
    """Holds packets back until their media time has come on the clock (the wall clock,
    unless the push runs on another: :mod:`pipeline.clock`)."""

    def __init__(
        self,
        control: Control,
        lead: float = 0.0,
        clock: Clock = WALL_CLOCK,
        batch: float = 0.0,
    ) -> None:
        self._control = control
        self.lead = lead
        self.batch = batch
        self._clock = clock
        self._start: float | None = None
        # When the last wake-up was: packets due soon after it go out with it.
        self._woke = -math.inf

    @property
    def started(self) -> bool:
        """Whether the first packet has set the clock's origin."""
        return self._start is not None

    def due(self, media_time: float) -> float:
        """The clock instant ``media_time`` falls due (the first call sets the origin)."""
        if self._start is None:
            self._start = self._clock.now() - media_time
        return self._start + media_time - self.lead

    def lag(self, media_time: float) -> float:
        """How late (positive) or early the clock is relative to ``media_time``."""
        if self._start is None:
            return 0.0
        return self._clock.now() - (self._start + media_time)

    def wait(self, media_time: float, is_video: bool = True) -> bool:
        """Block until ``media_time`` (seconds of output) is due; False if a stop came first.

        Returns at once for a packet due within the last wake-up's window: ``batch`` for
        video, :data:`AUDIO_EARLY` for audio.
        """
        now = self._clock.now()
        if self._start is None:
            self._start = now - media_time
            self._woke = now
            return not self._control.stop_requested
        due = self._start + media_time - self.lead
        if due <= self._woke + early_allowance(self.batch, is_video):
            return not self._control.stop_requested
        if due > now:
            if self._clock.sleep(self._control, due - now):
                return False
            now = due
        self._woke = now
        return not self._control.stop_requested


def early_allowance(batch: float, is_video: bool) -> float:
    """How long before its due time a packet may leave with a wake-up that came for another."""
    return batch if is_video else max(batch, AUDIO_EARLY)
