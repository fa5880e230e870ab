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
``deleteStream`` at the end. What the room sends meanwhile (pings, chunk sizes,
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
#: Chunk size announced to the room and used for every message sent (OBS's, nginx-rtmp's).
CHUNK_SIZE = 4096
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
#: How long ``close()`` may spend telling the room the stream ends.
CLOSE_TIMEOUT = 1.0

_TWO_WORDS = struct.Struct(">II")
_HEADER = struct.Struct(">III")
_SET_DATA_FRAME = amf.encode("@setDataFrame")
_ON_METADATA = amf.encode("onMetaData")
_TIMEVAL = struct.Struct("ll")
_FLV_HEADER_SIZE = 13  # "FLV", version, flags, header size, then the first previous-tag-size
_EXTENDED = 0xFFFFFF
#: A full header's first word, timestamp left out, for each media chunk stream.
_AUDIO_WORD, _VIDEO_WORD = AUDIO_STREAM << 24, VIDEO_STREAM << 24

T = TypeVar("T")
log = logging.getLogger(__name__)


class RtmpError(OSError):
    """The room refused or broke the RTMP conversation; the message says what it sent."""


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
    """One complete RTMP message received."""

    kind: int
    stream_id: int
    payload: bytes


@dataclass
class _Inbound:
    """What one incoming chunk stream's previous header said, and the message in progress."""

    length: int = 0
    kind: int = 0
    stream_id: int = 0
    extended: bool = False
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
        extended = inbound.extended
        if fmt < 3:
            extended = int.from_bytes(buf[pos : pos + 3], "big") == _EXTENDED
        if fmt < 2:
            length, kind = int.from_bytes(buf[pos + 3 : pos + 6], "big"), buf[pos + 6]
        if fmt == 0:
            stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
        pos += header + (4 if extended else 0)
        take = min(length - len(inbound.payload), self.chunk_size)
        if len(buf) < pos + take:
            return None
        inbound.length, inbound.kind, inbound.stream_id = length, kind, stream_id
        inbound.extended = extended
        self._streams[chunk_stream] = inbound
        inbound.payload += buf[pos : pos + take]
        del buf[: pos + take]
        if len(inbound.payload) < length:
            return True
        message = Message(kind, stream_id, bytes(inbound.payload))
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
    chunk_stream: int, kind: int, stream_id: int, timestamp: int, payload: Any
) -> list[Any]:
    """The chunks of one message with a full header, as pieces to join (payload unsliced)."""
    length = len(payload)
    field_value = min(timestamp, _EXTENDED)
    extended = timestamp.to_bytes(4, "big") if timestamp >= _EXTENDED else b""
    head = _TWO_WORDS.pack((chunk_stream << 24) | field_value, (length << 8) | kind)
    pieces: list[Any] = [head, stream_id.to_bytes(4, "little"), extended]
    if length <= CHUNK_SIZE:
        pieces.append(payload)
        return pieces
    marker = bytes((0xC0 | chunk_stream,)) + extended
    view = memoryview(payload)
    for start in range(0, length, CHUNK_SIZE):
        if start:
            pieces.append(marker)
        pieces.append(view[start : start + CHUNK_SIZE])
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


class RtmpPublisher:
    """A publish to one ``rtmp://`` or ``rtmps://`` URL that takes the FLV muxer's bytes.

    Connecting publishes (raises :class:`RtmpError` or another ``OSError`` with the reason);
    ``write`` sends FLV bytes at once; ``cut`` ends the connection from any thread;
    ``close`` ends the publish politely (:class:`pipeline.sink.RoomConnection`, as
    :class:`pipeline.rtmpio.RtmpConnection`).
    """

    def __init__(self, url: str, timeout: float) -> None:
        """Connect and publish within ``timeout`` seconds; writes may block as long."""
        self.address = RtmpAddress.parse(url)
        self._timeout = timeout
        self._reader = ChunkReader()
        self._inbox: deque[Message] = deque()  # read while publishing, not yet looked at
        self._lock = threading.Lock()  # held to shut down or close the socket
        self._stream_id = 0
        self._stream_word = 0
        self._transactions = 0
        self._skip = _FLV_HEADER_SIZE
        self._pending = b""
        self._writes = 0
        self._broken = False  # a send failed: the stream may end mid-message
        self._window = 0
        self._acknowledged = 0
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
                raise RtmpError("the room closed the connection during the handshake")
            data += chunk
        return bytes(data)

    def _handshake(self, deadline: float) -> None:
        """The plain handshake: C0 C1, S0 S1 S2, C2 (an echo of S1)."""
        sock = self._connected()
        sock.sendall(b"\x03" + bytes(8) + os.urandom(HANDSHAKE_SIZE - 8))
        version = self._read(1, deadline)[0]
        if version != 3:
            raise RtmpError(f"the room answered with RTMP version {version}, not 3")
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
            _control(SET_CHUNK_SIZE, CHUNK_SIZE.to_bytes(4, "big")) + self._call("connect", connect)
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
        self._stream_word = int.from_bytes(self._stream_id.to_bytes(4, "little"), "big")
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
                return amf.decode(payload)
            except (amf.AmfError, RecursionError):
                # As FFmpeg does: a command it cannot read is passed over. Were it an answer
                # awaited, the wait ends at its deadline.
                log.debug("passed over a command from the room that AMF0 could not read")
        received = self._reader.received
        if self._window and received - self._acknowledged >= self._window:
            self._acknowledged = received
            self._send_now(_control(ACKNOWLEDGEMENT, (received & 0xFFFFFFFF).to_bytes(4, "big")))
        return None

    def _send_now(self, data: bytes) -> None:
        self._send(self._connected(), data)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        """``sendall``, and on failure the connection is broken for good."""
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
        sock = self._connected()
        self._writes += 1
        if self._writes % POLL_EVERY == 0:
            self._poll(sock)  # first: an error raised here means none of ``data`` was sent
        given = len(data)
        if self._pending:
            data = self._pending + data
        pos, end = 0, len(data)
        if self._skip:
            pos = min(self._skip, end)
            self._skip -= pos
        pieces: list[Any] = []
        # The hot path of every push: one struct call in and one out per tag, no copies
        # beyond the slice of its payload (see message_bytes for what it spells out).
        stream_word = self._stream_word
        while pos + 11 <= end:
            word, stamp = _TWO_WORDS.unpack_from(data, pos)
            size = word & 0xFFFFFF
            stop = pos + 11 + size
            if stop + 4 > end:
                break
            kind = word >> 24
            timestamp = (stamp >> 8) | ((stamp & 0xFF) << 24)
            if size > CHUNK_SIZE or timestamp >= _EXTENDED or kind == SCRIPT_DATA:
                pieces += self._message(kind, timestamp, data[pos + 11 : stop])
            else:
                basic = _VIDEO_WORD if kind == VIDEO else _AUDIO_WORD
                pieces.append(_HEADER.pack(basic | timestamp, (size << 8) | kind, stream_word))
                pieces.append(data[pos + 11 : stop])
            pos = stop + 4
        self._pending = data[pos:]
        if pieces:
            self._send(sock, b"".join(pieces))
        return given

    def _message(self, kind: int, timestamp: int, payload: bytes) -> list[Any]:
        """A tag's message the long way: chunked, or past 4.6 hours, or script data."""
        if kind == SCRIPT_DATA and payload.startswith(_ON_METADATA):
            payload = _SET_DATA_FRAME + payload  # what FFmpeg's client sends, too
        chunk_stream = VIDEO_STREAM if kind == VIDEO else AUDIO_STREAM
        return message_bytes(chunk_stream, kind, self._stream_id, timestamp, payload)

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
        with self._lock:
            sock, self._socket = self._socket, None
        if sock is None:
            return
        try:
            if not self._broken:
                sock.settimeout(CLOSE_TIMEOUT)
                sock.sendall(
                    _command("FCUnpublish", self._transactions + 1, None, self.address.stream)
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
