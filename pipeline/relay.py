"""Sending: packets placed on the timeline go out paced, counted and within the limits."""

from __future__ import annotations

import av

from .control import Control
from .pacer import Pacer
from .progress import Progress, ProgressCallback, ProgressMeter
from .sink import RtmpSink
from .spec import PushSpec
from .timeline import Timeline


class Relay:
    """The room side of a push: pacer, sink, progress and the execution limit."""

    def __init__(
        self,
        spec: PushSpec,
        control: Control,
        sink: RtmpSink,
        timeline: Timeline,
        progress: Progress,
        on_progress: ProgressCallback | None,
        live: bool,
    ) -> None:
        """A live source is already real time: it is sent as it comes, not paced again,
        and its position is the time relayed."""
        self._control = control
        self._sink = sink
        self._timeline = timeline
        self._max_duration = spec.max_duration
        self._paced = not live
        self.progress = progress
        self.pacer = Pacer(control, lead=spec.pace_lead, batch=spec.pace_batch)
        self.meter = ProgressMeter(progress, on_progress)
        self.limit_reason: str | None = None
        #: False while a paused push sends filler: the source position stands still.
        self.track_position = True

    def restart_clock(self) -> None:
        """A new live connection: measure the delay from its first packet again."""
        self.pacer = Pacer(self._control, lead=self.pacer.lead, batch=self.pacer.batch)

    @property
    def stopped(self) -> bool:
        """Whether a stop was requested or the time limit reached."""
        return self._control.stop_requested or self.limit_reason is not None

    @property
    def stop_reason(self) -> str:
        """Why the push stopped early."""
        return self.limit_reason or self._control.stop_reason or "stopped"

    def send(self, packets: list[av.Packet], is_video: bool) -> bool:
        """Send output packets in real time; False once the push must stop."""
        for out in packets:
            ticks = out.dts if out.dts is not None else out.pts
            if ticks is None:
                continue
            # Float seconds from here on: exact enough for pacing and progress, and a
            # fraction of the cost of Fraction arithmetic on every packet.
            seconds = ticks * float(out.time_base)
            if self._max_duration is not None and seconds >= self._max_duration:
                self.limit_reason = f"time limit reached ({self._max_duration:g} s)"
                return False
            if self._paced and not self.pacer.wait(seconds):
                return False
            if not self._paced:
                if self._control.stop_requested:
                    return False
                if not self.pacer.started:
                    self.pacer.wait(seconds)  # only sets the clock's origin: never waits here
            self._sink.send(out)
            progress = self.progress
            progress.room_reconnects = self._sink.reconnects
            progress.output_time = seconds
            if self.track_position:
                progress.position = (
                    self._timeline.source_seconds(seconds) if self._paced else seconds
                )
            # vod: how late the pacer runs; live: how far the relay fell behind the source
            # since this connection began (a growing value is a growing delay).
            progress.lag = self.pacer.lag(seconds)
            self.meter.count(out.size, is_video)
        return True
