"""The WHIP publisher process: a push's FLV stream in on stdin, WebRTC out over WHIP.

Run by :class:`pipeline.whip.WhipConnection` as ``python -m pipeline.whip_publisher``. The
first line on stdin is a JSON object (``url``, ``token``, ``cert``, ``key``,
``handshake_ms``); FLV bytes follow, paced by the push. The session opens on the video's
codec configuration, in the stream's header, before any media. Pictures go out as they are (H.264,
which the push made WebRTC-ready: constrained baseline, no B-frames; the muxer sends the
parameter sets before each keyframe); sound is decoded from AAC and encoded to Opus, 48 kHz
stereo, as WebRTC requires, or sent as it is when it comes as Opus already (a fan-out
encodes it once for all its WHIP rooms, :mod:`pipeline.opus`). ICE, DTLS and SRTP are FFmpeg's
WHIP muxer's (PyAV): no WebRTC code of roomcast's own.

A process of its own because FFmpeg's WHIP muxer holds the GIL through its handshake and can
block for good in ``av_write_trailer`` once the far end has closed the session: a stuck
publisher is killed by its parent, and takes no other push with it. It exits 0 after a
clean end (EOF, then the WHIP DELETE), and otherwise 1 with one line on stderr saying why.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import signal
import sys
from fractions import Fraction
from typing import Any, BinaryIO

import av
import av.container
import av.stream

from pipeline.h264 import first_sps, sps_size
from pipeline.opus import BIT_RATE, OPUS_FRAME, OpusEncoder, is_opus, opus_packet

_AUDIO, _VIDEO = 8, 9
#: An FLV file header with audio and video, and its first previous-tag-size.
_FLV_HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
_MS = Fraction(1, 1000)
_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High"}
#: How the publisher exits when a new session would fare no better (the offer refused).
REFUSED = 2
#: What starts the publisher's reason for failing, on stderr.
REASON = "the WHIP endpoint:"
#: How long the session's end (the WHIP DELETE) may take before the publisher gives up.
CLOSE_SECONDS = 5
_PR_SET_PDEATHSIG = 1
#: Sound this long without a picture's configuration: the stream has no video.
NO_PICTURES_MS = 2000
#: What the publisher says on stderr once its session is open.
SESSION_OPEN = "whip: session open"


def _tags(stream: BinaryIO) -> Any:
    """(type, timestamp ms, body, the whole tag) of each FLV tag on ``stream``; a new FLV
    header (a fresh muxer on the same publish) is skipped."""
    while True:
        head = stream.read(11)
        if len(head) < 11:
            return
        if head[:3] == b"FLV":
            stream.read(2)  # the rest of the 9-byte header and its previous-tag-size
            continue
        size = int.from_bytes(head[1:4], "big")
        stamp = int.from_bytes(head[4:7], "big") | head[7] << 24
        body = stream.read(size)
        trailer = stream.read(4)
        if len(body) < size:
            return
        yield head[0] & 0x1F, stamp, body, head + body + trailer


class NoPictures(ValueError):
    """The stream carries no video: nothing a WHIP session could be opened for."""


#: Failures a new session would not mend: the endpoint refused the offer, or no video.
_REFUSALS = (
    NoPictures,
    av.error.HTTPUnauthorizedError,
    av.error.HTTPForbiddenError,
    av.error.HTTPNotFoundError,
    av.error.HTTPBadRequestError,
    av.error.HTTPOtherClientError,
)


def _profile_name(record: bytes) -> str:
    """The H.264 profile an avcC names, as FFmpeg calls it."""
    if record[1] == 66 and record[2] & 0x40:  # constraint_set1_flag
        return "Constrained Baseline"
    return _PROFILES.get(record[1], "High")


class Publisher:
    """One WHIP session fed FLV tags (:func:`_tags`)."""

    def __init__(self, config: dict[str, Any], has_audio: bool = True) -> None:
        self._config = config
        self._has_audio = has_audio
        self._out: av.container.OutputContainer | None = None
        self._video: av.stream.Stream | None = None
        self._audio: Any = None
        self._started = False
        self._encoder = OpusEncoder()
        #: Where the next Opus packet fed as one is expected (:data:`OPUS_TIME`).
        self._next_opus: int | None = None

    def feed(self, kind: int, stamp: int, body: bytes, tag: bytes) -> None:
        """Act on one FLV tag (``tag``: all of it)."""
        if kind == _VIDEO and len(body) > 5 and body[0] & 0x0F == 7:
            self._picture(stamp, body, tag)
        elif kind == _AUDIO and len(body) > 2 and body[0] >> 4 == 10:
            self._sound(stamp, body)
        elif kind == _AUDIO and is_opus(body):
            self._opus(stamp, body)

    def _picture(self, stamp: int, body: bytes, tag: bytes) -> None:
        if body[1] == 0:  # AVC sequence header: the session opens on it
            if self._out is None:
                self._open(tag, sps_size(first_sps(body[5:])))
            return
        if body[1] != 1 or self._out is None:
            return
        keyframe = body[0] >> 4 == 1
        if not self._started:
            if not keyframe:
                return  # WebRTC viewers start at a keyframe
            self._started = True
        composition = int.from_bytes(body[2:5], "big", signed=True)
        packet = av.Packet(body[5:])
        packet.dts, packet.pts, packet.time_base = stamp, stamp + composition, _MS
        packet.is_keyframe = keyframe
        self._mux(packet, self._video)

    def _sound(self, stamp: int, body: bytes) -> None:
        if body[1] == 0:  # AAC AudioSpecificConfig
            self._encoder.configure(body[2:])
            return
        if self._sending_sound(stamp) and self._encoder.configured:
            for packet in self._encoder.encode(stamp, body[2:]):
                self._mux(packet, self._audio)

    def _opus(self, stamp: int, body: bytes) -> None:
        """Sound encoded already: sent as it is, numbered on from the packet before unless
        the sound jumped (its tags carry milliseconds, its packets count samples)."""
        packet = opus_packet(stamp, body)
        if packet is None or not self._sending_sound(stamp):
            return
        pts, expected = packet.pts, self._next_opus
        assert pts is not None  # opus_packet numbers it
        if expected is not None and abs(pts - expected) < OPUS_FRAME:
            packet.pts = packet.dts = pts = expected
        self._next_opus = pts + OPUS_FRAME
        self._mux(packet, self._audio)

    def _sending_sound(self, stamp: int) -> bool:
        """Whether sound at ``stamp`` goes out (not before the session opens)."""
        if self._out is None and stamp > NO_PICTURES_MS:
            raise NoPictures("the stream has no pictures: a push over WHIP needs video")
        return self._out is not None and self._audio is not None

    def _open(self, configuration: bytes, size: tuple[int, int]) -> None:
        """Open the WHIP session (HTTP offer, ICE, DTLS) on the video's configuration (its
        FLV tag): the offer names its profile, and the muxer sends its parameter sets."""
        config = self._config
        options = {
            "handshake_timeout": str(config.get("handshake_ms", 5000)),
            "whip_flags": "dtls_active",  # FFmpeg leads DTLS: a third of a second, not 1.1 s
            "cert_file": config["cert"],
            "key_file": config["key"],
            # Pictures wait for sound to interleave with at most this long (µs; FFmpeg's
            # default is 10 s): a gap in the sound must not stall the pictures.
            "max_interleave_delta": "100000",
        }
        if config.get("token"):
            options["authorization"] = config["token"]
        with av.open(io.BytesIO(_FLV_HEADER + configuration), format="flv") as template:
            out = av.open(config["url"], mode="w", format="whip", container_options=options)
            video = out.add_stream_from_template(template.streams.video[0])
        # The demuxer learns these from a picture; the offer needs them now, from the avcC.
        record = configuration[16:-4]
        video.codec_context.extradata = record
        video.codec_context.width, video.codec_context.height = size
        video.codec_context.profile = _profile_name(record)
        video.codec_context.level = record[3]
        audio = None
        if self._has_audio:  # a stream that never gets a packet would hold pictures back
            audio = out.add_stream("libopus", rate=48_000, layout="stereo")
            audio.codec_context.bit_rate = BIT_RATE  # the stream's encoder only sets the offer
        out.start_encoding()
        self._out, self._video, self._audio = out, video, audio
        print(SESSION_OPEN, file=sys.stderr, flush=True)

    def _mux(self, packet: av.Packet, stream: Any) -> None:
        assert self._out is not None
        packet.stream = stream
        self._out.mux(packet)

    def close(self) -> None:
        """End the session (the WHIP DELETE)."""
        if self._out is not None:
            if self._audio is not None:
                for packet in self._encoder.flush():
                    self._mux(packet, self._audio)
            self._out.close()


def _die_with_parent() -> None:
    """Linux: end when the worker that started this publisher dies (it cannot kill it)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main() -> int:
    """Publish stdin's FLV stream to the WHIP endpoint its first line names."""
    _die_with_parent()
    stdin = sys.stdin.buffer
    config = json.loads(stdin.readline())
    if config.get("parent", os.getppid()) != os.getppid():
        return 1  # the worker died before this publisher asked to die with it
    publisher = Publisher(config, has_audio=_has_audio(stdin))
    try:
        for kind, stamp, body, tag in _tags(stdin):
            publisher.feed(kind, stamp, body, tag)
        # FFmpeg's muxer may block for good in its trailer once the far end has gone.
        signal.alarm(CLOSE_SECONDS)
        publisher.close()
    except _REFUSALS as exc:
        _say(exc)
        return REFUSED
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        _say(exc)
        return 1
    return 0


def _has_audio(stream: BinaryIO) -> bool:
    """Whether the FLV header ahead on ``stream`` announces sound (its flags byte)."""
    head = stream.peek(5)  # type: ignore[attr-defined]
    return len(head) < 5 or bool(head[4] & 0x04)


def _say(exc: BaseException) -> None:
    reason = getattr(exc, "strerror", None) or str(exc)
    print(f"{REASON} {reason}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
