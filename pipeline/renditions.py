"""Renditions: a clip encoded once in a push's room format, then remuxed by every push.

A switchable push (the AI classroom) re-encodes every clip so that clips of any codec, size
and rate join seamlessly; the same clips play in every class, every day. A rendition is
that re-encoding done once: the room's H.264 (same parameter sets as a push's live encoder,
:mod:`pipeline.encoders`, so the two can follow each other on one publish), closed GOPs with
an IDR every ``gop_seconds`` from the clip's first picture, AAC stereo at the room's rate.
It is kept in a :class:`~pipeline.rendition_cache.RenditionCache` under the source's
identity (:mod:`pipeline.identity`) and the format's :attr:`RenditionFormat.key`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from jobs.redact import redact_url

from .encoders import output_fps, output_size, setup_aac, setup_h264, source_fps
from .identity import NoIdentity, source_identity
from .probe import probe_video
from .rendition_cache import Claim, RenditionCache
from .routes import AudioTranscodeRoute, Route, VideoTranscodeRoute, packet_time
from .source import Source, open_file, thread_decoder
from .spec import OutputProfile
from .timeline import Timeline
from .transforms import rotated_size

log = logging.getLogger(__name__)

#: Changes whenever renditions are encoded differently: older ones are then not used.
ENCODING_VERSION = 1
#: A recorded clip's first sound must come within one AAC frame of its first picture.
SOUND_JOIN = Fraction(1024, 48_000) + Fraction(5, 1000)


@dataclass(frozen=True)
class RenditionFormat:
    """The room format a rendition is encoded in: picture size and rate, and the profile's
    encoder settings. A push can remux only renditions of its own format."""

    width: int
    height: int
    fps: Fraction
    profile: OutputProfile

    @property
    def key(self) -> str:
        """A directory name: readable size and rate, and a hash of the encoder settings."""
        p = self.profile
        settings = (
            ENCODING_VERSION,
            p.video_bitrate,
            p.audio_bitrate,
            p.audio_sample_rate,
            p.gop_seconds,
            p.x264_preset,
            p.x264_tune,
            # Only when set: the renditions made before it keep their keys.
            *((p.h264_profile,) if p.h264_profile else ()),
        )
        digest = hashlib.sha256(repr(settings).encode()).hexdigest()[:10]
        return f"{self.width}x{self.height}@{float(self.fps):g}-{digest}"

    def as_dict(self) -> dict[str, Any]:
        """The API's ``Format`` object."""
        return {"Width": self.width, "Height": self.height, "Fps": round(float(self.fps), 3)}


def format_of(source: Source, profile: OutputProfile, rotation: int = 0) -> RenditionFormat:
    """The room format a push of ``source`` (its first clip) uses: the source's upright
    size and rate, within the profile's limits, exactly as :func:`pipeline.pushing.push` sets
    its encoders."""
    if source.video is None:
        return RenditionFormat(0, 0, Fraction(0), profile)
    return video_format(source.video, profile, rotation)


def video_format(video: av.stream.Stream, profile: OutputProfile, rotation: int) -> RenditionFormat:
    """The size and rate a push encodes ``video`` (turned upright by ``rotation``) to."""
    ctx: Any = video.codec_context
    width, height = output_size(*rotated_size(ctx.width, ctx.height, rotation), profile)
    return RenditionFormat(width, height, output_fps(video, profile), profile)


def format_of_outputs(video_out: Any | None, profile: OutputProfile) -> RenditionFormat:
    """The format of a push's open encoders."""
    if video_out is None:
        return RenditionFormat(0, 0, Fraction(0), profile)
    ctx = video_out.codec_context
    return RenditionFormat(ctx.width, ctx.height, Fraction(ctx.framerate), profile)


def encode_rendition(
    source: Source,
    fmt: RenditionFormat,
    dest: Path,
    rotation: int = 0,
    on_progress: Callable[[float], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> float:
    """Encode ``source`` into ``dest`` (MP4) in ``fmt``, as fast as the CPU allows.

    The same routes as a push (fitting, frame-rate cap, gapless audio), onto a timeline
    that starts at 0. ``on_progress`` gets the seconds encoded; ``stopped`` is asked
    between packets; ``rotation``: the source's display rotation (the rendition is upright).
    Returns the rendition's length in seconds.
    """
    timeline = Timeline()
    timeline.begin_segment(source.start_time, Fraction(0))
    with av.open(str(dest), "w", format="mp4") as out:
        routes: dict[int, Route] = {}
        if source.video is not None and fmt.width:
            thread_decoder(source.video)
            video = out.add_stream("libx264", rate=fmt.fps)
            setup_h264(video, fmt.width, fmt.height, fmt.fps, fmt.profile)
            cap = source_fps(source.video) > fmt.fps
            routes[source.video.index] = VideoTranscodeRoute(
                source.video,  # type: ignore[arg-type]
                video,
                timeline,
                rotation=rotation,
                cap_rate=cap,
            )
        if source.audio is not None:
            rate = fmt.profile.audio_sample_rate
            audio = setup_aac(out.add_stream("aac", rate=rate), fmt.profile)
            routes[source.audio.index] = AudioTranscodeRoute(
                source.audio,  # type: ignore[arg-type]
                audio,
                timeline,
            )
        from .pushing import _packets  # noqa: PLC0415 - the push's reading rules

        reported = 0.0
        for packet in _packets(source):
            route = routes.get(packet.stream.index)
            t = packet_time(packet)
            if route is None or packet.size == 0 or t is None:
                continue
            out.mux(list(route.process(packet)))
            if on_progress is not None and float(t) >= reported + 1:
                reported = float(t)
                on_progress(float(timeline.end))
            if stopped():
                raise InterruptedError("the rendition was stopped")
        for route in routes.values():
            out.mux(list(route.flush()))
    return float(timeline.end)


@dataclass
class RenditionStats:
    """What a push found in the cache, and what it still re-encoded (the status API's
    ``Renditions``)."""

    format: RenditionFormat
    hits: int = 0
    misses: int = 0
    uncached: int = 0
    written: int = 0
    reencoded: dict[str, int] = field(default_factory=dict)
    last_uncached: str | None = None
    #: Hits downloaded from the shared store first; None without one (and not shown).
    fetched: int | None = None

    def reencode(self, what: str) -> None:
        """Count one re-encoding: a clip, a bridge, a held picture, a volume change."""
        self.reencoded[what] = self.reencoded.get(what, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """The status API's ``Renditions`` object."""
        return {
            "Format": self.format.as_dict(),
            "Hits": self.hits,
            "Misses": self.misses,
            "Uncached": self.uncached,
            "Written": self.written,
            **({"Fetched": self.fetched} if self.fetched is not None else {}),
            "Reencoded": dict(self.reencoded),
            **({"UncachedReason": self.last_uncached} if self.last_uncached else {}),
        }


class Renditions:
    """One push's way to its clips' renditions."""

    def __init__(
        self,
        cache: RenditionCache,
        fmt: RenditionFormat,
        timeout: float,
        proxy: str | None = None,
    ) -> None:
        self._cache = cache
        self._timeout = timeout
        self._proxy = proxy
        self.stats = RenditionStats(fmt, fetched=0 if cache.shared is not None else None)
        #: The identity of each clip found missing, for its recorder.
        self._missing: dict[str, str] = {}

    def open(self, url: str) -> Source | None:
        """The rendition of the clip at ``url`` in this push's format; None if there is none
        (the clip is then re-encoded as it plays)."""
        try:
            identity = source_identity(url, self._timeout, self._proxy)
            found = self._cache.locate(
                identity, self.stats.format.key, wait_fetch=self._cache.fetch_wait
            )
        except (NoIdentity, OSError) as exc:
            # The cache is a saving, never a reason to fail: the clip is re-encoded.
            self.stats.uncached += 1
            self.stats.last_uncached = str(exc)
            log.info("not cached: %s", exc)
            return None
        if found is None:
            self.stats.misses += 1
            self._missing[url] = identity
            return None
        path = found.path
        try:
            source = open_file(str(path), rendition=True)
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("a rendition in the cache cannot be read (%s): re-encoding", exc)
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        if found.fetched and self.stats.fetched is not None:
            self.stats.fetched += 1
        log.info("playing a rendition from the cache (%s)", path.name)
        return source

    def recorder(self, url: str, video_out: Any, audio_out: Any) -> RenditionRecorder | None:
        """A recorder for the clip at ``url`` found missing; None when another process
        writes its rendition already (or its identity is unknown)."""
        identity = self._missing.pop(url, None)
        if identity is None:
            return None
        release = contextlib.ExitStack()
        try:
            # Published in the background: the push plays on while it uploads.
            claim = release.enter_context(
                # No download here: the lookup just missed, and a push must not wait for one.
                self._cache.claim(
                    identity, self.stats.format.key, wait=False, background=True, fetch=False
                )
            )
            if claim is not None and claim.existing is None:
                return RenditionRecorder(claim, release, video_out, audio_out)
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("cannot record a rendition (%s)", exc)
        release.close()
        return None

    def kept(self) -> None:
        """Count a rendition recorded from a first play."""
        self.stats.written += 1


@dataclass(frozen=True)
class Prepared:
    """A rendition made ready: where it is, in what format, and whether it was there."""

    path: Path
    format: RenditionFormat
    cached: bool
    seconds: float | None = None


def prepare(
    source: Source,
    cache: RenditionCache,
    profile: OutputProfile,
    identity: str,
    fmt: RenditionFormat | None = None,
    on_progress: Callable[[float], None] | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> Prepared:
    """Make the rendition of the opened ``source`` in ``fmt`` (default: the format a push
    that starts with this clip uses), unless the cache has it. Two processes preparing the
    same clip make one rendition: the second waits for the first and finds it.

    ``identity``: :func:`~pipeline.identity.source_identity` of the source, asked *before*
    it was opened (a file replaced in between then never gets the old file's identity).
    """
    rotation = probe_video(source, 0.1).rotation if source.video is not None else 0
    fmt = fmt or format_of(source, profile, rotation)
    found = cache.here(identity, fmt.key)  # the claim below asks the shared store, once
    if found is not None:
        return Prepared(found, fmt, cached=True)
    with cache.claim(identity, fmt.key) as claim:
        assert claim is not None, "a waiting claim is always granted"
        if claim.existing is not None:
            return Prepared(claim.existing, fmt, cached=True)
        seconds = encode_rendition(source, fmt, claim.part, rotation, on_progress, stopped)
        path = claim.commit(Source=redact_url(source.url), Format=fmt.as_dict(), Seconds=seconds)
    log.info("rendition ready: %s in %s (%.1f s)", redact_url(source.url), fmt.key, seconds)
    return Prepared(path, fmt, cached=False, seconds=seconds)


class RenditionRecorder:
    """Writes what a push encodes for one clip into that clip's rendition, as it plays.

    The first play of a clip pays for its encoding anyway: kept, the next push of the clip
    remuxes it. Only a clip played whole from its first picture, at full volume, without a
    pause, is kept (:meth:`commit`); anything else is :meth:`abort`-ed and leaves nothing.
    The encoder must start the clip with an IDR (the player asks it to).
    """

    def __init__(
        self, claim: Claim, release: contextlib.ExitStack, video_out: Any, audio_out: Any
    ) -> None:
        self._claim = claim
        self._release = release
        self._container = av.open(str(claim.part), "w", format="mp4")
        self._streams: dict[bool, Any] = {}
        if video_out is not None:
            self._streams[True] = self._container.add_stream_from_template(video_out)
        if audio_out is not None:
            self._streams[False] = self._container.add_stream_from_template(audio_out)
        self._origin: Fraction | None = None
        #: The origin in each output stream's ticks (video: True, sound: False).
        self._starts: dict[bool, int] = {}
        self._heard = False
        self.broken: str | None = None

    def add(self, packets: list[av.Packet], is_video: bool) -> None:
        """Copy output packets (before they are sent: muxing consumes them)."""
        stream = self._streams.get(is_video)
        if stream is None or self.broken is not None:
            return
        for packet in packets:
            if packet.pts is None:
                continue
            if self._origin is None:
                if not is_video:
                    continue  # the sound before the clip's first picture is the last clip's
                if not packet.is_keyframe:
                    self.broken = "the clip's first picture is not an IDR"
                    return
                self._origin = packet.pts * Fraction(packet.time_base)
            # Each output stream keeps one time base: its origin in ticks is worked out once.
            start = self._starts.get(is_video)
            if start is None:
                tb = Fraction(packet.time_base)
                start = self._starts[is_video] = round(self._origin / tb)
            if packet.pts < start:
                continue
            if not (is_video or self._heard):
                self._heard = True
                if (packet.pts - start) * Fraction(packet.time_base) > SOUND_JOIN:
                    # Its opening sound went under the last clip's (joined on the picture):
                    # as a rendition, the clip would start silent.
                    self.broken = "the clip's first sound was not sent"
                    return
            copy = av.Packet(bytes(packet))
            copy.pts = copy.dts = packet.pts - start
            copy.duration = packet.duration
            copy.time_base = packet.time_base
            copy.is_keyframe = packet.is_keyframe
            copy.stream = stream
            try:
                self._container.mux(copy)
            except (av.error.FFmpegError, OSError) as exc:
                self.broken = f"writing the rendition failed: {exc}"
                return

    def commit(self, url: str, fmt: RenditionFormat) -> Path | None:
        """Keep the rendition (None if it could not be completed)."""
        if self.broken is not None or self._origin is None:
            self.abort(self.broken or "no picture was encoded")
            return None
        try:
            self._container.close()
            path = self._claim.commit(Source=redact_url(url), Format=fmt.as_dict())
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("could not keep a rendition: %s", exc)
            return None
        finally:
            self._release.close()
        log.info("rendition kept from the first play of %s (%s)", redact_url(url), fmt.key)
        return path

    def abort(self, why: str) -> None:
        """Drop what was written."""
        log.debug("not keeping this play as a rendition: %s", why)
        try:
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
        finally:
            self._release.close()
