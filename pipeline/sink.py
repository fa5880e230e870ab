"""The room side: FLV over RTMP to the room's ingest URL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Protocol

import av
import av.container
import av.stream

from jobs.errors import RoomDisconnected, RoomUnreachable
from jobs.redact import redact_text, redact_url

from .encoders import setup_aac, setup_h264
from .rtmp import CHUNK_SIZE, DEFAULT_PORTS, RtmpHandshakeFailed, RtmpPublisher
from .rtmpio import RtmpConnection
from .spec import OutputProfile, Timeouts
from .whip import WhipConnection, is_whip

log = logging.getLogger(__name__)


class PublishCut(Exception):
    """The publish was ended from another thread by a stop (:meth:`RtmpSink.cut`).

    Not an error: the push ends as stopped. Raised instead of reconnecting.
    """


class RoomConnection(Protocol):
    """An open publish to a room that takes the FLV muxer's bytes (:mod:`pipeline.rtmp`,
    :mod:`pipeline.rtmpio`)."""

    def write(self, data: bytes) -> int:
        """Send FLV bytes now; raises OSError once the connection has failed."""
        ...

    def cut(self) -> None:
        """End the connection now, from any thread."""
        ...

    def close(self) -> None:
        """End the publish and release the connection."""
        ...


#: Which RTMP client publishes: roomcast's own (``rtmp://``, ``rtmps://``), or FFmpeg's.
RTMP_CLIENTS = ("roomcast", "ffmpeg")

#: Opens a publish to a room: ``(url, timeout) → connection`` (:func:`connect_room`, or
#: :class:`pipeline.fileroom.RoomFiles` ``.connect``).
RoomConnector = Callable[[str, float], RoomConnection]


def connect_room(
    url: str, timeout: float, client: str = "roomcast", chunk_size: int = CHUNK_SIZE
) -> RoomConnection:
    """A published connection to ``url``: roomcast's own RTMP client where it speaks the
    URL's scheme (sending chunks of ``chunk_size``), else (or with ``client="ffmpeg"``)
    FFmpeg's."""
    if is_whip(url):
        return WhipConnection(url, timeout)
    if client == "roomcast" and url.split(":", 1)[0].lower() in DEFAULT_PORTS:
        deadline = time.monotonic() + timeout
        try:
            return RtmpPublisher(url, timeout, chunk_size=chunk_size)
        except RtmpHandshakeFailed as exc:
            # An interop problem FFmpeg's client may not have (its handshake carries the
            # Flash Player digest some servers insist on): this publish goes with it. Not
            # after the handshake: a room that hangs up on the publish refused its UserSig.
            log.warning("roomcast's RTMP client could not publish (%s): using FFmpeg's", exc)
            # Within the same time: a reconnect's deadline holds whichever client connects.
            connection = RtmpConnection(url, max(1.0, deadline - time.monotonic()))
            connection.fallback = f"roomcast's RTMP client failed: {exc}"
            return connection
    return RtmpConnection(url, timeout)


class _Tap:
    """What the FLV muxer writes into: the room connection, or a list while encoding ahead."""

    def __init__(self, connection: RoomConnection) -> None:
        self.connection = connection
        self.capture: list[bytes] | None = None

    def write(self, data: bytes) -> int:
        if self.capture is not None:
            self.capture.append(data)
            return len(data)
        return self.connection.write(data)


class RtmpSink:
    """An FLV publisher connected to one room URL; ``close()`` ends the publish cleanly.

    Packets are either sent at once (``send``) or encoded ahead of time (``encode``) and
    their FLV bytes sent when due (``send_bytes``), by the process's shared sender.
    """

    def __init__(
        self,
        url: str,
        timeouts: Timeouts,
        secrets: tuple[str, ...] = (),
        client: str = "roomcast",
        connect: RoomConnector | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        """``client``: which RTMP client publishes (:data:`RTMP_CLIENTS`), in chunks of
        ``chunk_size``; ``connect`` opens each publish, by default over RTMP with that
        client."""
        self.url = url
        self._client = client
        self._chunk_size = chunk_size
        self._connect_room = connect
        self._timeouts = timeouts
        self._secrets = (*secrets, url)
        self._container: av.container.OutputContainer | None = None
        self._tap: _Tap | None = None
        # After a reconnect, packets addressed to the first connection's streams (index)
        # go to the streams of the current one; encoders stay as they are.
        self._current: dict[int, Any] = {}
        self.reconnects = 0
        #: Why FFmpeg's client publishes although roomcast's was asked for (None: it was not).
        self.fallback: str | None = None
        self._cut = threading.Event()

    def open(self) -> RtmpSink:
        """Connect to the room and prepare the FLV output. Raises :class:`RoomUnreachable`."""
        try:
            self._tap, self._container = self._connect()
        except Exception as exc:  # noqa: BLE001 - reported as a typed error
            raise RoomUnreachable(
                # Connecting and publishing are one step: a refused UserSig shows up here.
                f"could not publish to the room at {redact_url(self.url)}: {self._detail(exc)}"
            ) from None
        return self

    def _connect(self) -> tuple[_Tap, av.container.OutputContainer]:
        """A published RTMP connection and an FLV muxer writing into it."""
        if self._connect_room is not None:
            connection = self._connect_room(self.url, self._timeouts.room_open)
        else:
            connection = connect_room(
                self.url, self._timeouts.room_open, self._client, self._chunk_size
            )
        self.fallback = getattr(connection, "fallback", None)
        tap = _Tap(connection)
        try:
            container = self._muxer(tap)
        except BaseException:
            connection.close()
            raise
        return tap, container

    @staticmethod
    def _muxer(tap: _Tap) -> av.container.OutputContainer:
        """An FLV muxer writing into ``tap``."""
        return av.open(
            tap,
            mode="w",
            format="flv",
            # Not seekable: no header rewrite at the end; each packet goes out at once.
            options={"flvflags": "no_duration_filesize", "flush_packets": "1"},
        )

    @property
    def container(self) -> av.container.OutputContainer:
        """The open output container."""
        if self._container is None:
            raise RuntimeError("RtmpSink.open() was not called")
        return self._container

    def add_copy_of(self, in_stream: av.stream.Stream) -> av.stream.Stream:
        """An output stream that takes a source stream's packets unchanged."""
        return self.container.add_stream_from_template(in_stream)

    def add_h264(self, width: int, height: int, fps: Fraction, profile: OutputProfile) -> Any:
        """An H.264 encoder for the room (:func:`pipeline.encoders.setup_h264`)."""
        stream = self.container.add_stream("libx264", rate=fps)
        return setup_h264(stream, width, height, fps, profile)

    def add_aac(self, profile: OutputProfile) -> Any:
        """An AAC-LC encoder, stereo at the profile's sample rate."""
        return setup_aac(self.container.add_stream("aac", rate=profile.audio_sample_rate), profile)

    def start(self) -> None:
        """Write the FLV header, once every output stream is added."""
        try:
            self.container.start_encoding()
        except Exception as exc:  # noqa: BLE001 - reported as a typed error
            self.close()
            self._raise_if_cut()
            raise RoomUnreachable(
                f"could not publish to the room at {redact_url(self.url)}: {self._detail(exc)}"
            ) from None

    def write(self, packet: av.Packet) -> None:
        """Write one packet now; raises FFmpeg's error if the connection has failed."""
        if self._current:
            packet.stream = self._current[packet.stream.index]
        self.container.mux(packet)

    def send(self, packet: av.Packet) -> None:
        """Write one packet, reconnecting once the connection breaks (the room restarted).

        Raises :class:`RoomDisconnected` when the room stays away for
        ``Timeouts.room_reconnect`` seconds.
        """
        try:
            self.write(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self.recover(exc, packet)

    def encode(self, packet: av.Packet) -> bytes:
        """Mux ``packet`` now and return the FLV bytes, to be sent with ``send_bytes``.

        The muxer interleaves the streams, so the bytes may be those of the packet before.
        """
        tap = self._tap
        if tap is None:
            raise OSError("the room connection is closed")
        tap.capture = []
        try:
            self.write(packet)
        finally:
            chunks, tap.capture = tap.capture, None
        return b"".join(chunks)

    def restart_muxer(self) -> None:
        """Go on with a fresh FLV muxer on the same publish: packets queued and then taken
        back (a switch cuts the queue) leave the old one ahead of what the room has, and a
        muxer never takes a timestamp behind its last. The room sees no new header."""
        tap = self._tap
        if tap is None:
            raise OSError("the room connection is closed")
        streams = list(self.container.streams)
        old, self._container = self._container, None
        tap.capture = []  # the old muxer's held packets and the new one's header stay here
        try:
            if old is not None:
                try:
                    old.close()
                except (av.error.FFmpegError, OSError):
                    pass
            container = self._muxer(tap)
            fresh = [container.add_stream_from_template(s) for s in streams]
            container.start_encoding()
        finally:
            tap.capture = None
        self._container = container
        # Streams are added in the same order: routes keep addressing the first muxer's.
        self._current = {f.index: f for f in fresh}

    def send_bytes(self, data: bytes) -> None:
        """Send encoded FLV bytes now; raises OSError if the connection has failed."""
        tap = self._tap
        if tap is None:
            raise OSError("the room connection is closed")
        if data:
            tap.connection.write(data)

    def resend(self, cause: BaseException, data: bytes) -> None:
        """Reconnect after ``send_bytes(data)`` failed, then send ``data`` again.

        FLV tags carry absolute timestamps, so bytes encoded for the broken connection
        continue the new one after its header.
        """
        self._retry(cause, lambda: self.send_bytes(data))

    def recover(self, cause: BaseException, packet: av.Packet) -> None:
        """Reconnect after a failed write of ``packet``, then write it again."""
        self._retry(cause, lambda: self.write(packet))

    def cut(self) -> None:
        """End the publish now, from any thread, and never reconnect: the push is stopping.

        The stop's backstop for a push whose thread is held up in a call the stop cannot
        interrupt (see :meth:`Control.cut_off`). Writes fail from now on, and what would
        have reconnected raises :class:`PublishCut` instead.
        """
        self._cut.set()
        tap = self._tap
        if tap is not None:
            tap.connection.cut()

    def _retry(self, cause: BaseException, again: Callable[[], None]) -> None:
        """Reconnect after ``cause``, then do ``again`` once; RoomDisconnected if it fails."""
        self._reconnect(cause)
        try:
            again()
        except (av.error.FFmpegError, OSError) as exc:
            self._raise_if_cut()
            raise RoomDisconnected(
                f"the room connection to {redact_url(self.url)} broke again right after "
                f"reconnecting: {self._detail(exc)}"
            ) from None

    def _reconnect(self, cause: BaseException) -> None:
        """A new publish on the same URL carrying the same streams (copied parameters)."""
        self._raise_if_cut()
        streams = list(self.container.streams)
        log.warning("the room connection broke (%s); reconnecting", self._detail(cause))
        since = getattr(self._tap.connection, "since_keyframe", None) if self._tap else None
        replay: bytes = since() if since is not None else b""
        self._close_connection()
        deadline = time.monotonic() + self._timeouts.room_reconnect
        # A WHIP endpoint that dropped a session takes a new one at once (its HTTP side is
        # up); an RTMP server that closed the publish may be restarting: give it a moment.
        wait, delay = (0.0, 0.25) if is_whip(self.url) else (0.25, 0.5)
        last: BaseException = cause
        while time.monotonic() < deadline:
            if self._cut.wait(wait):
                break
            wait, delay = delay, min(delay * 2, 2.0)
            try:
                tap, container = self._connect()
            except (av.error.FFmpegError, OSError) as exc:
                last = exc
                continue
            if self._cut.is_set():  # while connecting: leave before the stream starts
                tap.connection.close()
                break
            try:
                fresh = [container.add_stream_from_template(s) for s in streams]
                container.start_encoding()
                if replay:
                    # A new WHIP session: its viewer's decoder starts at a keyframe, so the
                    # pictures since the last one go first, at once, rather than a wait for
                    # the next (docs/benchmarks.md, A publish the room drops).
                    tap.connection.write(replay)
            except (av.error.FFmpegError, OSError) as exc:
                last = exc
                tap.connection.close()
                continue
            self._tap, self._container = tap, container
            self._raise_if_cut()  # after the tap is set: a cut either sees it or is seen here
            # Streams are added in the same order, so an index names the same stream in
            # every connection; routes keep addressing the first connection's streams.
            self._current = {f.index: f for f in fresh}
            self.reconnects += 1
            log.info("reconnected to the room (reconnect %d)", self.reconnects)
            return
        self._raise_if_cut()
        raise RoomDisconnected(
            f"the room connection to {redact_url(self.url)} broke and did not come back within "
            f"{self._timeouts.room_reconnect:g} s: {self._detail(last)}"
        ) from None

    def _raise_if_cut(self) -> None:
        if self._cut.is_set():
            raise PublishCut("the publish was ended by a stop")

    def close(self, send_held: bool = True) -> None:
        """Finish the FLV stream and close the connection (the room sees the user leave).

        FFmpeg's muxer holds packets back to interleave the streams by time: up to about a
        second of video in a file that stores its streams in runs that long. Closing sends
        them. ``send_held=False``, for a push that stops, drops them instead: they would
        reach the room at once after the stop, beyond the position the push reports, and a
        resume from that position would show them again.
        """
        container, self._container = self._container, None
        if not send_held and self._tap is not None:
            self._tap.capture = []  # what closing writes stays here
        try:
            if container is not None:
                container.close()
        except (av.error.FFmpegError, OSError) as exc:
            if not self._cut.is_set():  # a cut connection cannot take the stream's end
                log.warning("closing the room connection failed: %s", self._detail(exc))
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        """Drop the muxer and the connection without finishing the stream (it is gone)."""
        container, self._container = self._container, None
        tap, self._tap = self._tap, None
        if container is not None:
            try:
                container.close()
            except (av.error.FFmpegError, OSError):
                pass  # the connection is gone: nothing to finish
        if tap is not None:
            tap.connection.close()

    def _detail(self, exc: BaseException) -> str:
        return redact_text(str(getattr(exc, "strerror", None) or exc), list(self._secrets))
