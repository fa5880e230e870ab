"""Opening the source with PyAV, and saying clearly why it cannot be opened."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.container
import av.error
import av.stream

from jobs.errors import (
    SourceError,
    SourceHasNoMedia,
    SourceNotFound,
    SourceNotMedia,
    SourceUnreachable,
)
from jobs.redact import redact_text, redact_url

from .spec import Timeouts

log = logging.getLogger(__name__)

#: FFmpeg protocols a source may use (and nested ones they need); never ``file``.
SOURCE_PROTOCOLS = "http,https,tls,tcp,crypto,hls,rtmp,rtmps,rtmpt,rtmpts,httpproxy"


@dataclass
class Source:
    """An opened source: the container and the streams roomcast will push."""

    url: str
    container: av.container.InputContainer
    video: av.stream.Stream | None
    audio: av.stream.Stream | None
    #: Packets already read (by the probe) that must be pushed before reading on.
    replay: list[av.Packet] = field(default_factory=list)
    #: A rendition (:mod:`pipeline.renditions`): already in the room's format, remuxed.
    rendition: bool = False

    @property
    def duration(self) -> float | None:
        """Length in seconds when the container knows it (a file), else None (live)."""
        d = self.container.duration
        return None if d is None or d <= 0 else d / av.time_base

    @property
    def start_time(self) -> Fraction:
        """Source time (seconds) of the container's first timestamp."""
        s = self.container.start_time
        return Fraction(0) if s is None else Fraction(s, av.time_base)

    @property
    def streams(self) -> list[av.stream.Stream]:
        """The pushed streams, video first."""
        return [s for s in (self.video, self.audio) if s is not None]

    def close(self) -> None:
        """Close the container (it holds reference cycles: never leave it to the GC)."""
        self.container.close()


#: Up to this many pixels (720p) a picture decodes in a few milliseconds on one core, and
#: frame threads would cost more than they save: FFmpeg starts a thread per core plus one,
#: each with its own copy of the decoder, and keeps them for as long as the source is open.
#: A remuxed push decodes only the probe's first frame, so it carried three idle threads
#: and 1.7–4 MiB for nothing (docs/benchmarks.md, "Decoder threads").
FRAME_THREADS_ABOVE = 1280 * 720


def thread_decoder(stream: av.stream.Stream) -> None:
    """Choose how ``stream``'s decoder is threaded, by its picture size.

    Call it before the first decode: FFmpeg fixes the threading when the decoder opens, so
    a decoder already open keeps what it has.
    """
    ctx: Any = stream.codec_context
    if not ctx.is_open:
        ctx.thread_type = "AUTO" if ctx.width * ctx.height > FRAME_THREADS_ABOVE else "NONE"


#: Most seconds of a live stream read to find its streams; longer only when video is missing.
LIVE_ANALYZE = 1.0
LIVE_ANALYZE_LONG = 3.0


def open_source(
    url: str,
    timeouts: Timeouts,
    live: bool = False,
    secrets: tuple[str, ...] = (),
    analyze: float = LIVE_ANALYZE,
    proxy: str | None = None,
) -> Source:
    """Open ``url`` and pick its first video and first audio stream.

    A live source is analysed until its audio and video are both known, or for at most
    ``analyze`` seconds (a source with one kind only), since every second spent there is
    delay before the room sees the stream; the packets it reads are kept (they start at a
    keyframe). ``proxy``: every http(s) connection goes through it (https as a CONNECT
    tunnel; HLS segments and redirects too). Raises a :class:`SourceError` subclass whose
    message says what is wrong.
    """
    options = {"protocol_whitelist": SOURCE_PROTOCOLS}
    if url.startswith(("http://", "https://")):
        # Files on object storage: survive a dropped connection mid-file.
        options.update(
            {"reconnect": "1", "reconnect_on_network_error": "1", "reconnect_delay_max": "4"}
        )
        if proxy is not None:
            options["http_proxy"] = proxy
    if live:
        options.update(
            {
                "analyzeduration": str(int(analyze * 1e6)),
                "probesize": "2M",
                # Stop analysing once every stream's parameters are known (FLV with both
                # audio and video lets it), not after counting 40 frames for a frame rate
                # that the stream's metadata gives anyway.
                "fpsprobesize": "0",
            }
        )
    read_timeout: float | None = timeouts.live_read if live else timeouts.source_read
    if url.startswith(("http://", "https://")) and read_timeout is not None:
        # FFmpeg's own I/O timeout, not PyAV's read timeout: PyAV's checks the clock in a
        # callback that takes the GIL several times per packet, which stalls a worker that
        # carries many pushes as threads. HLS passes it on to every segment it opens.
        options["rw_timeout"] = str(int(read_timeout * 1e6))
        read_timeout = None
    try:
        container = av.open(
            url, mode="r", options=options, timeout=(timeouts.source_open, read_timeout)
        )
    except Exception as exc:  # noqa: BLE001 - every failure becomes a typed, readable error
        raise source_error(exc, url, secrets) from None
    try:
        video = _first(container, "video")
        audio = _first(container, "audio")
    except Exception:
        container.close()
        raise
    if video is None and audio is None:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        container.close()
        raise SourceHasNoMedia(
            f"{redact_url(url)} holds no decodable audio or video stream (found: {kinds})"
        )
    return Source(url=url, container=container, video=video, audio=audio)


def open_file(path: str, rendition: bool = False) -> Source:
    """Open a local file roomcast wrote itself (a rendition); never a caller's URL."""
    container = av.open(path, mode="r")
    try:
        video, audio = _first(container, "video"), _first(container, "audio")
    except Exception:
        container.close()
        raise
    return Source(url=path, container=container, video=video, audio=audio, rendition=rendition)


def _first(container: av.container.InputContainer, kind: str) -> av.stream.Stream | None:
    for stream in container.streams:
        if stream.type != kind:
            continue
        if _is_attached_picture(stream):
            continue  # cover art of an audio file, not a video track
        ctx: Any = stream.codec_context
        if ctx is None:
            continue
        if kind == "video" and not (ctx.width and ctx.height):
            continue
        return stream
    return None


def _is_attached_picture(stream: av.stream.Stream) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except AttributeError:
        return False


def source_error(exc: BaseException, url: str, secrets: tuple[str, ...] = ()) -> SourceError:
    """Translate what FFmpeg/PyAV raised while opening ``url`` into a typed error."""
    where = redact_url(url)
    detail = redact_text(str(getattr(exc, "strerror", None) or exc), [*secrets, url])
    if isinstance(exc, av.error.HTTPNotFoundError | FileNotFoundError):
        return SourceNotFound(f"{where} was not found (HTTP 404 or no such file)")
    if isinstance(exc, av.error.HTTPForbiddenError | av.error.HTTPUnauthorizedError):
        return SourceNotFound(f"{where} refused access ({detail}); is the URL signed and valid?")
    if isinstance(exc, av.error.HTTPError):
        return SourceUnreachable(f"{where} answered with an HTTP error: {detail}")
    if isinstance(exc, av.error.ProtocolNotFoundError | av.error.OptionNotFoundError):
        return SourceError(f"{where} uses a protocol roomcast does not read")
    if isinstance(exc, av.error.InvalidDataError | av.error.EOFError | EOFError):
        return SourceNotMedia(f"{where} is not a media file FFmpeg can read (or is empty)")
    if isinstance(exc, ConnectionRefusedError):
        return SourceUnreachable(f"{where}: connection refused")
    if isinstance(exc, TimeoutError | av.error.ExitError):
        return SourceUnreachable(f"{where} did not answer in time")
    if isinstance(exc, av.error.ArgumentError):
        # The protocol whitelist refuses local paths, file: and any other scheme.
        return SourceError(f"{where} is not a URL roomcast reads (http, https, rtmp, rtmps)")
    if isinstance(exc, OSError):
        return SourceUnreachable(f"{where} could not be opened: {detail}")
    return SourceError(f"{where} could not be opened: {detail}")
