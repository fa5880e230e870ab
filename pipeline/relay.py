"""Sending: packets placed on the timeline go out paced, counted and within the limits."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import av

from jobs.redact import redact_url

from .clock import WALL_CLOCK, Clock
from .control import Control
from .flv import last_stamps
from .pacer import Pacer
from .progress import Progress, ProgressCallback, ProgressMeter
from .sei import SeiClock, progress_payload, sei_nal, with_sei
from .sender import READ_AHEAD, SLOW_WRITE, Lane, Queued, Sender, shared_sender
from .sink import RtmpSink
from .spec import PushSpec
from .timeline import Timeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cut:
    """What the room has after :meth:`Relay.cut`: the output seconds of its last picture and
    its last sound (None: none sent yet), and whether its last picture is of an earlier
    segment than the player's (the room had not reached the clip, or the seek, yet)."""

    picture: float | None
    sound: float | None
    behind: bool


class Relay:
    """The room side of a push: pacer, sink, progress and the execution limit.

    A paced push queues its packets about a second ahead for the process's shared sender
    (:mod:`pipeline.sender`); a switchable one takes back what is queued when a command must
    take effect now (:meth:`cut`). A live push, or one on another clock, sends from this
    thread.
    """

    def __init__(
        self,
        spec: PushSpec,
        control: Control,
        sink: RtmpSink,
        timeline: Timeline,
        progress: Progress,
        on_progress: ProgressCallback | None,
        live: bool,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        """A live source is already real time: it is sent as it comes, not paced again,
        and its position is the time relayed. ``clock``: what paces the push; only a push
        on the wall clock shares its process's sender."""
        self._control = control
        self._sink = sink
        self._timeline = timeline
        self._max_duration = spec.max_duration
        self._paced = not live
        self.progress = progress
        self._clock = clock
        self.pacer = Pacer(control, lead=spec.pace_lead, clock=clock, batch=spec.pace_batch)
        self.meter = ProgressMeter(progress, on_progress, clock=clock.now)
        self.limit_reason: str | None = None
        #: Which pictures carry the position to viewers (None: EnableProgress is off).
        self._sei = SeiClock() if spec.progress_sei else None
        #: False while a paused push sends filler: the source position stands still.
        self.track_position = True
        self._last_video: float | None = None
        self._frame_interval = 0.0
        #: Pictures handed to the muxer that it still holds: (output seconds, position).
        self._held: deque[tuple[float, float]] = deque()
        #: The latest sound handed to the muxer (output seconds), and whether the output has
        #: both picture and sound (known once the first packet goes out).
        self._sound_at = float("-inf")
        self._interleaved: bool | None = None
        # A switchable push's player moves the position itself (seek, pause, clip-ending
        # are about what it has handed on); it keeps no bookmark to resume from.
        self._room_position = not spec.switchable
        #: The furthest source time handed on, any stream: how much of a file was read.
        self.source_reached = 0.0
        #: The source time the last packet handed on reaches (the room gets it when the
        #: shared sender's queue gets there, up to a second later).
        self.handed_on = 0.0
        self._sender: Sender | None = None
        self._lane: Lane | None = None
        #: A switchable push's queue can be taken back (:meth:`cut`): each entry notes the
        #: pictures and sound its bytes carry (the muxer's interleaving holds a packet or
        #: two back, so they are not always the packet's own), and the position of each
        #: picture handed on waits here until its bytes are queued.
        self._cuttable = spec.switchable
        self._positions: deque[tuple[int, float]] = deque()
        #: The player's segment (a clip, a seek, a resume) being handed on now.
        self.segment = 0
        if self._paced and spec.shared_sender and clock is WALL_CLOCK:
            self._sender = shared_sender(spec.pace_batch)
            self._lane = Lane(sink.send_bytes, progress, self.meter, control.poke)
            self._sender.attach(self._lane)

    def restart_clock(self) -> None:
        """A new live connection: measure the delay from its first packet again."""
        self.pacer = Pacer(
            self._control, lead=self.pacer.lead, clock=self._clock, batch=self.pacer.batch
        )

    @property
    def stopped(self) -> bool:
        """Whether a stop was requested or the time limit reached."""
        return self._control.stop_requested or self.limit_reason is not None

    @property
    def stop_reason(self) -> str:
        """Why the push stopped early."""
        return self.limit_reason or self._control.stop_reason or "stopped"

    @property
    def stop_cause(self) -> object | None:
        """What the stop was requested with; None when the time limit stopped the push."""
        return None if self.limit_reason else self._control.stop_cause

    def send(self, packets: list[av.Packet], is_video: bool) -> bool:
        """Send output packets in real time; False once the push must stop."""
        for out in packets:
            ticks = out.dts if out.dts is not None else out.pts
            if ticks is None:
                continue
            # Float seconds from here on: exact enough for pacing and progress, and a
            # fraction of the cost of Fraction arithmetic on every packet. (PyAV builds a
            # new Fraction on every read of ``time_base``: read once per packet.)
            tick = float(out.time_base)
            seconds = ticks * tick
            if self._max_duration is not None and seconds >= self._max_duration:
                self.limit_reason = f"time limit reached ({self._max_duration:g} s)"
                return False
            if is_video and self._sei is not None and self._sei.due(seconds):
                out = self._with_progress(out, seconds)
            if self._lane is not None:
                if not self._queue(self._lane, out, seconds, tick, is_video):
                    return False
                continue
            if self._paced and not self.pacer.wait(seconds, is_video):
                return False
            if not self._paced:
                if self._control.stop_requested:
                    return False
                if not self.pacer.started:
                    self.pacer.wait(seconds)  # only sets the clock's origin: never waits here
            # Before the send: muxing rescales the packet's duration to the room's time base.
            position = self._position_after(out, seconds, tick, is_video)
            self._sink.send(out)
            progress = self.progress
            self._note_sink()
            progress.output_time = seconds
            if position is not None:
                progress.position = position
            # vod: how late the pacer runs; live: how far the relay fell behind the source
            # since this connection began (a growing value is a growing delay).
            progress.lag = self.pacer.lag(seconds)
            self.meter.count(out.size, is_video)
        return True

    def _with_progress(self, packet: av.Packet, seconds: float) -> av.Packet:
        """``packet`` (at ``seconds`` of output) carrying the position for viewers
        (``EnableProgress``): where this picture is in its clip, not what the room has yet
        (a plain push's sender may hold a second of pictures before it)."""
        progress = self.progress
        if not self.track_position:  # paused: the held picture's place
            position = progress.position
        elif self._paced:
            position = self._timeline.source_seconds(seconds)
        else:
            position = seconds  # live: the time relayed
        clip = (progress.player or {}).get("Clip") or {}
        payload = progress_payload(position, progress.duration, clip.get("ClipId"))
        return with_sei(packet, sei_nal(payload))

    def _note_sink(self) -> None:
        """What the room connection has been through: reconnects, and which client."""
        self.progress.room_reconnects = self._sink.reconnects
        self.progress.rtmp_fallback = self._sink.fallback

    def _position_after(
        self, out: av.Packet, seconds: float, tick: float, is_video: bool
    ) -> float | None:
        """The source position reached once ``out`` is in the room; None: no change.

        ``tick``: one of the packet's time units in seconds. The end of the packet, not its
        start, so that a push resumed from there starts on the next frame: no frame shown
        twice, none missing. Once the push has video, only video moves it: audio runs ahead
        of the picture by the decoder's delay, and the frames still held there when a push
        stops never reach the room.
        """
        if not self.track_position:
            return None
        length = (out.duration or 0) * tick
        if is_video:
            # Encoders leave a packet's duration at 0: the frame interval stands in for it.
            if self._last_video is not None and seconds > self._last_video:
                self._frame_interval = seconds - self._last_video
            self._last_video = seconds
            length = length or self._frame_interval
        else:
            self._sound_at = max(self._sound_at, seconds)
        end = seconds + length
        position = self._timeline.source_seconds(end) if self._paced else end
        self.source_reached = max(self.source_reached, position)
        self.handed_on = position
        if self._interleaved is None:
            streams = self._sink.container.streams
            self._interleaved = self._room_position and bool(streams.video and streams.audio)
        if not self._interleaved:
            return None if not is_video and self._last_video is not None else position
        if is_video:
            self._held.append((seconds, position))
        elif self._last_video is None:
            return None
        return self._released()

    def _released(self) -> float | None:
        """The position of the last picture the muxer has let out (None: none since the
        last call).

        The muxer interleaves by time: a picture goes out once sound at least as late has
        reached it. Re-encoded sound comes a frame behind the picture, so the last picture
        may still be held, and a push stopped then never sends it: counting it would make
        a resume skip it.
        """
        released = None
        held = self._held
        while held and held[0][0] <= self._sound_at:
            released = held.popleft()[1]
        return released

    def _queue(
        self, lane: Lane, out: av.Packet, seconds: float, tick: float, is_video: bool
    ) -> bool:
        """Hand a packet to the shared sender; sleep while a second or more is queued."""
        position = self._position_after(out, seconds, tick, is_video)
        data = self._sink.encode(out)  # here, not on the shared thread
        stamps: tuple[int | None, int | None] = (None, None)
        if self._cuttable:
            if is_video and position is not None:
                self._positions.append((round(seconds * 1000), position))
            stamps = last_stamps(data)
            position = self._position_of(stamps[0])
        queued = Queued(
            self.pacer.due(seconds), data, seconds, position, is_video, *stamps, self.segment
        )
        if lane.add(queued) and self._sender is not None:
            self._sender.poke()
        self.meter.maybe_report()
        # A lane the sender gave back is seen to at once: a push that only keeps up with
        # real time never builds the backlog that would otherwise bring it here.
        if lane.error is not None or lane.evicted or lane.backlog > READ_AHEAD:
            return self._wait_for_lane(READ_AHEAD / 2)
        return not self._control.stop_requested

    def _position_of(self, picture_ms: int | None) -> float | None:
        """The position after the picture at ``picture_ms`` (None: no picture)."""
        if picture_ms is None:
            return None
        position = None
        positions = self._positions
        while positions and positions[0][0] <= picture_ms:
            position = positions.popleft()[1]
        return position

    def cut(self) -> Cut | None:
        """Take back what is queued for the room and not sent yet, so that a switch, a seek
        or a pause takes effect now rather than a second later; None if nothing was.

        The muxer has taken those packets: a fresh one goes on from what the room has. The
        caller takes its timeline and encoders back to :class:`Cut`'s times.
        """
        lane = self._lane
        if lane is None or lane.evicted or not lane.cut():
            return None
        self._sink.restart_muxer()
        self._positions.clear()
        if self._sei is not None:
            self._sei = SeiClock()  # the next picture carries the position again
        self.handed_on = self.progress.position
        picture, sound = lane.sent_video, lane.sent_audio
        return Cut(
            None if picture is None else picture / 1000,
            None if sound is None else sound / 1000,
            lane.sent_segment != self.segment,
        )

    @property
    def room_behind(self) -> bool:
        """Whether the room still shows an earlier segment than the one handed on now (the
        queue's last second of the clip before)."""
        lane = self._lane
        return lane is not None and self._cuttable and lane.sent_segment != self.segment

    def finish(self) -> None:
        """Wait until every queued packet is sent (unless stopped), then leave the sender."""
        if self._lane is not None and not self._control.stop_requested:
            self._wait_for_lane(0.0)
        self.close()

    def close(self) -> None:
        """Leave the shared sender, dropping what is queued (the push is over)."""
        lane, self._lane = self._lane, None
        if lane is not None and self._sender is not None:
            self._sender.detach(lane)

    def _wait_for_lane(self, level: float) -> bool:
        """Sleep until at most ``level`` seconds are queued (0: all sent); False on a stop.

        Wakes early when the sender hands the lane back: a broken room connection is
        repaired here, and a slow room's remaining packets are sent from this thread.
        """
        assert self._sender is not None
        while (lane := self._lane) is not None:
            if lane.error is not None:
                self._repair(lane, lane.error)
                continue
            if lane.evicted or not self._sender.alive:
                return self._go_solo(lane)
            backlog = lane.backlog
            if backlog <= level and (level > 0 or not lane.entries):
                break
            if level > 0 and self._cuttable and self._control.has_commands:
                break  # a switchable push's command is read now, not half a second later
            if self._control.wait(max(backlog - level, self._sender.batch)):
                return False
            self.meter.maybe_report()
        return not self._control.stop_requested

    def _repair(self, lane: Lane, cause: BaseException) -> None:
        """Reconnect to the room here (the sender must not wait for it), then hand back."""
        head = lane.entries[0] if lane.entries else None
        # Raises RoomDisconnected if the room stays away.
        self._sink.resend(cause, head.data if head is not None else b"")
        if head is not None:
            lane.entries.popleft()
            lane.record(head, self.pacer.due(head.seconds))
        self._note_sink()
        lane.resume()
        assert self._sender is not None
        self._sender.poke()

    def _go_solo(self, lane: Lane) -> bool:
        """The room was too slow for the shared sender: pace this push from its own thread."""
        log.warning(
            "the room at %s took over %g s to take a batch of packets (or the shared sender "
            "stopped): this push is paced from its own thread from now on",
            redact_url(self._sink.url),
            SLOW_WRITE,
        )
        self.close()
        for queued in list(lane.entries):
            if not self.pacer.wait(queued.seconds, queued.is_video):
                return False
            try:
                self._sink.send_bytes(queued.data)
            except OSError as exc:
                self._sink.resend(exc, queued.data)
            lane.record(queued, queued.due)
        self._note_sink()
        return not self._control.stop_requested
