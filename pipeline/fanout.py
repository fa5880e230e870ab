"""One source, many rooms: a push's FLV bytes published to several rooms at once.

Watch-together rooms are many small rooms watching one thing. The source is read, re-encoded
if need be, and muxed once; each room has its own RTMP publish, fed the same FLV bytes.
:class:`Fanout` is the push's room connection (:class:`pipeline.sink.RoomConnection`): the
sink, the relay and the shared sender do not know that they fan out. WHIP rooms take their
sound as Opus, encoded once for all of them (:mod:`pipeline.opus`).

What one room does must not touch the others:

- writes never wait (:meth:`pipeline.rtmp.RtmpPublisher.offer`): a room that stops reading
  keeps what it could not take, and once more than :data:`MAX_WAITING` bytes wait it drops
  the rest and joins again at the next keyframe (``behind``);
- a publish that breaks reconnects on a thread of its own, and joins at a keyframe; one that
  stays away past ``Timeouts.room_reconnect`` is ``failed`` and the push goes on without it;
- a room added while the push runs gets the stream's header, then joins at the next keyframe.

The push ends with an error only when every room has failed.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import av

from jobs.errors import RoomUnreachable
from jobs.redact import redact_text

from .flv import FLV_HEADER, keyframe_at, media_start, scan
from .opus import OpusTags
from .progress import Progress
from .rtmp import CHUNK_SIZE, FramerState, RtmpFramer
from .sink import RoomConnection, RoomConnector, connect_room
from .spec import Target, Timeouts

log = logging.getLogger(__name__)

#: Bytes a room may leave unsent before it is dropped to the next keyframe: about 3 s of
#: 720p at 2.5 Mbit/s, within what a player's buffer rides out.
MAX_WAITING = 1 << 20
#: What the kernel may hold for a room: more would hide a stalled room for seconds, and
#: send it stale pictures once it reads again (Linux doubles it for its bookkeeping).
SEND_BUFFER = 128 << 10
#: A room behind for this long without taking what waits is reconnected.
BEHIND_LIMIT = 10.0
#: Pictures sent to each room in one send. What a room costs is mostly its sends (on
#: loopback the kernel's work for the receiving end as well): two a send save about a sixth
#: of a 50-room fan-out's CPU, but every other picture arrives a frame late (pacing p99 at
#: the viewers 32 → 49 ms, docs/benchmarks.md, fan-out), so one is the default.
PICTURES_PER_SEND = 1
#: Sound is held for the next picture and sent with it; a stream without pictures is sent
#: every this many tags.
SOUND_TAGS_HELD = 8
#: How often the targets' figures are copied into the push's progress (seconds).
REPORT_EVERY = 1.0

#: Receives each fan-out event: its name and fields (TargetId, and Reason where one is given).
EventCallback = Callable[[str, dict[str, Any]], None]


class _Publish:
    """One room's publish: its connection, where it stands, and what it was sent."""

    def __init__(self, target: Target, fanout: Fanout) -> None:
        self.target = target
        self._fanout = fanout
        self.state = "connecting"
        self.connection: RoomConnection | None = None
        #: A connection that waits for its room to take the stream's header (not yet live).
        self.opening: RoomConnection | None = None
        #: Whether the room refused the publish (a new try would be refused again).
        self.refused = False
        self.header_sent = False
        #: Whether its connection takes the sound as Opus (a WHIP room, :mod:`pipeline.opus`).
        self.wants_opus = False
        self.bytes = 0
        self.drops = 0
        self.reconnects = 0
        self.error: str | None = None
        self._behind_since = 0.0

    def figures(self) -> dict[str, Any]:
        """The status's entry for this room."""
        entry: dict[str, Any] = {
            "State": self.state,
            "Bytes": self.bytes,
            "Drops": self.drops,
            "Reconnects": self.reconnects,
        }
        return entry | ({"Error": self.error} if self.error else {})

    def feed(self, data: bytes, header: bytes) -> None:
        """Send ``data`` (whole FLV tags) as this room can take it; never waits."""
        connection = self.connection
        state = self.state
        if connection is None or state not in ("waiting", "live", "behind"):
            return
        if self.wants_opus:
            data, header = self._fanout.opus_view(data)
            if not header:
                return  # the stream started anew meanwhile
        try:
            if not self.header_sent:
                _offer(connection, header)
                self.header_sent = True
            if state == "behind":
                if _offer(connection, b"") > 0:
                    if time.monotonic() - self._behind_since > BEHIND_LIMIT:
                        self._broke(OSError(f"the room took nothing for {BEHIND_LIMIT:g} s"))
                    return
                state = self.state = "waiting"
            whole = True
            if state == "waiting":
                at = keyframe_at(data)
                if at is None:
                    return
                whole = not at
                data = data[at:] if at else data
                self.state = "live"
                self._fanout.event("target-live", self)
            waiting = self._fanout.offer(connection, data) if whole else _offer(connection, data)
            self.bytes += len(data)
            if waiting > MAX_WAITING:
                self.state = "behind"
                self.drops += 1
                self._behind_since = time.monotonic()
                self._fanout.event(
                    "target-behind", self, Reason="the room is slow: joining at the next keyframe"
                )
        except RoomUnreachable as exc:
            self._refused(exc)
        except (av.error.FFmpegError, OSError) as exc:
            self._broke(exc)

    def _refused(self, exc: RoomUnreachable) -> None:
        """The room refused the publish once media flowed (a WHIP endpoint answers the
        session's offer then): a new try would be refused again, so the room fails now."""
        if self.state == "removed":
            return
        self.error = self._fanout.detail(exc, self)
        self.refused = True
        self._fanout.start_closing(self)
        self._fail()

    def _broke(self, exc: BaseException) -> None:
        """The publish failed: reconnect on another thread, the others go on."""
        if self.state == "removed":
            return  # removed meanwhile: its connection is being closed
        self.state = "reconnecting"
        reason = self._fanout.detail(exc, self)
        self._fanout.event("target-reconnecting", self, Reason=reason)
        log.warning("the publish to room %s broke (%s): reconnecting", self.target.id, reason)
        self._fanout.start(self, first=False)

    def connect(self, first: bool) -> None:
        """Connect (again) until it works or the time runs out (then ``failed``)."""
        timeouts = self._fanout.timeouts
        old, self.connection = self.connection, None
        if old is not None:
            _close_quietly(old)
        deadline = time.monotonic() + (timeouts.room_open if first else timeouts.room_reconnect)
        delay = 0.25
        while self.state not in ("removed", "failed") and self._fanout.open:
            try:
                connection = self._fanout.open_connection(self.target.url, timeouts.room_open)
                wants_opus = getattr(connection, "wants_opus", False)
                header_sent = self._send_header(connection, wants_opus)
            except RoomUnreachable as exc:
                self.error = self._fanout.detail(exc, self)
                self.refused = True
                self._fail()  # refused: another try would be refused too
                return
            except (av.error.FFmpegError, OSError) as exc:
                self.error = self._fanout.detail(exc, self)
                if time.monotonic() + delay > deadline:
                    self._fail()
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if self.state == "removed" or not self._fanout.open:
                _close_quietly(connection)  # removed, stopped or closed while connecting
                return
            self.header_sent = header_sent
            self.wants_opus = wants_opus
            self.connection = connection
            self.error = None
            if not first:
                self.reconnects += 1
            self.state = "waiting"
            self._fanout.event("target-connected", self)
            return

    def _send_header(self, connection: RoomConnection, wants_opus: bool) -> bool:
        """Send the stream's header now, on the connecting thread, when the push has one
        yet (a reconnect, a room added while it runs): a publish counts as connected once
        its room took it, which for WHIP means that the session opened. Whether it was
        sent (else the first feed sends it)."""
        header = self._fanout.header
        if not header:
            return False
        if wants_opus:
            header = self._fanout.opus_header()
            if not header:
                return False  # the stream started anew meanwhile: the first feed sends it
        # Reachable from cut() and close() while it waits: a stop ends it now.
        self.opening = connection
        try:
            connection.write(header)
        except BaseException:
            _close_quietly(connection)
            raise
        finally:
            self.opening = None
        return True

    def cut(self) -> None:
        """End the publish now, and one being opened (a stop, any thread)."""
        for connection in (self.connection, self.opening):
            if connection is not None:
                connection.cut()

    def _fail(self) -> None:
        if self.state == "removed" or not self._fanout.open:
            return  # removed, or the push is over: nothing is told of it any more
        self.state = "failed"
        self._fanout.event("target-failed", self, Reason=self.error or "could not publish")
        log.warning("giving up the room %s: %s", self.target.id, self.error)

    def close(self) -> None:
        """End the publish politely (the room sees the user leave); one still being opened
        is cut (it never carried the stream)."""
        opening = self.opening
        if opening is not None:
            opening.cut()
        connection, self.connection = self.connection, None
        if connection is not None:
            _close_quietly(connection)


def _offer(connection: RoomConnection, data: bytes) -> int:
    """Send without waiting where the connection can (roomcast's RTMP client); bytes left."""
    offer = getattr(connection, "offer", None)
    if offer is None:
        connection.write(data)
        return 0
    waiting: int = offer(data)
    return waiting


def _close_quietly(connection: RoomConnection) -> None:
    try:
        connection.close()
    except (av.error.FFmpegError, OSError):
        pass


class Fanout:
    """The room connection of a push with several rooms (:mod:`pipeline.fanout`).

    ``connect`` (the sink's connector) publishes to every room at once and returns when each
    has connected or failed its first try; ``write`` feeds every room; ``change`` adds or
    removes a room while the push runs (any thread).
    """

    def __init__(
        self,
        targets: Sequence[Target],
        timeouts: Timeouts,
        progress: Progress,
        on_event: EventCallback | None = None,
        connect: RoomConnector | None = None,
        client: str = "roomcast",
        chunk_size: int = CHUNK_SIZE,
        secrets: tuple[str, ...] = (),
        pictures_per_send: int = PICTURES_PER_SEND,
    ) -> None:
        self.timeouts = timeouts
        self._pictures_per_send = pictures_per_send
        self._progress = progress
        self._on_event = on_event
        self._connect = connect
        self._client = client
        self._chunk_size = chunk_size
        self._secrets = secrets
        self._lock = threading.Lock()
        self._publishes: dict[str, _Publish] = {t.id: _Publish(t, self) for t in targets}
        #: What every room needs first: the FLV header, metadata and codec configuration.
        self._header = b""
        self._header_done = False
        #: The start of a tag whose end the muxer has not written yet.
        self._partial = b""
        #: Whole tags waiting for the next picture (:data:`SOUND_TAGS_HELD`).
        self._held: list[bytes] = []
        self._held_tags = 0
        self._held_pictures = 0
        #: RTMP rooms' messages, framed once for all rooms in step (see :meth:`offer`): a
        #: framer per (chunk size, message stream, timestamp origin), its state after the
        #: last feed, and this feed's framed bytes with the states before and after.
        self._framers: dict[tuple[int, int, int], RtmpFramer] = {}
        self._framer_states: dict[tuple[int, int, int], FramerState] = {}
        self._framed: dict[tuple[int, int, int], tuple[bytes, FramerState, FramerState]] = {}
        #: WHIP rooms' sound, Opus for AAC (made for the first such room), the header and
        #: this feed as they get them (:meth:`opus_view`).
        self._opus: OpusTags | None = None
        self._opus_header = b""
        self._opus_feed: bytes | None = None
        #: Held to encode: a room's connecting thread may ask for the header meanwhile.
        self._opus_lock = threading.Lock()
        self._reported = 0.0
        self.cut_off = False
        self._closed = False
        # Events go out from a thread of their own: they are written to Redis, and a room
        # that goes live or falls behind does so on the shared sender's thread.
        self._events: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._event_thread: threading.Thread | None = None
        self.fallback: str | None = None
        self._report()

    # -- the sink's side: RoomConnector and RoomConnection -----------------------------

    def connect(self, url: str, timeout: float) -> Fanout:
        """Publish to every room (``url`` is the first room's, for the sink's messages);
        raises the first room's error if none could be published to."""
        self._closed = False
        self._header, self._header_done, self._partial = b"", False, b""
        self._held.clear()
        self._held_tags = self._held_pictures = 0
        self._framers.clear()
        self._framer_states.clear()
        with self._opus_lock:  # a new stream: its own header, its own encoding
            self._opus, self._opus_header, self._opus_feed = None, b"", None
        publishes = [p for p in self._all() if p.state != "removed"]
        for publish in publishes:
            publish.state = "connecting"
        threads = [self.start(p, first=True) for p in publishes]
        for thread in threads:
            thread.join(timeout + 1)
        if not any(p.connection is not None for p in publishes):
            self._closed = True  # the rooms still trying give up; none is left connected
            errors = [p.error for p in publishes if p.error]
            raise OSError(errors[0] if errors else "no room to publish to")
        self._report()
        return self

    def write(self, data: bytes) -> int:
        """Feed the muxer's bytes to every room, whole tags only (the header first, kept for
        rooms that join later)."""
        given = len(data)
        if self._partial:
            data = self._partial + data
        if not self._header:  # the FLV file header comes before any tag
            if len(data) < FLV_HEADER:
                self._partial = data
                return given
            self._header, data = data[:FLV_HEADER], data[FLV_HEADER:]
        end, count, pictures = scan(data)
        data, self._partial = data[:end], data[end:]
        if not self._header_done:
            start = media_start(data)
            if start is None:
                self._header += data
                return given
            self._header += data[:start]
            self._header_done = True
            data = data[start:]
        if not data:
            return given
        self._held.append(data)
        self._held_tags += count
        self._held_pictures += pictures
        if self._held_pictures >= self._pictures_per_send or self._held_tags >= SOUND_TAGS_HELD:
            self._feed()
        return given

    def _feed(self) -> None:
        """Send every room what is held, in one send each."""
        data = b"".join(self._held) if len(self._held) > 1 else self._held[0]
        self._held.clear()
        self._held_tags = self._held_pictures = 0
        self._framed.clear()
        # Every feed, once a WHIP room asked: the encoder hears all the sound, in order.
        with self._opus_lock:
            self._opus_feed = self._opus.convert(data) if self._opus is not None else None
        publishes = self._all()
        for publish in publishes:
            publish.feed(data, self._header)
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY:
            self._reported = now
            self._report()
            if publishes and all(p.state in ("failed", "removed") for p in publishes):
                failed = [p for p in publishes if p.state == "failed"]
                reason = (
                    f"every room's publish failed ({failed[0].target.id}: {failed[0].error})"
                    if failed
                    else "every room was removed"
                )
                if failed and all(p.refused for p in failed):
                    # Not an OSError: the sink does not reconnect rooms that refused.
                    raise RoomUnreachable(reason)
                raise OSError(reason)

    def cut(self) -> None:
        """End every publish now, from any thread (a stop)."""
        self.cut_off = True
        for publish in self._all():
            publish.cut()

    @property
    def open(self) -> bool:
        """Whether rooms may still be connected (not stopped, not closed)."""
        return not (self.cut_off or self._closed)

    def close(self) -> None:
        """End every publish politely, all at once (each may take a moment)."""
        self._closed = True
        if self._held:
            try:
                self._feed()
            except OSError:
                pass  # every room failed: nothing to finish
        self._finish_opus()
        threads = [self._thread(publish.close, "close") for publish in self._all()]
        for thread in threads:
            thread.join(5.0)
        self._report()
        if self._event_thread is not None:
            self._events.put(None)  # the events told so far go out, then the thread ends
            self._event_thread.join(5.0)
            self._event_thread = None

    def _finish_opus(self) -> None:
        """Hand the WHIP rooms what the Opus encoder still holds, at the stream's end."""
        with self._opus_lock:
            tail = self._opus.finish() if self._opus is not None else b""
        if not tail:
            return
        for publish in self._all():
            connection = publish.connection
            if connection is None or publish.state != "live":
                continue
            if publish.wants_opus:
                try:
                    _offer(connection, tail)
                except (av.error.FFmpegError, OSError, RoomUnreachable):
                    pass  # that room's close tells what became of it

    # -- changes while running -----------------------------------------------------------

    def change(self, add: Target | None, remove: str | None) -> None:
        """Add a room (it joins at the next keyframe) or remove one (its publish ends)."""
        if add is not None:
            with self._lock:
                known = self._publishes.get(add.id)
                if known is not None and known.state != "removed":
                    log.warning("room %s is already a target of this push", add.id)
                    return
                publish = self._publishes[add.id] = _Publish(add, self)
            self.event("target-added", publish)
            self.start(publish, first=True)
        if remove is not None:
            with self._lock:
                gone = self._publishes.pop(remove, None)
            if gone is None:
                log.warning("no target %s to remove", remove)
                return
            gone.state = "removed"
            self._thread(gone.close, "close")
            self.event("target-removed", gone)
        self._report()

    # -- for the publishes ---------------------------------------------------------------

    def offer(self, connection: RoomConnection, data: bytes) -> int:
        """Offer this feed's ``data`` to one room: framed once for every room whose RTMP
        chunk streams are in step (:meth:`pipeline.rtmp.RtmpPublisher.offer_framed`), else
        on its own. Bytes the room has not taken yet."""
        offer_framed = getattr(connection, "offer_framed", None)
        if offer_framed is None:
            return _offer(connection, data)
        key = connection.framing  # type: ignore[attr-defined]
        shared = self._framed.get(key)
        if shared is None:
            framer = self._framers.get(key)
            if framer is None:
                framer = self._framers[key] = RtmpFramer(key[0], key[2], key[1])
                framer.frame(self._header)  # where every room starts
                self._framer_states[key] = framer.state()
            before = self._framer_states[key]
            framed = framer.frame(data)
            after = self._framer_states[key] = framer.state()
            shared = self._framed[key] = (framed, before, after)
        waiting: int | None = offer_framed(*shared)
        return _offer(connection, data) if waiting is None else waiting

    def opus_header(self) -> bytes:
        """The stream's header as WHIP rooms get it: an Opus configuration for the AAC one
        (:mod:`pipeline.opus`); the sound is re-encoded from here on, once for all of them."""
        with self._opus_lock:
            if self._opus is None:
                if not self._header_done:
                    return b""  # not whole yet (or a new stream's): nothing to convert
                self._opus = OpusTags()
                self._opus_header = self._opus.convert(self._header)
            return self._opus_header

    def opus_view(self, data: bytes) -> tuple[bytes, bytes]:
        """This feed's ``data`` and the stream's header as WHIP rooms get them (Opus for
        AAC), converted once for every such room."""
        header = self.opus_header()
        with self._opus_lock:
            if self._opus is None:
                return b"", b""  # the stream started anew meanwhile
            if self._opus_feed is None:  # the first WHIP room: this feed was not converted
                self._opus_feed = self._opus.convert(data)
            return self._opus_feed, header

    @property
    def header(self) -> bytes:
        """The stream's header once it is whole (FLV header, metadata, codec configuration),
        else b"": what a publish sends first."""
        return self._header if self._header_done else b""

    def start_closing(self, publish: _Publish) -> None:
        """End ``publish``'s connection on a thread of its own (the caller may be the
        shared sender)."""
        self._thread(publish.close, "close")

    def start(self, publish: _Publish, first: bool) -> threading.Thread:
        """Connect ``publish`` on a thread of its own."""
        return self._thread(lambda: publish.connect(first), "connect")

    @staticmethod
    def _thread(work: Callable[[], None], what: str) -> threading.Thread:
        """Run ``work`` on a new thread, in the push's log context (request id, secrets)."""
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(work,), name=f"roomcast-fanout-{what}", daemon=True
        )
        thread.start()
        return thread

    def open_connection(self, url: str, timeout: float) -> RoomConnection:
        """One room's publish, as the push's own would be opened, its kernel buffer bounded."""
        if self._connect is not None:
            return self._connect(url, timeout)
        connection = connect_room(url, timeout, self._client, self._chunk_size)
        limit = getattr(connection, "limit_send_buffer", None)
        if limit is not None:
            limit(SEND_BUFFER)
        return connection

    def detail(self, exc: BaseException, publish: _Publish) -> str:
        """An error's text with the room's URL and the push's secrets masked."""
        text = str(getattr(exc, "strerror", None) or exc)
        return redact_text(text, [publish.target.url, *self._secrets])

    def event(self, name: str, publish: _Publish, **fields: Any) -> None:
        """Tell the push's owner what became of a room (from the events thread: the caller
        may be the shared sender, which must not wait for Redis)."""
        log.info("fan-out: %s %s %s", name, publish.target.id, fields or "")
        if self._on_event is None or self._closed:
            return  # closed: the push's events have been told, its record is final
        self._events.put((name, {"TargetId": publish.target.id, **fields}))
        with self._lock:
            if self._event_thread is None:
                self._event_thread = self._thread(self._tell_events, "events")

    def _tell_events(self) -> None:
        assert self._on_event is not None
        while (item := self._events.get()) is not None:
            try:
                self._on_event(*item)
            except Exception:  # noqa: BLE001 - a failed event must not end the others
                log.exception("a fan-out event could not be told")

    def _all(self) -> list[_Publish]:
        with self._lock:
            return list(self._publishes.values())

    def _report(self) -> None:
        self._progress.targets = {p.target.id: p.figures() for p in self._all()}
