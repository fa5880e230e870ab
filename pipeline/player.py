"""A switchable push: clips played one after another on one room connection.

The AI classroom's teacher clips (explanation, question, feedback…) and a watch-together
playlist both need what a single file push does not: switching to another clip now or at
the end of this one, a queue, looping, seeking, pausing and volume, all while the room
sees one publisher whose timestamps never jump. Every clip is re-encoded to one output
format (size, frame rate, AAC stereo 48 kHz), so clips of any codec, size or rate join
seamlessly; the audio sample counter is shared, so sound joins without a gap. A playback
speed (``Tempo``) retimes the pictures and stretches the sound (:mod:`pipeline.tempo`).

Each clip reports ``clip-started``, ``clip-ending`` (``spec.clip_ending`` seconds before its
end, so the application can queue what comes next in time) and ``clip-ended`` with how it
ended, each carrying the caller's ``ClipId``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from jobs.commands import Command, Loop, Pause, Queue, Resume, Seek, Switch, Tempo, Volume
from jobs.errors import SourceError
from jobs.redact import redact_url

from .control import Control
from .encoders import MS, RestartableAudioEncoder, source_fps
from .probe import probe_video
from .relay import Relay
from .renditions import RenditionRecorder, Renditions
from .routes import (
    VIDEO_TIMELINE_KEY,
    AudioTranscodeRoute,
    Gain,
    KeyframeGate,
    SampleCounter,
    VideoTranscodeRoute,
    encode_audio,
)
from .source import Source, open_source, thread_decoder
from .spec import Clip, PushSpec
from .splice import AudioSpliceRoute, VideoSpliceRoute, held_picture
from .tempo import MAX_TEMPO
from .timeline import Timeline

log = logging.getLogger(__name__)

LOOP_MODES = ("none", "clip", "last", "all")
#: While paused, the last picture is repeated at this interval (with silence).
PAUSE_STEP = Fraction(1, 10)
HISTORY_KEPT = 50
#: Samples in an AAC frame: the last sound the room got ends one frame after its start.
AAC_FRAME = 1024
#: A clip kept as a rendition must have played this close to its announced duration.
WHOLE_TOLERANCE = 1.0

ClipRoute = VideoTranscodeRoute | AudioTranscodeRoute | VideoSpliceRoute | AudioSpliceRoute

#: Receives each player event: its name and fields (URLs redacted).
EventCallback = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class ClipEnd:
    """Why playing a clip stopped: ended, stopped, switch (to ``clip``), seek (to ``position``)."""

    kind: str
    clip: Clip | None = None
    position: float = 0.0


#: ``clip-ended``'s How for each kind of end.
HOW_ENDED = {"ended": "finished", "switch": "switched", "stopped": "stopped"}


class Player:
    """Plays the job's clips into the room connection and obeys player commands."""

    def __init__(
        self,
        spec: PushSpec,
        control: Control,
        relay: Relay,
        timeline: Timeline,
        video_out: Any | None,
        audio_out: Any | None,
        on_event: EventCallback | None = None,
        renditions: Renditions | None = None,
    ) -> None:
        """``renditions``: where clips already encoded in the room's format are found; such
        a clip is remuxed (:mod:`pipeline.splice`) instead of re-encoded."""
        self._spec = spec
        self._renditions = renditions
        self._on_event = on_event
        self._control = control
        self._relay = relay
        self._timeline = timeline
        self._video_out = video_out
        # Remuxed sound (renditions) and encoded sound take turns on one output.
        self._audio_out = (
            RestartableAudioEncoder(audio_out, drop_priming=spec.switchable)
            if audio_out is not None
            else None
        )
        self._clips = spec.clips()
        self._queue: deque[Clip] = deque(self._clips[1:])
        self._loop = spec.loop if spec.loop in LOOP_MODES else "none"
        self._counter = SampleCounter(audio_out.codec_context.sample_rate if audio_out else 48_000)
        self._gain = Gain(spec.volume / 100)
        if spec.tempo != 1:
            timeline.set_tempo(_tempo(spec.tempo))
        #: Plays of the first clip still to come (RepeatNum; -1: for ever).
        self._repeats = spec.repeat - 1 if spec.repeat > 0 else -1
        self._paused = False
        self._history: list[dict[str, Any]] = []
        self._current = self._clips[0]
        self._index = 0
        self._ending_told = False
        self._pending: deque[Command] = deque()
        #: Where the playing clip's timestamps start (an MPEG-TS file's are not at 0).
        self._clip_start = 0.0
        self._video_route: VideoTranscodeRoute | None = None
        #: Whether the clip's routes remux a rendition (they cannot change speed).
        self._spliced = False
        #: Where the clip's current segment (its start, a seek, a resume) began to play.
        self._segment_start = 0.0
        #: Remuxed and encoded pictures share the video output (see KeyframeGate).
        self._gate = KeyframeGate()
        #: The picture a pause repeats, when the clip is remuxed (nothing decoded it).
        self._held: av.VideoFrame | None = None
        #: The rendition being recorded from this play of the clip, if any.
        self._recorder: RenditionRecorder | None = None

    @property
    def current_clip(self) -> str:
        """The URL of the clip playing now (the last one opened)."""
        return self._current.url

    def run(self, first: Source, rotation: int) -> str:
        """Play until the clips run out (returns why) or the push is stopped."""
        source: Source | None = self._rendition_of(first.url) or first
        self._relay.progress.duration = first.duration
        while source is not None:
            if source.rendition:
                rotation = 0
            self._event("clip-started", Duration=_seconds(source.duration))
            try:
                # The push's start point (StartSeconds, a handed-back push) is the first clip's.
                start = self._spec.start_position if self._index == 0 else 0.0
                self._start_recording(source, start)
                end = self._play(source, rotation, start)
                self._end_recording(end)
            except Exception:
                self._stop_recording("the clip failed")
                self._clip_ended("failed")
                raise
            finally:
                if source is not first:
                    source.close()
            if end.kind == "stopped" or self._relay.stopped:
                self._clip_ended("stopped")
                return "stopped"
            self._clip_ended(HOW_ENDED[end.kind], end.clip)
            source, rotation = self._next(end)
        self._flush_encoders()
        return "the playlist ended"

    # -- the clip sequence -------------------------------------------------------------

    def _next(self, end: ClipEnd) -> tuple[Source | None, int]:
        failures = 0
        while True:
            if end.clip is not None:
                clip, end = end.clip, ClipEnd("ended")
            elif self._loop == "clip":
                clip = self._current
            elif self._queue:
                clip = self._queue.popleft()
            elif self._repeats != 0 and self._current == self._clips[0]:
                if self._repeats > 0:
                    self._repeats -= 1
                clip = self._current
            elif self._loop == "last":
                clip = self._current
            elif self._loop == "all":
                self._queue = deque(self._clips[1:])
                clip = self._clips[0]
            else:
                return None, 0
            if self._relay.stopped:
                return None, 0
            try:
                if self._spec.url_guard is not None:
                    self._spec.url_guard(clip.url)
                source = self._rendition_of(clip.url) or open_source(
                    clip.url,
                    self._spec.timeouts,
                    secrets=self._spec.secrets,
                    proxy=self._spec.http_proxy,
                )
            except SourceError as exc:
                self._event(
                    "clip-failed",
                    VideoSrc=redact_url(clip.url),
                    ClipId=clip.id,
                    Reason=exc.message,
                )
                log.warning("skipping a clip that cannot be played: %s", exc.message)
                failures += 1
                if failures > len(self._clips) + len(self._queue):
                    # Looping over clips that all fail (expired signed URLs) would spin.
                    raise SourceError("no clip of the playlist can be opened any more") from None
                if self._loop in ("clip", "last") and clip == self._current:
                    return None, 0  # looping a clip that fails would spin forever
                continue
            self._current = clip
            self._index += 1
            self._relay.progress.duration = source.duration
            probe = source.video is not None and not source.rendition
            return source, probe_video(source, 0.1).rotation if probe else 0

    def _rendition_of(self, url: str) -> Source | None:
        """The clip's rendition, if the push has a cache and it holds one."""
        if self._renditions is None:
            return None
        source = self._renditions.open(url)
        self._show_renditions()
        return source

    def _play(self, source: Source, rotation: int, start: float = 0.0) -> ClipEnd:
        while True:
            end = self._play_from(source, rotation, start)
            if end.kind != "seek":
                return end
            self._stop_recording("a seek")
            start = end.position

    # -- renditions recorded from a first play -------------------------------------------

    def _start_recording(self, source: Source, start: float) -> None:
        """Record the clip's rendition as it plays, if it has none and plays from its start."""
        if (
            self._renditions is None
            or source.rendition
            or start > 0
            or not self._gain.unity
            or self._timeline.tempo != 1
        ):
            return
        audio = self._audio_out.stream if self._audio_out is not None else None
        self._recorder = self._renditions.recorder(self._current.url, self._video_out, audio)
        if self._recorder is None:
            return
        self._gate.due = True  # a rendition starts with an IDR
        if self._audio_out is not None:
            # The last clip's sound still in the encoder goes to the room, not to this
            # clip's rendition.
            self._relay.send(self._audio_out.drain(), False)

    def _send(self, packets: list[av.Packet], is_video: bool) -> bool:
        """Send output packets to the room, copied first into a rendition being recorded."""
        if self._recorder is not None:
            self._recorder.add(packets, is_video)
        return self._relay.send(packets, is_video)

    def _end_recording(self, end: ClipEnd) -> None:
        """Keep the recorded rendition of a clip played to its end; drop any other."""
        recorder, self._recorder = self._recorder, None
        if recorder is None or self._renditions is None:
            return
        if end.kind != "ended":
            recorder.abort(f"the clip ended early ({end.kind})")
            return
        progress = self._relay.progress
        # What was read, not what the room has yet: a plain push's sender may still hold
        # the clip's last second.
        played = self._relay.handed_on - self._clip_start
        if progress.duration and played < progress.duration - WHOLE_TOLERANCE:
            # A file cut short must not become a rendition that plays "complete" later.
            recorder.abort(f"the clip stopped at {played:.1f} s of {progress.duration:.1f} s")
            return
        if self._audio_out is not None:
            # The encoder still holds the clip's last sound: the rendition needs it.
            held = self._audio_out.drain()
            recorder.add(held, is_video=False)
            self._relay.send(held, False)
        if recorder.commit(self._current.url, self._renditions.stats.format) is not None:
            self._renditions.kept()
            self._show_renditions()

    def _stop_recording(self, why: str) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.abort(why)

    def _play_from(self, source: Source, rotation: int, start: float) -> ClipEnd:
        from .pushing import _packets, _seek  # noqa: PLC0415 - the file push's reading rules

        skip = None
        if start > 0 and _seek(source, Fraction(start).limit_denominator(1000)):
            skip = Fraction(start).limit_denominator(1000)
        # Join on the picture's end: sound already sent past it is trimmed from the new clip.
        joint = self._timeline.end_of(VIDEO_TIMELINE_KEY) if self._video_out is not None else None
        self._timeline.begin_segment(skip if skip is not None else source.start_time, joint)
        routes = self._routes(source, rotation, skip)  # in the segment: they read its offset
        relay = self._relay
        # The position is this clip's from here (the last one's until a packet is sent),
        # and a seek back re-arms clip-ending.
        self._clip_start = float(source.start_time or 0)
        relay.progress.position = float(skip) if skip is not None else self._clip_start
        self._segment_start = relay.progress.position
        relay.segment += 1
        self._ending_told = False
        for packet in _packets(source):
            end = self._obey(source)
            if end is not None:
                return end
            if relay.stopped:
                return ClipEnd("stopped")
            route = routes.get(packet.stream.index)
            if route is None or packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue
            if not self._send(list(route.process(packet)), route.is_video):
                return ClipEnd("stopped")
            if not self._ending_told:
                self._tell_ending()
        for route in routes.values():
            if not self._send(list(route.finish_input()), route.is_video):
                return ClipEnd("stopped")
        return ClipEnd("ended")

    def _tell_ending(self) -> None:
        """``clip-ending`` once the room is ``clip_ending`` seconds from the clip's end."""
        lead, progress = self._spec.clip_ending, self._relay.progress
        if lead <= 0 or not progress.duration or not self._relay.track_position:
            return
        if self._relay.room_behind:
            return  # the room still shows the clip before: its position is not this clip's
        # In the room's seconds: a clip played faster ends sooner.
        remaining = (self._clip_start + progress.duration - progress.position) / float(
            self._timeline.tempo
        )
        if remaining <= lead:
            self._ending_told = True
            self._event("clip-ending", Remaining=round(max(remaining, 0.0), 3))

    def _clip_ended(self, how: str, to: Clip | None = None) -> None:
        """``clip-ended``: how (finished, switched, stopped, failed), where, and what is next."""
        fields: dict[str, Any] = {
            "How": how,
            "Position": round(self._relay.progress.position, 3),
        }
        if to is not None:
            fields |= {"To": redact_url(to.url), "ToClipId": to.id}
        self._event("clip-ended", **fields)

    def _routes(self, source: Source, rotation: int, skip: Fraction | None) -> dict[int, ClipRoute]:
        self._spliced = source.rendition and self._timeline.tempo == 1
        if self._spliced:
            return self._splice_routes(source, skip)
        self._reencoded("clip")
        routes: dict[int, ClipRoute] = {}
        if source.video is not None and self._video_out is not None:
            thread_decoder(source.video)
            rate = source_fps(source.video)
            out_rate = Fraction(self._video_out.codec_context.framerate or 30)
            self._video_route = VideoTranscodeRoute(
                source.video,  # type: ignore[arg-type]
                self._video_out,
                self._timeline,
                skip,
                rotation=rotation,
                # Played faster, a source may outrun the output's rate.
                cap_rate=rate * MAX_TEMPO > out_rate,
                gate=self._gate,
            )
            routes[source.video.index] = self._video_route
        if source.audio is not None and self._audio_out is not None:
            routes[source.audio.index] = AudioTranscodeRoute(
                source.audio,  # type: ignore[arg-type]
                self._audio_out,
                self._timeline,
                skip,
                counter=self._counter,
                gain=self._gain,
                trim_overlap=True,
            )
        return routes

    def _splice_routes(self, source: Source, skip: Fraction | None) -> dict[int, ClipRoute]:
        """A rendition's routes: remuxed, with a bridge when ``skip`` is inside a GOP."""
        self._video_route = None  # its last picture is another clip's
        routes: dict[int, ClipRoute] = {}
        if source.video is not None and self._video_out is not None:
            routes[source.video.index] = VideoSpliceRoute(
                source.video,  # type: ignore[arg-type]
                self._video_out,
                self._timeline,
                self._gate,
                skip,
                self._reencoded,
            )
        if source.audio is not None and self._audio_out is not None:
            routes[source.audio.index] = AudioSpliceRoute(
                source.audio,  # type: ignore[arg-type]
                self._audio_out,
                self._timeline,
                self._counter,
                self._gain,
                skip,
                self._reencoded,
            )
        return routes

    def _reencoded(self, what: str) -> None:
        """Count what a push with renditions still re-encodes (its status shows it)."""
        if self._renditions is not None:
            self._renditions.stats.reencode(what)
            self._show_renditions()

    def _show_renditions(self) -> None:
        """Put what the renditions found and cost in the push's status."""
        if self._renditions is not None:
            self._relay.progress.renditions = self._renditions.stats.as_dict()

    # -- commands ----------------------------------------------------------------------

    def _obey(self, source: Source) -> ClipEnd | None:
        """Apply the commands received since the last packet; an end if the clip must end."""
        for command in self._commands():
            end = self._apply(command, source)
            if end is not None:
                return end
        return None

    def _commands(self) -> Iterator[Command]:
        """Commands in the order sent; those after one that ends the clip (a switch sent
        with a queue edit) wait for the next clip's first look, never dropped."""
        self._pending.extend(self._control.commands())
        while self._pending:
            yield self._pending.popleft()

    def _cut(self, replacing: bool = True) -> bool:
        """Take back what is queued for the room but not sent (up to a second of this clip),
        so that a command takes effect at what the viewer sees now; whether there was any.

        The timeline, the sound's sample counter and the encoders go back to the room's last
        picture and sound; the next picture is an IDR (the room never got the ones after).
        A command that changes how the clip plays (pause, volume, tempo) and not what plays
        (``replacing``: a switch, a seek) leaves the queue alone while the room still shows
        the clip before: the rest of that clip would be lost, and it acts a moment later.
        """
        if not replacing and self._relay.room_behind:
            return False
        cut = self._relay.cut()
        if cut is None:
            return False
        if cut.behind:
            # The room never got this clip (or this seek): the command acts at its start.
            self._relay.progress.position = self._segment_start
        self._stop_recording("a command took back what was queued")
        sound = None
        if self._audio_out is not None:
            self._audio_out.drain()  # sound past the cut, never sent
            if cut.sound is not None:
                rate = self._counter.rate
                self._counter.next_pts = round(cut.sound * rate) + AAC_FRAME
                sound = (self._counter.next_pts, rate)
            else:  # no sound reached the room: the next is placed where it is due
                self._counter.next_pts = None
        picture = None if cut.picture is None else Fraction(cut.picture).limit_denominator(1000)
        self._timeline.rewind(VIDEO_TIMELINE_KEY, picture, self._frame_duration(), sound)
        self._gate.due = True
        return True

    def _frame_duration(self) -> Fraction:
        rate = self._video_out.codec_context.framerate if self._video_out is not None else None
        return 1 / Fraction(rate or 30)

    def _apply(self, command: Command, source: Source) -> ClipEnd | None:
        match command:
            case Switch(When="now"):
                self._cut()
                return ClipEnd("switch", clip=Clip(command.VideoSrc, command.ClipId))
            case Switch():
                self._queue.appendleft(Clip(command.VideoSrc, command.ClipId))
                self._event(
                    "queued-next", VideoSrc=redact_url(command.VideoSrc), ClipId=command.ClipId
                )
            case Queue():
                self._edit_queue(
                    command.Action, [Clip(c.VideoSrc, c.ClipId) for c in command.clips()]
                )
            case Seek():
                self._cut()
                self._event("seek", Position=float(command.Position))
                return ClipEnd("seek", position=float(command.Position))
            case Pause():
                return self._pause(source)
            case Loop():
                self._loop = command.Loop
                self._event("loop", Loop=self._loop)
            case Volume():
                if command.Volume != 100:
                    self._stop_recording("a volume change")
                # Paused, the room hears silence: the new volume starts with the resume.
                changed = float(command.Volume) / 100 != self._gain.target
                cut = changed and not self._paused and self._cut(replacing=False)
                self._gain.set(float(command.Volume) / 100)
                self._event("volume", Volume=command.Volume)
                if cut:  # the sound from what the viewer hears now, at the new volume
                    return ClipEnd("seek", position=self._relay.progress.position)
            case Tempo():
                return self._set_tempo(_tempo(command.Tempo), source)
        return None

    def _set_tempo(self, tempo: Fraction, source: Source) -> ClipEnd | None:
        """Play on at ``tempo`` from the next packet. A remuxed rendition cannot change
        speed: it goes on re-encoded from the same place, until the clip ends (going back
        to remuxing mid-clip would cost a seam for a saving of a few seconds)."""
        if tempo != 1:
            self._stop_recording("a tempo change")
        cut = tempo != self._timeline.tempo and not self._paused and self._cut(replacing=False)
        self._timeline.set_tempo(tempo)
        self._event("tempo", Tempo=float(tempo))
        if cut or (self._spliced and tempo != 1):
            return ClipEnd("seek", position=self._relay.progress.position)
        return None

    def _edit_queue(self, action: str, clips: list[Clip]) -> None:
        if action == "replace":
            self._queue = deque(clips)
        elif action == "clear":
            self._queue.clear()
        else:
            self._queue.extend(clips)
        self._event("queue", Action=action)

    def _pause(self, source: Source) -> ClipEnd | None:
        """Keep the room's publisher alive: repeat the last picture with silence."""
        relay = self._relay
        behind = relay.room_behind  # the room still shows the clip before: not cut
        cut = self._cut(replacing=False)
        at = relay.handed_on if behind else relay.progress.position
        resume_at = Fraction(at).limit_denominator(1000)
        self._stop_recording("a pause")
        if source.rendition or cut:
            # Nothing decoded the remuxed pictures, or the last one decoded was taken back
            # unsent: decode the one the viewer sees, once.
            self._held = held_picture(source, resume_at)
            if source.rendition:
                self._reencoded("pause")
            elif self._held is not None and self._video_route is not None:
                self._held = self._video_route.fit(self._held)  # the room's size and turn
        self._paused = True
        self._event("pause")
        relay.track_position = False
        try:
            t = self._timeline.end
            while not relay.stopped:
                for command in self._commands():
                    if isinstance(command, Resume | Switch | Seek):
                        self._cut()  # the held picture queued ahead
                        self._timeline.begin_segment(
                            resume_at, self._timeline.end_of(VIDEO_TIMELINE_KEY)
                        )
                        self._paused = False
                        self._held = None
                        self._event("resume")
                        moved = source.rendition or cut  # held_picture() read the source
                        if not isinstance(command, Resume):
                            ended = self._apply(command, source)
                            if ended is None and moved:  # a switch at the clip's end
                                ended = ClipEnd("seek", position=float(resume_at))
                            return ended
                        # A remuxed clip's next pictures refer to ones the viewer no longer
                        # holds: it goes on from a bridge at the point it paused. (So does
                        # a clip read on past it.)
                        resumed = ClipEnd("seek", position=float(resume_at))
                        return resumed if moved else None
                    if not isinstance(command, Pause):
                        self._apply(command, source)
                if not self._send_filler(t):
                    break
                t += PAUSE_STEP
            return ClipEnd("stopped")
        finally:
            relay.track_position = True

    def _send_filler(self, t: Fraction) -> bool:
        packets: list[tuple[av.Packet, bool]] = []
        last = self._held
        if last is None and self._video_route is not None:
            last = self._video_route.last_frame
        if last is not None and self._video_out is not None:
            frame = last.reformat(format="yuv420p")
            out = self._timeline.place_output(t, VIDEO_TIMELINE_KEY, PAUSE_STEP)
            frame.pts, frame.time_base = round(out / MS), MS
            frame.pict_type = self._gate.picture_type()
            packets += [(p, True) for p in self._video_out.encode(frame)]
        if self._audio_out is not None:
            rate = self._audio_out.codec_context.sample_rate
            if self._counter.next_pts is None:
                self._counter.next_pts = round(t * rate)
            while self._counter.next_pts < (t + PAUSE_STEP) * rate:
                silence = av.AudioFrame.from_ndarray(
                    np.zeros((2, 1024), dtype=np.float32), format="fltp", layout="stereo"
                )
                packets += [
                    (p, False)
                    for p in encode_audio(self._audio_out, silence, self._counter, self._timeline)
                ]
        packets.sort(key=lambda item: (item[0].dts or 0) * Fraction(item[0].time_base))
        return all(self._relay.send([p], is_video) for p, is_video in packets)

    # -- reporting ---------------------------------------------------------------------

    def _event(self, name: str, **fields: Any) -> None:
        entry = {"Event": name, "OutputTime": round(float(self._timeline.end), 3), **fields}
        self._history = [*self._history, entry][-HISTORY_KEPT:]
        log.info("player: %s %s", name, fields or "")
        if self._on_event is not None:
            clip = {"Clip": self._index, "ClipId": self._current.id}
            self._on_event(name, {**clip, "VideoSrc": redact_url(self._current.url), **entry})
        if self._spec.switchable:
            self._relay.progress.player = self.state()
        self._relay.meter.report()

    def state(self) -> dict[str, Any]:
        """The status API's ``Player`` object."""
        return {
            "Clip": _clip_state(self._current, self._index),
            "Queue": [_clip_state(clip) for clip in self._queue],
            "Loop": self._loop,
            "Paused": self._paused,
            "Volume": round(self._gain.target * 100),
            "Tempo": float(self._timeline.tempo),
            "History": self._history,
        }

    def _flush_encoders(self) -> None:
        for out, is_video in ((self._video_out, True), (self._audio_out, False)):
            if out is not None:
                self._relay.send(list(out.encode(None)), is_video)


def _clip_state(clip: Clip, index: int | None = None) -> dict[str, Any]:
    """A clip as the status API shows it (URL redacted)."""
    state: dict[str, Any] = {} if index is None else {"Index": index}
    return state | {"VideoSrc": redact_url(clip.url), "ClipId": clip.id}


def _tempo(value: float) -> Fraction:
    """A speed asked for (0.5–2.0) as the timeline's exact fraction."""
    return Fraction(value).limit_denominator(100)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
