"""One push, start to end: source → decisions → routes → timeline → pacer → sink.

:func:`push` is what a worker calls; it knows nothing of Flask, Celery or Redis. It reads
stop requests from a :class:`~pipeline.control.Control` and reports through a callback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Any

import av
import av.error

from .control import Control
from .errors import SourceEndedEarly, SourceUnreachable
from .pacer import Pacer
from .plan import Action, Decision, decide_audio, decide_video
from .progress import Progress, ProgressCallback, ProgressMeter, StreamReport
from .redact import redact_url
from .routes import AudioTranscodeRoute, RemuxRoute, Route, VideoTranscodeRoute, packet_time
from .sink import RtmpSink
from .source import Source, open_source
from .spec import OutputProfile, PushSpec
from .timeline import Timeline

log = logging.getLogger(__name__)

#: A file that stops this much before its announced duration was truncated.
EARLY_END_TOLERANCE = 2.0


class Outcome(StrEnum):
    """How a push ended (errors are raised instead)."""

    COMPLETED = "completed"
    STOPPED = "stopped"


@dataclass
class PushResult:
    """The end of a push: how it ended, why, and the last progress."""

    outcome: Outcome
    reason: str
    progress: Progress


def push(
    spec: PushSpec,
    control: Control,
    on_progress: ProgressCallback | None = None,
    on_connected: ProgressCallback | None = None,
) -> PushResult:
    """Push ``spec.source`` into ``spec.target`` in real time until it ends or is stopped.

    The source is opened and checked before the room is connected to, so a bad source
    fails fast without the room ever seeing the user. ``on_connected`` is called once the
    room connection is open.
    """
    source = open_source(spec.source, spec.timeouts, live=spec.live, secrets=spec.secrets)
    try:
        decisions = _decide(source, spec.profile)
        progress = Progress(
            duration=source.duration,
            streams=[
                StreamReport(s.type, s.codec_context.name, d.action.value, d.reason)
                for s, d in decisions.items()
            ],
        )
        for report in progress.streams:
            log.info("%s %s: %s (%s)", report.type, report.codec, report.action, report.reason)
        if control.stop_requested:
            return PushResult(Outcome.STOPPED, control.stop_reason or "stopped", progress)
        sink = RtmpSink(spec.target, spec.timeouts, spec.secrets).open()
        try:
            return _run(spec, control, source, sink, decisions, progress, on_progress, on_connected)
        finally:
            sink.close()
    finally:
        source.close()


def _decide(source: Source, profile: OutputProfile) -> dict[av.stream.Stream, Decision]:
    decisions: dict[av.stream.Stream, Decision] = {}
    if source.video is not None:
        decisions[source.video] = decide_video(source.video, profile)
    if source.audio is not None:
        decisions[source.audio] = decide_audio(source.audio, profile)
    return decisions


def output_size(width: int, height: int, profile: OutputProfile) -> tuple[int, int]:
    """The largest even size within the profile's maximum that keeps the aspect ratio."""
    scale = min(1.0, profile.max_width / width, profile.max_height / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _output_fps(stream: av.stream.Stream, profile: OutputProfile) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or Fraction(30)
    rate = Fraction(rate)
    return min(rate, Fraction(profile.max_fps).limit_denominator(1001))


def _build_routes(
    spec: PushSpec,
    source: Source,
    sink: RtmpSink,
    decisions: dict[av.stream.Stream, Decision],
    timeline: Timeline,
    skip_before: Fraction | None,
) -> dict[int, Route]:
    routes: dict[int, Route] = {}
    for stream, decision in decisions.items():
        is_video = stream.type == "video"
        if decision.action is Action.REMUX:
            routes[stream.index] = RemuxRoute(sink.add_copy_of(stream), timeline, is_video)
        elif is_video:
            ctx: Any = stream.codec_context
            ctx.thread_type = "AUTO"
            width, height = output_size(ctx.width, ctx.height, spec.profile)
            out = sink.add_h264(width, height, _output_fps(stream, spec.profile), spec.profile)
            routes[stream.index] = VideoTranscodeRoute(stream, out, timeline, skip_before)  # type: ignore[arg-type]
        else:
            out = sink.add_aac(spec.profile)
            routes[stream.index] = AudioTranscodeRoute(stream, out, timeline, skip_before)  # type: ignore[arg-type]
    return routes


def _run(
    spec: PushSpec,
    control: Control,
    source: Source,
    sink: RtmpSink,
    decisions: dict[av.stream.Stream, Decision],
    progress: Progress,
    on_progress: ProgressCallback | None,
    on_connected: ProgressCallback | None,
) -> PushResult:
    timeline = Timeline()
    start = Fraction(spec.start_position).limit_denominator(1000)
    exact = start > 0 and any(
        d.action is Action.TRANSCODE for s, d in decisions.items() if s.type == "video"
    )
    routes = _build_routes(spec, source, sink, decisions, timeline, start if exact else None)
    sink.start()
    log.info("publishing to the room at %s", redact_url(spec.target))
    if on_connected is not None:
        on_connected(progress.copy())
    video_remux = source.video is not None and decisions[source.video].action is Action.REMUX
    if start > 0:
        _seek(source, start)
    # A remuxed video must start on a keyframe; after a seek, the first video packet (a
    # keyframe at or before the target) sets the output origin instead of the target.
    need_keyframe = video_remux
    if not (video_remux and start > 0):
        timeline.begin_segment(start if start > 0 else source.start_time, Fraction(0))
    pacer = Pacer(control, lead=spec.pace_lead)
    meter = ProgressMeter(progress, on_progress)
    stop_reason: str | None = None

    def send_all(packets_in: list[av.Packet], is_video: bool) -> bool:
        nonlocal stop_reason
        for out in packets_in:
            if out.dts is None and out.pts is None:
                continue
            ticks = out.dts if out.dts is not None else out.pts
            assert ticks is not None
            out_time = ticks * Fraction(out.time_base)
            if spec.max_duration is not None and out_time >= spec.max_duration:
                stop_reason = f"time limit reached ({spec.max_duration:g} s)"
                return False
            if not spec.live and not pacer.wait(float(out_time)):
                return False
            sink.send(out)
            progress.output_time = float(out_time)
            progress.position = float(timeline.to_source(out_time))
            progress.lag = pacer.lag(float(out_time))
            meter.count(out.size, is_video)
        return True

    try:
        for packet in source.container.demux(source.streams):
            if control.stop_requested:
                break
            if packet.size == 0 or (packet.dts is None and packet.pts is None):
                continue  # the demuxer's end-of-stream marker, or a packet with no time
            route = routes[packet.stream.index]
            if need_keyframe:
                if not (route.is_video and packet.is_keyframe):
                    continue
                need_keyframe = False
                if start > 0:
                    t = packet_time(packet)
                    timeline.begin_segment(t if t is not None else start, Fraction(0))
            elif video_remux and start > 0 and not route.is_video:
                t = packet_time(packet)
                if t is not None and t < timeline.to_source(Fraction(0)):
                    continue  # audio from before the keyframe the video resumes on
            if not send_all(list(route.process(packet)), route.is_video):
                break
        else:
            for route in routes.values():
                if not send_all(list(route.flush()), route.is_video):
                    break
    except av.error.InvalidDataError as exc:
        raise SourceEndedEarly(f"the source broke off: {exc}") from None
    except (av.error.FFmpegError, OSError) as exc:
        if isinstance(exc, av.error.FFmpegError) and not isinstance(exc, OSError):
            raise
        raise SourceUnreachable(f"reading the source failed: {exc}") from None

    meter.report()
    if control.stop_requested or stop_reason is not None:
        return PushResult(
            Outcome.STOPPED, stop_reason or control.stop_reason or "stopped", progress.copy()
        )
    duration = progress.duration
    if duration is not None and progress.position < duration - EARLY_END_TOLERANCE:
        raise SourceEndedEarly(
            f"the source ended at {progress.position:.1f} s of an announced {duration:.1f} s"
        )
    return PushResult(Outcome.COMPLETED, "the source ended", progress.copy())


def _seek(source: Source, position: Fraction) -> None:
    """Seek to the keyframe at or before ``position`` (seconds)."""
    anchor = source.video or source.audio
    assert anchor is not None
    tb = Fraction(anchor.time_base or Fraction(1, av.time_base))
    source.container.seek(int(position / tb), stream=anchor, backward=True, any_frame=False)
