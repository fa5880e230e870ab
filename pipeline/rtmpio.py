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

Only FFmpeg's public, long-stable ``AVIOContext`` fields up to ``error`` are read.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path
from typing import Any

import av

AVIO_FLAG_WRITE = 2
#: Writes go straight to the protocol, not through a buffer that would need a flush call:
#: one foreign call (one GIL hand-over) per packet instead of two.
AVIO_FLAG_DIRECT = 0x8000


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


class RtmpConnection:
    """A write-only FFmpeg I/O connection to an ``rtmp://`` URL, used as a file by PyAV.

    FFmpeg's RTMP protocol takes an FLV byte stream and sends its tags as RTMP messages, so
    the FLV muxer's output goes through unchanged. Every write goes out at once (direct
    mode): it is a packet due now.
    """

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

    def write(self, data: bytes) -> int:
        """Send ``data`` now; raises OSError once the connection has failed."""
        if not self._context:
            raise OSError("the room connection is closed")
        self._avio_write(self._context, data, len(data))
        error = self._context.contents.error
        if error < 0:
            raise _error(error)
        return len(data)

    def close(self) -> None:
        """End the publish (the room sees the user leave) and release the connection."""
        if self._context:
            avformat, _ = _ffmpeg()
            avformat.avio_closep(ctypes.byref(self._context))
