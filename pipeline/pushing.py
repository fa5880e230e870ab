"""One push, start to end: source → decisions → routes → timeline → pacer → sink.

:func:`push` is what a worker calls; it knows nothing of Flask, Celery or Redis. It reads
stop requests from a :class:`~pipeline.control.Control` and reports through a callback.
A file is pushed once, paced in real time; a live source is relayed as it comes and
reconnected when it drops, on the same room connection and the same output timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction
from typing import Any

import av
import av.error

from jobs.errors import SourceEndedEarly, SourceError, SourceHasNoMedia, SourceUnreachable
from jobs.redact import redact_text, redact_url

from .catchup import from_live_edge
from .clock import WALL_CLOCK, Clock
from .control import Control, call_until_stopped
from .encoders import source_fps
from .fanout import Fanout
from .plan import Action, Decision, decide_audio, decide_video
from .player import EventCallback, Player
from .probe import VideoProbe, probe_video
from .progress import Progress, ProgressCallback, StreamReport
from .relay import Relay
from .renditions import Renditions, format_of_outputs, video_format
from .routes import AudioTranscodeRoute, RemuxRoute, Route, VideoTranscodeRoute, packet_time
from .sink import PublishCut, RoomConnector, RtmpSink
from .source import LIVE_ANALYZE_LONG, Source, open_source, thread_decoder
from .spec import OutputProfile, PushSpec
from .timeline import Timeline
from .whip import WHIP_PROFILE, is_whip

log = logging.getLogger(__name__)

#: A file that stops this much before its announced duration was truncated.
EARLY_END_TOLERANCE = 2.0
#: Corrupt stretches a push reads past before it gives up on the source.
MAX_DEMUX_ERRORS = 50
#: A switchable push re-encodes every clip, whatever the first one is.
SWITCHABLE = Decision(Action.TRANSCODE, "switchable push: every clip re-encoded to one format")
#: A file that needs re-encoding, with a rendition cache: encoded once, remuxed after.
ONCE = Decision(Action.TRANSCODE, "re-encoded once into a rendition; later pushes remux it")
#: A live timestamp jumping back, or forward by more than this, starts a new segment.
LIVE_JUMP = Fraction(5)
#: FFmpeg's internal time base, for a stream that announces none.
MICROSECOND = Fraction(1, av.time_base)


class Outcome(StrEnum):
    """How a push ended (errors are raised instead)."""

    COMPLETED = "completed"
    STOPPED = "stopped"


@dataclass
class PushResult:
    """The end of a push: how it ended, why, and the last progress.

    ``cause`` is what the stop was requested with (``Control.request_stop``); None when the
    push completed or reached its time limit.
    """

    outcome: Outcome
    reason: str
    progress: Progress
    cause: object | None = None


@dataclass(frozen=True)
class Output:
    """One output stream of the room connection and how source packets reach it."""

    decision: Decision
    stream: Any
    rotation: int = 0
    fps: Fraction | None = None


def push(
    spec: PushSpec,
    control: Control,
    on_progress: ProgressCallback | None = None,
    on_connected: ProgressCallback | None = None,
    on_event: EventCallback | None = None,
    connect: RoomConnector | None = None,
    clock: Clock = WALL_CLOCK,
) -> PushResult:
    """Push ``spec.source`` into ``spec.target`` until it ends or is stopped.

    The source is opened and checked before the room is connected to, so a bad source
    fails fast without the room ever seeing the user; a stop does not wait for a live
    source to start. ``on_connected`` is called once the room connection is open.
    ``connect`` opens the room connection (by default RTMP to ``spec.target``; a
    :class:`~pipeline.fileroom.RoomFiles` writes files), ``clock`` paces the push (by
    default the wall clock; a :class:`~pipeline.clock.VirtualClock` runs it at once).
    """
    if any(is_whip(url) for url in (spec.target, *(t.url for t in spec.targets))):
        # What every WebRTC receiver decodes: a source of another H.264 profile is re-encoded.
        spec = replace(spec, profile=replace(spec.profile, h264_profile=WHIP_PROFILE))
    source = _open_first(spec, control)
    if source is None:
        unstarted = Progress(position=_starting_position(spec))
        return _stopped(control, unstarted)
    try:
        if spec.profile.h264_profile == WHIP_PROFILE and source.video is None:
            raise SourceHasNoMedia(
                "the source has no video: a push over WHIP publishes pictures (and their sound)"
            )
        live = _is_live(spec, source)
        probe = (
            probe_video(source, spec.profile.max_remux_gop_seconds + 1)
            if source.video is not None and not live
            else None
        )
        decisions = _decide(source, spec.profile, probe)
        once = _encode_once(spec, decisions, live)
        if spec.switchable or once:
            decisions = {s: SWITCHABLE if spec.switchable else ONCE for s in decisions}
        progress = _first_progress(spec, source, decisions, live)
        if control.stop_requested:
            return _stopped(control, progress)
        fanout = _fanout(spec, progress, on_event, connect)
        sink = RtmpSink(
            spec.target,
            spec.timeouts,
            spec.secrets,
            spec.rtmp_client,
            fanout.connect if fanout is not None else connect,
            chunk_size=spec.rtmp_chunk_size,
        )
        sink.open()
        # Until it is closed: a stop this thread is slow to act on ends the publish anyway.
        with control.cuts_off(sink.cut), _changing_targets(control, fanout):
            timeline = Timeline()
            relay = Relay(spec, control, sink, timeline, progress, on_progress, live, clock)
            try:
                if control.stop_requested:  # asked while the room connection opened
                    return _stopped(control, progress)
                outputs = _open_outputs(spec, source, sink, decisions, probe)
                sink.start()
                log.info("publishing to the room at %s", redact_url(spec.target))
                if on_connected is not None:
                    on_connected(progress.copy())
                if live:
                    return _push_live(spec, control, source, outputs, relay, timeline, clock)
                if spec.switchable or once:
                    return _play(spec, control, source, outputs, relay, timeline, probe, on_event)
                return _push_file(spec, source, outputs, relay, timeline)
            except (PublishCut, SourceError, OSError) as exc:
                if not (isinstance(exc, PublishCut) or control.stop_requested):
                    raise
                # This thread was held up in a read or a write past the stop, which ended
                # the publish (or made the read give up): a stop, not a failure.
                log.info("stopped while the push was held up in a read or a write")
                relay.meter.report()
                return _stopped(control, progress)
            finally:
                try:
                    relay.close()  # before the sink closes: the shared sender lets go of it
                finally:
                    sink.close(send_held=not relay.stopped)
    finally:
        source.close()


def _fanout(
    spec: PushSpec,
    progress: Progress,
    on_event: EventCallback | None,
    connect: RoomConnector | None,
) -> Fanout | None:
    """A push to several rooms publishes through one :class:`~pipeline.fanout.Fanout`."""
    if not spec.targets:
        return None
    return Fanout(
        spec.targets,
        spec.timeouts,
        progress,
        on_event,
        connect,
        spec.rtmp_client,
        spec.rtmp_chunk_size,
        spec.secrets,
        spec.fanout_pictures_per_send,
    )


@contextmanager
def _changing_targets(control: Control, fanout: Fanout | None) -> Iterator[None]:
    """While the push publishes, rooms are added and removed through ``control``."""
    if fanout is None:
        yield
        return
    control.on_targets(fanout.change)
    try:
        yield
    finally:
        control.on_targets(None)


def _first_progress(
    spec: PushSpec, source: Source, decisions: dict[av.stream.Stream, Decision], live: bool
) -> Progress:
    """The progress before the first packet: where the push starts, and what it does with
    each stream of the source (logged)."""
    progress = Progress(
        position=_starting_position(spec),
        duration=None if live else source.duration,
        streams=[
            StreamReport(s.type, s.codec_context.name, d.action.value, d.reason)
            for s, d in decisions.items()
        ],
        source_state="connected" if live else None,
    )
    for report in progress.streams:
        log.info("%s %s: %s (%s)", report.type, report.codec, report.action, report.reason)
    return progress


def _stopped(control: Control, progress: Progress) -> PushResult:
    """The result of a push stopped by ``control`` (not by its relay's time limit)."""
    return PushResult(
        Outcome.STOPPED, control.stop_reason or "stopped", progress.copy(), control.stop_cause
    )


def _relay_stopped(relay: Relay) -> PushResult:
    """The result of a push whose relay stopped: by ``control``, or at its time limit."""
    return PushResult(Outcome.STOPPED, relay.stop_reason, relay.progress.copy(), relay.stop_cause)


def _starting_position(spec: PushSpec) -> float:
    """Where a file push starts in its source (a switchable one: its first clip): what a
    stop before any packet must report, so that the resume point is kept."""
    return 0.0 if spec.live else spec.start_position


def _open_first(spec: PushSpec, control: Control) -> Source | None:
    """Open the source to push; None if a stop came first.

    A live source opens as :func:`_open_live_until_stopped` says. A file opens on this
    thread: when 200 pushes start at once, a helper thread each made the start-up burst
    longer (bench/concurrency.py).
    """
    if spec.live:
        return _open_live_until_stopped(spec, control, expect_video=True)
    return open_source(spec.source, spec.timeouts, secrets=spec.secrets, proxy=spec.http_proxy)


def _open_live_until_stopped(spec: PushSpec, control: Control, expect_video: bool) -> Source | None:
    """Open the live source on a helper thread; None as soon as a stop is requested.

    A live source may not be publishing (yet, or again): its open then waits at the source
    server for the stream, up to the open timeout, and a stop must not wait with it.
    """
    return call_until_stopped(
        control, lambda: open_live_source(spec, control, expect_video), Source.close
    )


def _play(
    spec: PushSpec,
    control: Control,
    source: Source,
    outputs: dict[str, Output],
    relay: Relay,
    timeline: Timeline,
    probe: VideoProbe | None,
    on_event: EventCallback | None,
) -> PushResult:
    """A switchable push: the player runs the clips and the commands. Also a file that
    needs re-encoding and has a rendition cache: the player of one clip, without events."""
    video, audio = outputs.get("video"), outputs.get("audio")
    renditions = None
    if spec.rendition_cache is not None:
        fmt = format_of_outputs(video and video.stream, spec.profile)
        renditions = Renditions(
            spec.rendition_cache, fmt, spec.timeouts.source_open, spec.http_proxy
        )
    player = Player(
        spec,
        control,
        relay,
        timeline,
        video and video.stream,
        audio and audio.stream,
        on_event if spec.switchable else None,
        renditions,
    )
    try:
        reason = player.run(source, probe.rotation if probe is not None else 0)
    except OSError as exc:  # FFmpeg's I/O errors are OSErrors too
        raise _read_failure(exc, spec, player.current_clip) from None
    relay.finish()  # a plain push's packets queued for the shared sender go out first
    relay.meter.report()
    if relay.stopped:
        return _relay_stopped(relay)
    if not spec.switchable:
        _check_complete(relay)
        reason = "the source ended"
    return PushResult(Outcome.COMPLETED, reason, relay.progress.copy())


def _encode_once(spec: PushSpec, decisions: dict[av.stream.Stream, Decision], live: bool) -> bool:
    """Whether a plain file push that must re-encode goes through a rendition: the first
    push encodes it (and keeps it), later ones remux it (docs/renditions.md)."""
    return (
        spec.rendition_cache is not None
        and not (live or spec.switchable)
        and any(d.action is Action.TRANSCODE for d in decisions.values())
    )


def _read_failure(exc: OSError, spec: PushSpec, url: str) -> SourceUnreachable:
    """A failed read of the source at ``url`` as the error the job reports."""
    detail = redact_text(str(exc.strerror or exc), [*spec.secrets, url])
    return SourceUnreachable(f"reading the source failed: {detail}")


def _is_live(spec: PushSpec, source: Source) -> bool:
    """Mode=live must name a stream; an RTMP stream sent as Mode=vod is relayed as live."""
    scheme = spec.source.split(":", 1)[0].lower()
    if spec.live and source.duration is not None and scheme not in {"rtmp", "rtmps"}:
        raise SourceError(
            f"{redact_url(spec.source)} is a file ({source.duration:.1f} s), not a live "
            "stream: push it with Mode=vod"
        )
    if not spec.live and scheme in {"rtmp", "rtmps"}:
        log.info("an rtmp source is a live stream: relaying it as Mode=live")
        return True
    return spec.live


def _decide(
    source: Source, profile: OutputProfile, probe: VideoProbe | None
) -> dict[av.stream.Stream, Decision]:
    decisions: dict[av.stream.Stream, Decision] = {}
    if source.video is not None:
        decisions[source.video] = decide_video(source.video, profile, probe)
    if source.audio is not None:
        decisions[source.audio] = decide_audio(source.audio, profile)
    return decisions


def _open_outputs(
    spec: PushSpec,
    source: Source,
    sink: RtmpSink,
    decisions: dict[av.stream.Stream, Decision],
    probe: VideoProbe | None,
) -> dict[str, Output]:
    """The room connection's streams, one per source stream type (created once)."""
    outputs: dict[str, Output] = {}
    for stream, decision in decisions.items():
        if decision.action is Action.REMUX:
            outputs[stream.type] = Output(decision, sink.add_copy_of(stream))
        elif stream.type == "video":
            rotation = probe.rotation if probe is not None else 0
            # The renditions' format too: a push's encoders and its lookups must agree.
            fmt = video_format(stream, spec.profile, rotation)
            out = sink.add_h264(fmt.width, fmt.height, fmt.fps, spec.profile)
            outputs["video"] = Output(decision, out, rotation, fmt.fps)
        else:
            outputs["audio"] = Output(decision, sink.add_aac(spec.profile))
    return outputs


def _routes_for(
    source: Source, outputs: dict[str, Output], timeline: Timeline, skip_before: Fraction | None
) -> dict[int, Route]:
    """Routes from one source connection's streams to the room connection's streams."""
    routes: dict[int, Route] = {}
    for stream in source.streams:
        output = outputs.get(stream.type)
        if output is None:
            continue
        is_video = stream.type == "video"
        if output.decision.action is Action.REMUX:
            routes[stream.index] = RemuxRoute(
                output.stream, timeline, is_video, Fraction(stream.time_base or MICROSECOND)
            )
        elif is_video:
            thread_decoder(stream)  # unless the probe opened it already
            routes[stream.index] = VideoTranscodeRoute(
                stream,  # type: ignore[arg-type]
                output.stream,
                timeline,
                skip_before,
                rotation=output.rotation,
                cap_rate=output.fps is not None and source_fps(stream) > output.fps,
            )
        else:
            routes[stream.index] = AudioTranscodeRoute(
                stream,  # type: ignore[arg-type]
                output.stream,
                timeline,
                skip_before,
            )
    return routes


def _push_file(
    spec: PushSpec, source: Source, outputs: dict[str, Output], relay: Relay, timeline: Timeline
) -> PushResult:
    """A recorded file, once, in real time, from ``spec.start_position``."""
    start = Fraction(spec.start_position).limit_denominator(1000)
    video_remux = "video" in outputs and outputs["video"].decision.action is Action.REMUX
    exact = start > 0 and "video" in outputs and not video_remux
    routes = _routes_for(source, outputs, timeline, start if exact else None)
    if start > 0 and not _seek(source, start):
        start = Fraction(0)
        exact = False
        routes = _routes_for(source, outputs, timeline, None)
    # A remuxed video must start on a keyframe; after a seek, the first video packet (a
    # keyframe at or before the target) sets the output origin instead of the target.
    need_keyframe = video_remux
    resuming = start > 0  # a Fraction: compared once, not for every packet
    if not (video_remux and resuming):
        timeline.begin_segment(start if resuming else source.start_time, Fraction(0))
    try:
        for packet in _packets(source):
            if relay.stopped:
                break
            if packet.size == 0 or (packet.dts is None and packet.pts is None):
                continue  # the demuxer's end-of-stream marker, or a packet with no time
            route = routes[packet.stream.index]
            if need_keyframe:
                if not (route.is_video and packet.is_keyframe):
                    continue
                need_keyframe = False
                if resuming:
                    t = packet_time(packet)
                    timeline.begin_segment(t if t is not None else start, Fraction(0))
            elif resuming and not route.is_video:
                t = packet_time(packet)
                if t is not None and t < timeline.to_source(Fraction(0)):
                    continue  # audio from before the point the picture resumes at
            if not relay.send(list(route.process(packet)), route.is_video):
                break
        else:
            for route in routes.values():
                if not relay.send(list(route.flush()), route.is_video):
                    break
    except OSError as exc:  # FFmpeg's I/O errors are OSErrors too
        raise _read_failure(exc, spec, source.url) from None

    relay.finish()
    relay.meter.report()
    if relay.stopped:
        return _relay_stopped(relay)
    _check_complete(relay)
    return PushResult(Outcome.COMPLETED, "the source ended", relay.progress.copy())


def _check_complete(relay: Relay) -> None:
    """Raise SourceEndedEarly when a file stopped well before its announced duration."""
    duration = relay.progress.duration
    # Not the position: that follows the picture, which may end before the sound.
    reached = relay.source_reached
    if duration is not None and reached < duration - EARLY_END_TOLERANCE:
        raise SourceEndedEarly(
            f"the source ended early, at {reached:.1f} s of an announced {duration:.1f} s"
        )


def _push_live(
    spec: PushSpec,
    control: Control,
    first: Source,
    outputs: dict[str, Output],
    relay: Relay,
    timeline: Timeline,
    clock: Clock,
) -> PushResult:
    """Relay a live source as it comes; when it drops, reconnect on the same timeline."""
    source = first
    progress = relay.progress
    while True:
        try:
            _relay_connection(source, _routes_for(source, outputs, timeline, None), relay, timeline)
        except (av.error.FFmpegError, OSError) as exc:
            if not relay.stopped:
                log.warning("the live source dropped: %s", exc)
        finally:
            if source is not first:
                source.close()
        if relay.stopped:
            relay.meter.report()
            return _relay_stopped(relay)
        reconnected = _reconnect(spec, control, relay, outputs, clock)
        if reconnected is None:
            relay.meter.report()
            if relay.stopped:
                return _relay_stopped(relay)
            return PushResult(Outcome.COMPLETED, "source ended", progress.copy())
        source = reconnected
        relay.restart_clock()


def _relay_connection(
    source: Source, routes: dict[int, Route], relay: Relay, timeline: Timeline
) -> None:
    """Relay one live connection until it ends; its first packet continues the timeline."""
    last: dict[int, Fraction] = {}
    need_keyframe = any(r.is_video for r in routes.values())
    started = False
    for packet in from_live_edge(_packets(source)):
        if relay.stopped:
            return
        t = packet_time(packet)
        route = routes.get(packet.stream.index)
        if packet.size == 0 or t is None or route is None:
            continue
        if need_keyframe:
            # Nothing before the first keyframe: a viewer would get sound over no picture.
            if not (route.is_video and packet.is_keyframe):
                continue
            need_keyframe = False
        previous = last.get(packet.stream.index)
        jumped = previous is not None and not (previous - 1 <= t <= previous + LIVE_JUMP)
        if not started or jumped:
            # A new publish (or a restarted clock) continues where the output ended.
            timeline.begin_segment(t)
            started = True
            last.clear()
        last[packet.stream.index] = t
        if not relay.send(list(route.process(packet)), route.is_video):
            return


def open_live_source(spec: PushSpec, control: Control, expect_video: bool) -> Source:
    """Open a live source quickly; analyse longer when video was expected but not found.

    A live FLV stream announces a video stream only with its first video packets, which a
    short analysis can miss: one longer try tells an audio-only source from a slow one.

    The packets the analysis reads are kept: an RTMP server starts a new player's picture
    at a keyframe, and dropping it would leave the room without a picture until the next
    one, a whole GOP later (:mod:`pipeline.catchup` keeps what is stale out of the room).
    """
    source = open_source(spec.source, spec.timeouts, live=True, secrets=spec.secrets)
    # Not once the push is stopped: the caller has stopped waiting for this open.
    if source.video is None and expect_video and not control.stop_requested:
        source.close()
        source = open_source(
            spec.source, spec.timeouts, live=True, secrets=spec.secrets, analyze=LIVE_ANALYZE_LONG
        )
    return source


def _reconnect(
    spec: PushSpec,
    control: Control,
    relay: Relay,
    relay_outputs: dict[str, Output],
    clock: Clock,
) -> Source | None:
    """Reopen the live source with backoff within the grace period; None if it stays away."""
    progress = relay.progress
    progress.source_state = "reconnecting"
    relay.meter.report()
    lost = clock.now()
    delay = 0.25
    expect_video = "video" in relay_outputs
    while clock.now() - lost < spec.live_grace:
        if clock.sleep(control, delay):
            return None
        delay = min(delay * 2, 2.0)
        progress.reconnects += 1
        # An attempt never outlasts the grace: a server that holds a player until its
        # publisher returns would otherwise keep the push for the whole open timeout.
        left = max(0.5, spec.live_grace - (clock.now() - lost))
        attempt = replace(
            spec, timeouts=replace(spec.timeouts, source_open=min(spec.timeouts.source_open, left))
        )
        try:
            source = _open_live_until_stopped(attempt, control, expect_video)
        except SourceError as exc:
            log.info("live source still away (attempt %d): %s", progress.reconnects, exc)
            relay.meter.report()
            continue
        if source is None:
            return None  # stopped
        log.info("live source back after %.1f s", clock.now() - lost)
        progress.source_state = "connected"
        relay.meter.report()
        return source
    log.info("live source away for %g s: the push ends", spec.live_grace)
    progress.source_state = "ended"
    return None


def _packets(source: Source) -> Iterator[av.Packet]:
    """The source's packets; a corrupt stretch is skipped (the demuxer resynchronises)."""
    replay, source.replay = source.replay, []
    yield from replay
    errors = 0
    while True:
        try:
            yield from source.container.demux(source.streams)
            return
        except av.error.InvalidDataError as exc:
            errors += 1
            if errors > MAX_DEMUX_ERRORS:
                detail = redact_text(str(exc), [source.url])
                raise SourceEndedEarly(f"the source broke off: {detail}") from None
            log.warning("skipping corrupt data in the source: %s", exc)


def _seek(source: Source, position: Fraction) -> bool:
    """Seek to the keyframe at or before ``position`` (seconds); False if impossible."""
    anchor = source.video or source.audio
    assert anchor is not None
    tb = Fraction(anchor.time_base or Fraction(1, av.time_base))
    try:
        source.container.seek(int(position / tb), stream=anchor, backward=True, any_frame=False)
    except (av.error.FFmpegError, OSError) as exc:
        log.warning(
            "cannot seek this source to %.3f s (%s): starting from the beginning",
            float(position),
            exc,
        )
        return False
    source.replay.clear()
    return True
