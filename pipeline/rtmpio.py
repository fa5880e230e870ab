"""The room connection itself: FFmpeg's RTMP client, driven so that it never holds the GIL.

PyAV opens an output URL inside ``start_encoding()`` while holding the GIL, and an RTMP
publish takes several round trips to set up (about 180 ms to a local nginx-rtmp, more to a
distant room). In a worker that carries many pushes as threads, every other push would stall
for that long each time one starts or reconnects. So the connection is opened here through
FFmpeg's own ``avio_open2`` (the same library PyAV loaded), called with ctypes, which
releases the GIL for the length of each call; PyAV's FLV muxer then writes into it as into a
file object. This also lets the connection take the options PyAV's output path cannot pass:
``tcp_nodelay`` (the set-up falls to about 60 ms) and ``rw_timeout``, which bounds the
connect and every write so that a room that stops reading cannot hang a push.

Only FFmpeg's public, long-stable ``AVIOContext`` fields up to ``error`` are read, and, to
find the TCP socket under the connection, two leading fields of FFmpeg's RTMP and TCP
contexts, each checked by its class name first (:func:`_tcp_socket`).

Each write is corked (Linux's ``TCP_CORK``) and then let go: FFmpeg's RTMP client sends
every RTMP chunk, every 1-byte marker between two chunks and every message header with a
``send()`` of its own, and with ``tcp_nodelay`` each of those would leave as a TCP segment
of its own, one byte long for the markers (3172 segments in ten seconds of 720p video to
the local room, against 311 corked; ffmpeg's command line, with Nagle's algorithm, sends
1054). A corked write leaves as full segments the moment it is let go, so nothing waits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import socket
import struct
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)

AVIO_FLAG_WRITE = 2
#: Writes go straight to the protocol, not through a buffer that would need a flush call:
#: one foreign call (one GIL hand-over) per packet instead of two.
AVIO_FLAG_DIRECT = 0x8000
#: Linux only; elsewhere writes leave as FFmpeg sends them.
_CORKABLE = hasattr(socket, "TCP_CORK") and hasattr(socket, "TCP_INFO")
#: ``tcpi_notsent_bytes`` … ``tcpi_data_segs_out`` in Linux's ``struct tcp_info`` (Linux 4.6).
_TCP_INFO_TAIL = struct.Struct("=IIII")
_TCP_INFO_TAIL_OFFSET = 144
_POINTER_SIZE = ctypes.sizeof(ctypes.c_void_p)


class _AVIOContext(ctypes.Structure):
    """The leading public fields of FFmpeg's ``AVIOContext`` (avio.h, unchanged since 4.0)."""

    _fields_ = [
        ("av_class", ctypes.c_void_p),
        ("buffer", ctypes.c_void_p),
        ("buffer_size", ctypes.c_int),
        ("buf_ptr", ctypes.c_void_p),
        ("buf_end", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("read_packet", ctypes.c_void_p),
        ("write_packet", ctypes.c_void_p),
        ("seek", ctypes.c_void_p),
        ("pos", ctypes.c_int64),
        ("eof_reached", ctypes.c_int),
        ("error", ctypes.c_int),
    ]


_Context = ctypes.POINTER(_AVIOContext)


def _loaded_library(stem: str) -> str:
    """Path of the ``lib<stem>`` this process loaded with PyAV (bundled or the system's)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1]
        if f"/lib{stem}" in path and ".so" in path:
            return path
    found = ctypes.util.find_library(stem)
    if found is None:
        raise OSError(f"cannot find lib{stem}, which PyAV {av.__version__} should have loaded")
    return found


_INT, _TEXT, _POINTER = ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p
#: The functions used here: library → name → (return type, argument types).
_SIGNATURES: dict[str, dict[str, tuple[Any, list[Any]]]] = {
    "avformat": {
        "avio_open2": (
            _INT,
            [ctypes.POINTER(_Context), _TEXT, _INT, _POINTER, ctypes.POINTER(_POINTER)],
        ),
        "avio_write": (None, [_Context, _TEXT, _INT]),
        "avio_closep": (_INT, [ctypes.POINTER(_Context)]),
    },
    "avutil": {
        "av_dict_set": (_INT, [ctypes.POINTER(_POINTER), _TEXT, _TEXT, _INT]),
        "av_dict_free": (None, [ctypes.POINTER(_POINTER)]),
        "av_strerror": (_INT, [_INT, _TEXT, ctypes.c_size_t]),
        "av_opt_child_next": (_POINTER, [_POINTER, _POINTER]),
    },
}


@cache
def _ffmpeg() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """libavformat and libavutil with the signatures used here (CDLL: calls drop the GIL)."""
    libraries = []
    for stem, functions in _SIGNATURES.items():
        library = ctypes.CDLL(_loaded_library(stem))
        for name, (restype, argtypes) in functions.items():
            function = getattr(library, name)
            function.restype, function.argtypes = restype, argtypes
        libraries.append(library)
    avformat, avutil = libraries
    return avformat, avutil


def _error(code: int) -> OSError:
    """An FFmpeg error code as an OSError with FFmpeg's message."""
    _, avutil = _ffmpeg()
    message = ctypes.create_string_buffer(256)
    avutil.av_strerror(code, message, len(message))
    errno = -code if 0 < -code < 4096 else 0
    return OSError(errno, message.value.decode(errors="replace") or f"FFmpeg error {code}")


def _class_name(address: int | None) -> bytes | None:
    """The ``AVClass`` name of the FFmpeg object at ``address`` (None for a null pointer)."""
    if not address:
        return None
    av_class = ctypes.c_void_p.from_address(address).value
    if not av_class:
        return None
    return ctypes.c_char_p.from_address(av_class).value


def _child(address: int | None, name: bytes) -> int | None:
    """The AVOption child of the FFmpeg object at ``address``, if its class is ``name``."""
    if not address:
        return None
    _, avutil = _ffmpeg()
    found: int | None = avutil.av_opt_child_next(address, None)
    return found if _class_name(found) == name else None


def _tcp_socket(context: Any) -> socket.socket | None:
    """A duplicate of the TCP socket under an ``rtmp://`` connection; None if not found.

    FFmpeg keeps the socket to itself. The way down is public API as far as it goes: the
    AVOption child of an ``AVIOContext`` is its ``URLContext``, whose child is the
    protocol's own context. From RTMP's context to its TCP connection it relies on the first
    two fields of ``RTMPContext`` (``class``, ``stream``) and of ``TCPContext`` (``class``,
    ``fd``), unchanged since FFmpeg 1.1 (2012). Every step checks the class name of what it
    reached before going further, so another layout, ``rtmps`` or ``rtmpt`` finds nothing (and
    the connection is written uncorked) rather than a wrong descriptor.
    """
    if not _CORKABLE:
        return None
    avio = ctypes.cast(context, ctypes.c_void_p).value
    url = _child(avio, b"URLContext") if _class_name(avio) == b"AVIOContext" else None
    rtmp = _child(url, b"rtmp")
    if rtmp is None:
        return None
    stream = ctypes.c_void_p.from_address(rtmp + _POINTER_SIZE).value
    tcp = _child(stream, b"tcp") if _class_name(stream) == b"URLContext" else None
    if tcp is None:
        return None
    duplicate = os.dup(ctypes.c_int.from_address(tcp + _POINTER_SIZE).value)
    try:
        found = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return None
    if found.type != socket.SOCK_STREAM or found.family not in (socket.AF_INET, socket.AF_INET6):
        found.close()
        return None
    return found


@dataclass(frozen=True)
class TcpStats:
    """What Linux says about a room connection's socket."""

    data_segments: int  #: segments carrying data sent so far
    unsent: int  #: bytes written but not sent yet
    corked: bool  #: whether ``TCP_CORK`` holds partial segments back now


def shut_down(sock: socket.socket | None) -> None:
    """End a connection both ways now (the peer sees it go); nothing if it has gone already.

    Not a close: the descriptor stays its owner's, so that a call from another thread never
    reaches a number reused meanwhile.
    """
    if sock is not None:
        try:
            # The plain socket's shutdown, also under TLS: SSLSocket's would first drop its
            # TLS state, under a write another thread may be making.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # the connection had already gone


class RtmpConnection:
    """A write-only FFmpeg I/O connection to an ``rtmp://`` URL, used as a file by PyAV.

    FFmpeg's RTMP protocol takes an FLV byte stream and sends its tags as RTMP messages, so
    the FLV muxer's output goes through unchanged. Every write goes out at once (direct
    mode): it is a packet due now.
    """

    #: Why this client publishes although roomcast's was asked for (see sink.connect_room).
    fallback: str | None = None

    def __init__(self, url: str, timeout: float) -> None:
        """Connect and publish; raises OSError (with FFmpeg's reason) if the room refuses."""
        avformat, avutil = _ffmpeg()
        self._context = _Context()
        options = ctypes.c_void_p()
        for key, value in (("tcp_nodelay", "1"), ("rw_timeout", str(int(timeout * 1e6)))):
            avutil.av_dict_set(ctypes.byref(options), key.encode(), value.encode(), 0)
        try:
            code = avformat.avio_open2(
                ctypes.byref(self._context),
                os.fsencode(url),
                AVIO_FLAG_WRITE | AVIO_FLAG_DIRECT,
                None,
                ctypes.byref(options),
            )
        finally:
            avutil.av_dict_free(ctypes.byref(options))
        if code < 0:
            raise _error(code)
        self._avio_write = avformat.avio_write  # looked up once, not per packet
        # Our own descriptor for FFmpeg's socket: closing it never closes FFmpeg's.
        self._socket: socket.socket | None = None
        # Held while the socket is shut down from another thread (``cut``) or closed, so
        # that a cut never reaches a descriptor number already reused for something else.
        self._socket_lock = threading.Lock()
        try:
            self._socket = _tcp_socket(self._context)
        except (OSError, ValueError, ctypes.ArgumentError):  # written uncorked, then
            log.warning("the room connection's socket was not found", exc_info=True)

    @property
    def coalesced(self) -> bool:
        """Whether each write leaves as full TCP segments (the socket was found; Linux)."""
        return self._socket is not None

    def tcp_stats(self) -> TcpStats | None:
        """The socket's counters (Linux 4.6 and later); None if the socket is unknown."""
        if self._socket is None:
            return None
        size = _TCP_INFO_TAIL_OFFSET + _TCP_INFO_TAIL.size
        info = self._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, size)
        if len(info) < size:
            return None
        unsent, _, _, data_segments = _TCP_INFO_TAIL.unpack_from(info, _TCP_INFO_TAIL_OFFSET)
        corked = self._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
        return TcpStats(data_segments=data_segments, unsent=unsent, corked=bool(corked))

    def write(self, data: bytes) -> int:
        """Send ``data`` now; raises OSError once the connection has failed."""
        if not self._context:
            raise OSError("the room connection is closed")
        corked = self._socket
        if corked is None:
            self._avio_write(self._context, data, len(data))
        else:
            corked.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            try:
                self._avio_write(self._context, data, len(data))
            finally:
                # Let go: what is held leaves now, not after the kernel's 200 ms. This call
                # keeps the GIL, but it never blocks: it hands the tail to the network stack.
                corked.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        error = self._context.contents.error
        if error < 0:
            raise _error(error)
        return len(data)

    def cut(self) -> None:
        """End the connection now, from any thread: the room sees the user leave at once.

        For a push whose own thread is held up where a stop cannot reach it. Only the TCP
        connection is shut down: FFmpeg's descriptor and context stay as they are, so
        nothing is freed under the thread that uses them. Its next write fails, and
        ``close()`` releases the rest. Does nothing where the socket is unknown (not Linux,
        ``rtmps``).
        """
        with self._socket_lock:
            shut_down(self._socket)

    def close(self) -> None:
        """End the publish (the room sees the user leave) and release the connection."""
        with self._socket_lock:
            if self._socket is not None:
                self._socket.close()  # first: FFmpeg's close is the one that ends the connection
                self._socket = None
        if self._context:
            avformat, _ = _ffmpeg()
            avformat.avio_closep(ctypes.byref(self._context))
