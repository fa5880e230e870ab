"""roomcast's own RTMP publisher: FLV tags in, RTMP messages out, one ``send`` per write.

FFmpeg's RTMP client (:mod:`pipeline.rtmpio`) polls the socket and sends once for every
RTMP chunk, chunk marker and message header: about a dozen system calls for one video frame
and its sound, on the shared sender's thread. Here a write turns the FLV tags the muxer
produced into complete RTMP messages and hands them to the kernel in one ``send``: they
leave as full TCP segments without corking, for less CPU per write (``bench/rtmp_write.py``,
docs/benchmarks.md).

The protocol is the publishing subset of Adobe's RTMP specification, done as FFmpeg's
client does it, so that an ingest known to take FFmpeg (TRTC's, nginx-rtmp, SRS) sees the
same conversation: the plain handshake; ``connect`` to the application named by the URL's
path; ``releaseStream``, ``FCPublish`` and ``createStream``; ``publish`` of the stream key
(the rest of the path with the query, where TRTC carries ``sdkappid``, ``userid`` and
``usersig``); then every FLV tag as one message (pictures on one chunk stream, sound and
script data on another), ``onMetaData`` behind ``@setDataFrame``; and ``FCUnpublish`` and
``deleteStream`` at the end. Message headers are written as FFmpeg's client writes them: a
full header with the absolute timestamp for a chunk stream's first message (or when time
goes back), then timestamp deltas in the shorter headers, so an extended timestamp appears
only on a gap of 4.6 hours; timestamps run on through the 32-bit wrap (49.7 days), and the
FLV muxer's own 31-bit wrap is undone first. What the room sends meanwhile (pings, chunk sizes,
acknowledgement windows, errors) is read between writes. Unlike FFmpeg, the handshake is
the plain one, without the Flash Player digest, as OBS (librtmp) sends it.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import amf
from .rtmpio import shut_down

DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
HANDSHAKE_SIZE = 1536
#: Chunk size announced to the room and used for every message sent: TRTC's RTMP guidance.
CHUNK_SIZE = 1360
#: FFmpeg's FLV muxer keeps 31 bits of a timestamp (24.8 days); the publisher undoes it.
FLV_WRAP = 1 << 31
_HALF_WRAP = 1 << 30
#: Chunk streams, numbered as FFmpeg's client numbers them: protocol control, commands,
#: sound and script data, pictures, and the stream's own commands (``publish``).
CONTROL_STREAM, COMMAND_STREAM, AUDIO_STREAM, VIDEO_STREAM, SOURCE_STREAM = 2, 3, 4, 6, 8
# Message types.
SET_CHUNK_SIZE, ABORT, ACKNOWLEDGEMENT, USER_CONTROL, WINDOW_ACK_SIZE = 1, 2, 3, 4, 5
VIDEO, SCRIPT_DATA, COMMAND = 9, 18, 20
# User control events.
PING_REQUEST, PING_RESPONSE = 6, 7
#: The room's messages are looked for every this many writes (about twice a second for a
#: push at 30 fps): often enough to answer a ping well within any server's patience.
POLL_EVERY = 15
#: Sent as the client's ``flashVer``: the family name servers use to tell an encoder.
FLASH_VERSION = "FMLE/3.0 (compatible; roomcast)"
#: A publisher that has not written for this long has the room's messages read for it by
#: the process's keeper thread (pings above all: a server may drop a client that is slow).
KEEPER_INTERVAL = 0.2
#: How long ``close()`` may spend telling the room the stream ends.
CLOSE_TIMEOUT = 1.0

_WORD = struct.Struct(">I")
_TWO_WORDS = struct.Struct(">II")
_HEADER = struct.Struct(">III")
_SET_DATA_FRAME = amf.encode("@setDataFrame")
_ON_METADATA = amf.encode("onMetaData")
_TIMEVAL = struct.Struct("ll")
_FLV_HEADER_SIZE = 13  # "FLV", version, flags, header size, then the first previous-tag-size
_EXTENDED = 0xFFFFFF

T = TypeVar("T")
log = logging.getLogger(__name__)


class RtmpError(OSError):
    """The room refused or broke the RTMP conversation; the message says what it sent."""


class RtmpHandshakeFailed(RtmpError):
    """The room hung up on, or did not understand, the handshake (before any command)."""


@dataclass(frozen=True)
class RtmpAddress:
    """Where an ``rtmp://`` or ``rtmps://`` URL publishes, split as FFmpeg splits it."""

    host: str
    port: int
    app: str
    stream: str
    tc_url: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> RtmpAddress:
        """The parts of ``url``; raises ``ValueError`` if it is not one this client publishes to.

        The application is the path's first segment, or all but its last when there are
        more than two; the stream key is the rest with the query; ``tcUrl`` names the port
        (libavformat/rtmpproto.c).
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("not an rtmp:// or rtmps:// URL with a host")
        path = parts.path.lstrip("/")
        first = path.find("/")
        if first < 0:
            app, stream = "", path
        else:
            second = path.find("/", first + 1)
            colon = path.find(":", first + 1)
            if second < 0 or 0 <= colon < second:
                app, stream = path[:first], path[first + 1 :]
            else:
                app, stream = path[:second], path[second + 1 :]
        stream = f"{stream}?{parts.query}" if parts.query else stream.removesuffix(".flv")
        host, port = parts.hostname, parts.port or DEFAULT_PORTS[scheme]
        named = f"[{host}]" if ":" in host else host
        return cls(
            host=host,
            port=port,
            app=app,
            stream=stream,
            tc_url=f"{scheme}://{named}:{port}/{app}",
            tls=scheme == "rtmps",
        )


@dataclass(frozen=True)
class Message:
    """One complete RTMP message received, with its timestamp (ms, modulo 2**32)."""

    kind: int
    stream_id: int
    payload: bytes
    timestamp: int = 0


@dataclass
class _Inbound:
    """What one incoming chunk stream's previous header said, and the message in progress."""

    length: int = 0
    kind: int = 0
    stream_id: int = 0
    extended: bool = False
    #: The last message's timestamp, and the last header's timestamp field (absolute in a
    #: full header, a delta otherwise), which a one-byte header for a new message reuses.
    timestamp: int = 0
    stamp_field: int = 0
    payload: bytearray = field(default_factory=bytearray)


class ChunkReader:
    """Reassembles the messages of an incoming RTMP chunk stream from bytes as they come."""

    def __init__(self) -> None:
        self.chunk_size = 128  # the protocol's default until the peer sets its own
        self.received = 0
        self._buffer = bytearray()
        self._streams: dict[int, _Inbound] = {}

    def feed(self, data: bytes) -> list[Message]:
        """The messages ``data`` completes (none, one or several)."""
        self.received += len(data)
        self._buffer += data
        messages: list[Message] = []
        while (step := self._chunk()) is not None:
            if isinstance(step, Message):
                messages.append(step)
        return messages

    def abort(self, chunk_stream: int) -> None:
        """Drop the partial message of ``chunk_stream`` (the peer's Abort message)."""
        inbound = self._streams.get(chunk_stream)
        if inbound is not None:
            inbound.payload.clear()

    def _chunk(self) -> Message | bool | None:
        """Consume one whole chunk: its message if it ends one, True if not; None: wait."""
        buf = self._buffer
        if not buf:
            return None
        fmt, chunk_stream, pos = buf[0] >> 6, buf[0] & 0x3F, 1
        if chunk_stream < 2:  # two- and three-byte forms
            width = 1 if chunk_stream == 0 else 2
            if len(buf) < 1 + width:
                return None
            chunk_stream = 64 + int.from_bytes(buf[1 : 1 + width], "little")
            pos += width
        header = (11, 7, 3, 0)[fmt]
        if len(buf) < pos + header:
            return None
        # A first chunk without a full header starts from nothing, as in FFmpeg's reader.
        inbound = self._streams.get(chunk_stream) or _Inbound()
        length, kind, stream_id = inbound.length, inbound.kind, inbound.stream_id
        extended, stamp_field = inbound.extended, inbound.stamp_field
        if fmt < 3:
            stamp_field = int.from_bytes(buf[pos : pos + 3], "big")
            extended = stamp_field == _EXTENDED
        if fmt < 2:
            length, kind = int.from_bytes(buf[pos + 3 : pos + 6], "big"), buf[pos + 6]
        if fmt == 0:
            stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
        if extended:
            if len(buf) < pos + header + 4:
                return None
            if fmt < 3:
                stamp_field = int.from_bytes(buf[pos + header : pos + header + 4], "big")
        pos += header + (4 if extended else 0)
        take = min(length - len(inbound.payload), self.chunk_size)
        if len(buf) < pos + take:
            return None
        if not inbound.payload:  # a new message: its timestamp, as FFmpeg's reader takes it
            if fmt == 0:
                inbound.timestamp = stamp_field
            else:
                inbound.timestamp = (inbound.timestamp + stamp_field) & 0xFFFFFFFF
        inbound.length, inbound.kind, inbound.stream_id = length, kind, stream_id
        inbound.extended, inbound.stamp_field = extended, stamp_field
        self._streams[chunk_stream] = inbound
        inbound.payload += buf[pos : pos + take]
        del buf[: pos + take]
        if len(inbound.payload) < length:
            return True
        message = Message(kind, stream_id, bytes(inbound.payload), inbound.timestamp)
        inbound.payload.clear()
        if kind in (SET_CHUNK_SIZE, ABORT) and len(message.payload) >= 4:
            # At once: the chunks after it, maybe already in the buffer, are cut to it.
            value = int.from_bytes(message.payload[:4], "big")
            if kind == SET_CHUNK_SIZE:
                if not 1 <= value <= 0xFFFFFF:
                    raise RtmpError(f"the room set a chunk size of {value}, outside 1..16777215")
                self.chunk_size = value
            elif kind == ABORT:
                self.abort(value)
        return message


def message_bytes(
    chunk_stream: int,
    kind: int,
    stream_id: int,
    timestamp: int,
    payload: Any,
    chunk_size: int = CHUNK_SIZE,
) -> list[Any]:
    """The chunks of one message with a full header, as pieces to join (payload unsliced)."""
    length = len(payload)
    field_value = min(timestamp, _EXTENDED)
    extended = timestamp.to_bytes(4, "big") if timestamp >= _EXTENDED else b""
    head = _TWO_WORDS.pack((chunk_stream << 24) | field_value, (length << 8) | kind)
    return [
        head,
        stream_id.to_bytes(4, "little"),
        *_chunked(chunk_stream, extended, payload, chunk_size),
    ]


def _chunked(chunk_stream: int, extended: bytes, payload: Any, chunk_size: int) -> list[Any]:
    """The extended timestamp (if any) and the payload cut into chunks behind one-byte
    headers, each repeating the extended timestamp as FFmpeg's client does."""
    length = len(payload)
    if length <= chunk_size:
        return [extended, payload] if extended else [payload]
    marker = bytes((0xC0 | chunk_stream,)) + extended
    view = memoryview(payload)
    pieces: list[Any] = [extended] if extended else []
    for start in range(0, length, chunk_size):
        if start:
            pieces.append(marker)
        pieces.append(view[start : start + chunk_size])
    return pieces


def _left(deadline: float) -> float:
    """Seconds until ``deadline``, never quite none (a socket timeout of 0 means never wait)."""
    return max(0.001, deadline - time.monotonic())


def _received_now(sock: socket.socket) -> bytes | None:
    """What has arrived on ``sock`` (b"": the peer closed), or None if nothing has."""
    if isinstance(sock, ssl.SSLSocket):
        if not sock.pending() and not select.select([sock], [], [], 0)[0]:
            return None
        timeout = sock.gettimeout()
        sock.setblocking(False)  # readable may be half a TLS record: never wait for the rest
        try:
            return sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        finally:
            sock.settimeout(timeout)
    try:
        return sock.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


def _command(name: str, transaction: int, *args: Any, stream_id: int = 0) -> bytes:
    chunk_stream = COMMAND_STREAM if stream_id == 0 else SOURCE_STREAM
    body = amf.encode(name, transaction, *args)
    return b"".join(message_bytes(chunk_stream, COMMAND, stream_id, 0, body))


def _control(kind: int, payload: bytes) -> bytes:
    return b"".join(message_bytes(CONTROL_STREAM, kind, 0, 0, payload))


def _room_error(what: str, values: list[Any]) -> RtmpError:
    """An error naming ``what`` happened and the code and description the room sent."""
    _, code, description = _status(values)
    return RtmpError(f"the room {what}: {code} {description}".rstrip())


def _status(values: list[Any]) -> tuple[str, str, str]:
    """Level, code and description of an ``onStatus``/``_error`` info object."""
    info = next((v for v in values[2:] if isinstance(v, dict)), {})
    return str(info.get("level", "")), str(info.get("code", "")), str(info.get("description", ""))


#: A framer's state, compared whole: (chunk streams' last messages, timestamp epoch and
#: last, what is pending, what to skip, message stream, chunk size).
FramerState = tuple[Any, ...]


class RtmpFramer:
    """FLV tags to one publish's RTMP messages, as FFmpeg's client frames them.

    Its state (each chunk stream's last message, for header compression; the timestamps'
    epoch) is the publish's: two publishes fed the same tags from the same state frame the
    same bytes, which a fan-out frames once (:meth:`RtmpPublisher.offer_framed`).
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE, origin: int = 0, stream_word: int = 0):
        self.chunk_size = chunk_size
        self.origin = origin
        self.stream_word = stream_word
        #: Per media chunk stream: (timestamp, size, kind, header's timestamp field, whether
        #: that field was a delta) of the last message framed.
        self._sent: dict[int, tuple[int, int, int, int, bool]] = {}
        self._flv_epoch = origin
        self._flv_last: int | None = None
        self._skip = _FLV_HEADER_SIZE
        self._pending = b""

    def state(self) -> FramerState:
        """A snapshot of the state, for :meth:`restore` and to compare two framers."""
        return (
            tuple(sorted(self._sent.items())),
            self._flv_epoch,
            self._flv_last,
            self._pending,
            self._skip,
            self.stream_word,
            self.chunk_size,
        )

    def restore(self, state: FramerState) -> None:
        """Take the state :meth:`state` gave (another framer's, in step with this one)."""
        sent, self._flv_epoch, self._flv_last, self._pending, self._skip, _, _ = state
        self._sent = dict(sent)

    def frame(self, data: bytes) -> bytes:
        """The RTMP messages of the whole FLV tags in ``data`` (a partial one waits)."""
        if self._pending:
            data = self._pending + data
        pos, end = 0, len(data)
        if self._skip:
            pos = min(self._skip, end)
            self._skip -= pos
        pieces: list[Any] = []
        # The hot path of every push: one struct call in and one out per tag, no copies
        # beyond the slice of its payload.
        while pos + 11 <= end:
            word, stamp = _TWO_WORDS.unpack_from(data, pos)
            size = word & 0xFFFFFF
            stop = pos + 11 + size
            if stop + 4 > end:
                break
            kind = word >> 24
            payload = data[pos + 11 : stop]
            if kind == SCRIPT_DATA and payload.startswith(_ON_METADATA):
                payload = _SET_DATA_FRAME + payload  # what FFmpeg's client sends, too
            timestamp = self._unwrap((stamp >> 8) | ((stamp & 0xFF) << 24))
            pieces += self._message(kind, timestamp, payload)
            pos = stop + 4
        self._pending = data[pos:]
        return b"".join(pieces)

    def _unwrap(self, flv_timestamp: int) -> int:
        """The tag's time on one line that never wraps (the FLV muxer's wraps at 2**31)."""
        stamp = self._flv_epoch + flv_timestamp
        last = self._flv_last
        if last is not None:
            if last - stamp > _HALF_WRAP:  # wrapped: from here on, one epoch later
                self._flv_epoch += FLV_WRAP
                stamp += FLV_WRAP
            elif stamp - last > _HALF_WRAP:  # a straggler from before the wrap
                return stamp - FLV_WRAP
        if last is None or stamp > last:
            self._flv_last = stamp
        return stamp

    def _message(self, kind: int, timestamp: int, payload: bytes) -> list[Any]:
        """One tag's message as FFmpeg's client writes it: a full header for the chunk
        stream's first message or when time goes back, else the timestamp's delta in the
        shortest header that says what changed."""
        chunk_stream = VIDEO_STREAM if kind == VIDEO else AUDIO_STREAM
        size = len(payload)
        last = self._sent.get(chunk_stream)
        if last is None or not 0 <= timestamp - last[0] <= 0xFFFFFFFF:
            fmt, field_value = 0, timestamp & 0xFFFFFFFF
        else:
            field_value = timestamp - last[0]
            if size != last[1] or kind != last[2]:
                fmt = 1
            else:
                fmt = 3 if last[4] and field_value == last[3] else 2
        self._sent[chunk_stream] = (timestamp, size, kind, field_value, fmt != 0)
        extended = field_value.to_bytes(4, "big") if field_value >= _EXTENDED else b""
        stamp = _EXTENDED if extended else field_value
        if fmt == 0:
            head = _HEADER.pack(chunk_stream << 24 | stamp, size << 8 | kind, self.stream_word)
        elif fmt == 1:
            head = _TWO_WORDS.pack((0x40 | chunk_stream) << 24 | stamp, size << 8 | kind)
        elif fmt == 2:
            head = _WORD.pack((0x80 | chunk_stream) << 24 | stamp)
        else:
            head = bytes((0xC0 | chunk_stream,))
        return [head, *_chunked(chunk_stream, extended, payload, self.chunk_size)]


class RtmpPublisher:
    """A publish to one ``rtmp://`` or ``rtmps://`` URL that takes the FLV muxer's bytes.

    Connecting publishes (raises :class:`RtmpError` or another ``OSError`` with the reason);
    ``write`` sends FLV bytes at once; ``cut`` ends the connection from any thread;
    ``close`` ends the publish politely (:class:`pipeline.sink.RoomConnection`, as
    :class:`pipeline.rtmpio.RtmpConnection`).
    """

    #: Why FFmpeg's client publishes instead (None here: this one publishes).
    fallback: str | None = None

    def __init__(
        self, url: str, timeout: float, chunk_size: int = CHUNK_SIZE, timestamp_origin: int = 0
    ) -> None:
        """Connect and publish within ``timeout`` seconds; writes may block as long.
        ``timestamp_origin`` (ms) is added to every timestamp: tests start a push hours or
        days in."""
        if not 128 <= chunk_size <= 65536:
            raise ValueError(f"an RTMP chunk size of {chunk_size} is outside 128..65536")
        self.address = RtmpAddress.parse(url)
        self.chunk_size = chunk_size
        self._timeout = timeout
        self._framer = RtmpFramer(chunk_size, timestamp_origin)
        #: The shared framer's state this publish is in step with (``offer_framed``): its
        #: own framer's is behind until it frames on its own again.
        self._in_step: FramerState | None = None
        self._reader = ChunkReader()
        self._inbox: deque[Message] = deque()  # read while publishing, not yet looked at
        self._lock = threading.Lock()  # held to shut down or close the socket
        self._stream_id = 0
        self._transactions = 0
        #: Framed bytes ``offer`` could not send yet: they go before anything else.
        self._outbox = b""
        #: Once ``offer`` is used, nothing waits: replies to the room join the outbox too.
        self._offering = False
        self._writes = 0
        self._broken = False  # a send failed: the stream may end mid-message
        self._window = 0
        self._acknowledged = 0
        # Held while writing or reading the room's messages: the writer, or the keeper
        # for a quiet publisher; and what the keeper met, raised by the next write.
        self._io = threading.Lock()
        self._last_io = time.monotonic()
        self._failure: OSError | None = None
        deadline = time.monotonic() + timeout
        self._socket: socket.socket | None = self._open(deadline)
        try:
            self._handshake(deadline)
            self._publish(deadline)
            self._settle()
        except BaseException:
            self._socket.close()
            self._socket = None
            raise
        framer = self._framer
        #: What a fan-out's shared framer must share with this publish (:class:`RtmpFramer`):
        #: chunk size, message stream and timestamp origin, fixed once it publishes.
        self.framing = (framer.chunk_size, framer.stream_word, framer.origin)
        _KEEPER.add(self)

    def _open(self, deadline: float) -> socket.socket:
        address = self.address
        sock = socket.create_connection((address.host, address.port), timeout=_left(deadline))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if address.tls:
                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _connected(self) -> socket.socket:
        sock = self._socket
        if sock is None:
            raise RtmpError("the room connection is closed")
        return sock

    def _read(self, count: int, deadline: float) -> bytes:
        """Exactly ``count`` bytes, before ``deadline``."""
        sock = self._connected()
        data = bytearray()
        while len(data) < count:
            sock.settimeout(_left(deadline))
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise RtmpHandshakeFailed("the room closed the connection during the handshake")
            data += chunk
        return bytes(data)

    def _handshake(self, deadline: float) -> None:
        """The plain handshake: C0 C1, S0 S1 S2, C2 (an echo of S1)."""
        sock = self._connected()
        sock.sendall(b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8))
        version = self._read(1, deadline)[0]
        if version != 3:
            raise RtmpHandshakeFailed(f"the room answered with RTMP version {version}, not 3")
        server = self._read(HANDSHAKE_SIZE, deadline)
        self._read(HANDSHAKE_SIZE, deadline)  # S2, its echo of C1
        sock.sendall(server)

    def _publish(self, deadline: float) -> None:
        """connect, createStream, publish; each answer awaited as FFmpeg awaits it."""
        address = self.address
        sock = self._connected()
        connect = {
            "app": address.app,
            "type": "nonprivate",
            "flashVer": FLASH_VERSION,
            "tcUrl": address.tc_url,
        }
        sock.sendall(
            _control(SET_CHUNK_SIZE, self.chunk_size.to_bytes(4, "big"))
            + self._call("connect", connect)
        )
        self._await_result(1, "connect", deadline)
        sock.sendall(
            self._call("releaseStream", None, address.stream)
            + self._call("FCPublish", None, address.stream)
            + self._call("createStream", None)
        )
        created = self._await_result(self._transactions, "createStream", deadline)
        stream_id = next((v for v in created[3:] if isinstance(v, float)), None)
        if stream_id is None or not 0 <= stream_id < 2**32 or stream_id != int(stream_id):
            raise RtmpError(f"the room's answer to createStream named no stream: {created[3:]}")
        self._stream_id = int(stream_id)
        # The header's last field is little-endian: packed big-endian, byte-swapped once.
        self._framer.stream_word = int.from_bytes(self._stream_id.to_bytes(4, "little"), "big")
        sock.sendall(self._call("publish", None, address.stream, "live", stream_id=self._stream_id))
        self._await(deadline, self._published(self._transactions))

    def _call(self, name: str, *args: Any, stream_id: int = 0) -> bytes:
        self._transactions += 1
        return _command(name, self._transactions, *args, stream_id=stream_id)

    def _await_result(self, transaction: int, name: str, deadline: float) -> list[Any]:
        def answer(values: list[Any]) -> list[Any] | None:
            if len(values) < 2 or values[1] != transaction:
                return None
            if values[0] == "_error":
                raise _room_error(f"refused {name}", values)
            return values if values[0] == "_result" else None

        return self._await(deadline, answer)

    @staticmethod
    def _published(transaction: int) -> Callable[[list[Any]], bool | None]:
        """What tells that the publish started (True), or raises with the room's refusal."""

        def started(values: list[Any]) -> bool | None:
            refused = values[0] == "_error" and len(values) > 1 and values[1] == transaction
            if values[0] != "onStatus" and not refused:
                return None
            level, code, _ = _status(values)
            if level == "error" or refused:
                raise _room_error("refused the publish", values)
            return True if code == "NetStream.Publish.Start" else None

        return started

    def _await(self, deadline: float, wanted: Callable[[list[Any]], T | None]) -> T:
        """Read the room's messages until a command satisfies ``wanted``."""
        sock = self._connected()
        inbox = self._inbox
        while True:
            while inbox:
                values = self._handle(inbox.popleft())
                found = wanted(values) if values else None
                if found is not None:
                    return found  # what came with it stays in the inbox for the next wait
            sock.settimeout(_left(deadline))
            data = sock.recv(65536)
            if not data:
                raise RtmpError("the room closed the connection before the publish started")
            inbox.extend(self._reader.feed(data))

    def _handle(self, message: Message) -> list[Any] | None:
        """Act on a protocol message; a command's values for the caller to look at."""
        kind, payload = message.kind, message.payload
        if kind == WINDOW_ACK_SIZE and len(payload) >= 4:
            self._window = int.from_bytes(payload[:4], "big")
        elif kind == USER_CONTROL and payload[:2] == PING_REQUEST.to_bytes(2, "big"):
            self._send_now(_control(USER_CONTROL, PING_RESPONSE.to_bytes(2, "big") + payload[2:6]))
        elif kind == COMMAND:
            try:
                values = amf.decode(payload)
            except (amf.AmfError, RecursionError):
                # As FFmpeg does: a command it cannot read is passed over. Were it an answer
                # awaited, the wait ends at its deadline.
                log.debug("passed over a command from the room that AMF0 could not read")
            else:
                if values and values[0] == "onBWDone":
                    # FFmpeg answers a bandwidth check with _checkbw; some servers wait on it.
                    self._send_now(self._call("_checkbw", None))
                return values
        received = self._reader.received
        if self._window and received - self._acknowledged >= self._window:
            self._acknowledged = received
            self._send_now(_control(ACKNOWLEDGEMENT, (received & 0xFFFFFFFF).to_bytes(4, "big")))
        return None

    def _send_now(self, data: bytes) -> None:
        if self._offering:
            self._outbox += data  # sent with the next offer, in order, without waiting
            return
        self._send(self._connected(), data)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        """``sendall`` (after what ``offer`` left), and on failure the connection is broken
        for good."""
        if self._outbox:
            data, self._outbox = self._outbox + data, b""
        if not data:
            return
        try:
            sock.sendall(data)
        except OSError as exc:
            self._broken = True
            if isinstance(exc, BlockingIOError | TimeoutError):  # SO_SNDTIMEO ran out
                raise RtmpError(
                    f"the room took no data for {self._timeout:g} s (send timed out)"
                ) from None
            raise

    def _settle(self) -> None:
        """Blocking from now on, each send bounded by the kernel: no poll before every send."""
        sock = self._connected()
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(self._timeout)
            return
        sock.settimeout(None)
        seconds = int(self._timeout)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            _TIMEVAL.pack(seconds, int((self._timeout - seconds) * 1e6)),
        )

    def write(self, data: bytes) -> int:
        """Send the FLV bytes ``data`` now (tags may span writes); OSError once it fails."""
        with self._io:
            if self._failure is not None:
                raise self._failure
            self._last_io = time.monotonic()
            return self._write(data)

    def keep(self) -> None:
        """Read and answer the room's messages if nothing was written for a while (the
        keeper's call; never waits for a writer)."""
        if time.monotonic() - self._last_io < KEEPER_INTERVAL or not self._io.acquire(False):
            return
        try:
            if self._socket is not None and self._failure is None:
                self._poll(self._socket)
                if self._offering:
                    self._flush_nowait(self._socket)  # the replies the poll queued
                self._last_io = time.monotonic()
        except OSError as exc:
            self._failure = exc
            _KEEPER.remove(self)  # the next write raises it; nothing more to read
        finally:
            self._io.release()

    def offer(self, data: bytes) -> int:
        """Send the FLV bytes ``data`` as far as the socket takes them now, never waiting:
        the rest goes first at the next offer or write. Returns how many bytes still wait;
        OSError once the connection has failed. (TLS sends wait, as ``write`` does.)

        A fan-out push writes to every room from one thread: a room that stops reading
        must hold up nobody but itself (pipeline/fanout.py).
        """
        with self._io:
            if self._failure is not None:
                raise self._failure
            self._last_io = time.monotonic()
            sock = self._connected()
            if isinstance(sock, ssl.SSLSocket):
                self._send(sock, self._frame(sock, data))
                return 0
            self._offering = True
            framed = self._frame(sock, data)
            if framed:
                self._outbox = self._outbox + framed if self._outbox else framed
            return self._flush_nowait(sock)

    def _flush_nowait(self, sock: socket.socket) -> int:
        """Send what the outbox holds as far as the socket takes it now; bytes left."""
        out = self._outbox
        if out:
            try:
                sent = sock.send(out, socket.MSG_DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._broken = True
                raise
            self._outbox = out[sent:]
        return len(self._outbox)

    @property
    def waiting(self) -> int:
        """Bytes ``offer`` has not sent yet."""
        return len(self._outbox)

    def limit_send_buffer(self, size: int) -> None:
        """Have the kernel hold at most about ``size`` bytes for the room: beyond that,
        ``offer`` keeps them, where the caller sees how far behind the room is."""
        with self._lock:
            if self._socket is not None:
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def _write(self, data: bytes) -> int:
        sock = self._connected()
        self._send(sock, self._frame(sock, data))
        return len(data)

    def _frame(self, sock: socket.socket, data: bytes) -> bytes:
        """The RTMP messages of the whole FLV tags in ``data`` (a partial one waits)."""
        self._count_write(sock)
        if self._in_step is not None:  # it framed in step with a fan-out's framer so far
            self._framer.restore(self._in_step)
            self._in_step = None
        return self._framer.frame(data)

    def _count_write(self, sock: socket.socket) -> None:
        self._writes += 1
        if self._writes % POLL_EVERY == 0:
            self._poll(sock)  # first: an error raised here means none of ``data`` was sent

    def offer_framed(self, framed: bytes, before: FramerState, after: FramerState) -> int | None:
        """``offer`` for a fan-out room, with messages framed once for every room in step:
        ``framed`` (the shared framer's output) is this publish's own if its chunk streams
        are where the framer's were (``before``); then it is sent as ``offer`` sends and
        the bytes still waiting are returned. None when this publish is not in step (it
        joined later, or fell behind): the caller offers the FLV bytes instead, and after
        that this publish may be in step again (its state compared with ``after``).
        """
        # A fan-out calls this for every room and every picture: what it costs in Python
        # is most of a further room's cost beside its send, so it is written out flat.
        with self._io:
            if self._failure is not None:
                raise self._failure
            sock = self._socket
            if sock is None:
                raise RtmpError("the room connection is closed")
            if self.address.tls:
                return None
            if self._in_step is not before:
                if self._in_step is None and self._framer.state() == before:
                    self._in_step = before  # its own framing caught up with the framer's
                else:
                    return None
            self._last_io = time.monotonic()
            self._offering = True
            self._writes = writes = self._writes + 1
            if writes % POLL_EVERY == 0:
                self._poll(sock)  # first: an error raised here means none was sent
            self._in_step = after
            if framed:
                self._outbox = self._outbox + framed if self._outbox else framed
            return self._flush_nowait(sock)

    def _poll(self, sock: socket.socket) -> None:
        """Act on what the room sent meanwhile, without waiting for more."""
        while True:
            while self._inbox:
                values = self._handle(self._inbox.popleft())
                if values and values[0] == "onStatus" and _status(values)[0] == "error":
                    raise _room_error("ended the publish", values)
            data = _received_now(sock)
            if data is None:
                return
            if not data:
                raise RtmpError("the room closed the connection")
            self._inbox.extend(self._reader.feed(data))

    def cut(self) -> None:
        """End the connection now, from any thread: the room sees the user leave at once.

        Only shut down, not closed: the socket stays the owner's to close, so a cut never
        reaches a descriptor number reused meanwhile. Writes fail from now on.
        """
        with self._lock:
            shut_down(self._socket)

    def close(self) -> None:
        """End the publish (FCUnpublish, deleteStream) and close the connection.

        The goodbye is followed by this side's end of the stream, and what the room sends
        until it closes its own is read and dropped (for at most :data:`CLOSE_TIMEOUT`):
        Linux resets a connection closed with unread bytes, and a reset throws away what
        is still queued to send.
        """
        _KEEPER.remove(self)
        with self._io, self._lock:  # a keeper's read of the room ends first
            sock, self._socket = self._socket, None
        if sock is None:
            return
        try:
            if not self._broken:
                sock.settimeout(CLOSE_TIMEOUT)
                sock.sendall(
                    self._outbox  # a message offer() left half sent is finished first
                    + _command("FCUnpublish", self._transactions + 1, None, self.address.stream)
                    + _command("deleteStream", self._transactions + 2, None, self._stream_id)
                )
                socket.socket.shutdown(sock, socket.SHUT_WR)
                deadline = time.monotonic() + CLOSE_TIMEOUT
                while time.monotonic() < deadline and sock.recv(65536):
                    sock.settimeout(_left(deadline))
        except OSError:
            pass  # the room is gone already, or slow to close: it has the goodbye
        finally:
            sock.close()


class _Keeper:
    """One thread per process that reads the room's messages for quiet publishers.

    A writing publisher reads them itself every :data:`POLL_EVERY` writes; one that writes
    nothing (its source stalls, it waits for the next clip) would leave a ping unanswered
    and be dropped by a strict server. The keeper looks at every publisher each
    :data:`KEEPER_INTERVAL` and reads for those that are quiet: no thread per push.
    """

    def __init__(self) -> None:
        self._publishers: set[RtmpPublisher] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, publisher: RtmpPublisher) -> None:
        with self._lock:
            self._publishers.add(publisher)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rtmp-keeper", daemon=True)
                self._thread.start()

    def remove(self, publisher: RtmpPublisher) -> None:
        with self._lock:
            self._publishers.discard(publisher)

    def _run(self) -> None:
        while True:
            time.sleep(KEEPER_INTERVAL)
            with self._lock:
                publishers = list(self._publishers)
            for publisher in publishers:
                try:
                    publisher.keep()
                except Exception:  # noqa: BLE001 - the keeper serves every push: it goes on
                    log.exception("the RTMP keeper failed on one publisher")


_KEEPER = _Keeper()
