"""A room reached over WHIP (WebRTC-HTTP ingestion): sub-second delay instead of RTMP's.

A push names a WHIP endpoint as its room URL, ``whip+https://host/path`` (or
``whip+http://``), with the bearer token, if the endpoint wants one, in the fragment:
``…#bearer=TOKEN`` (:func:`whip_url`). :class:`WhipConnection` is then the push's
:class:`pipeline.sink.RoomConnection`: it takes the same FLV bytes an RTMP room gets, paced
the same way, so everything above it (remux or re-encode, switching, stop, events) works the
same over both. It hands them to a publisher process of its own
(:mod:`pipeline.whip_publisher`), which speaks WebRTC through FFmpeg's WHIP muxer.

The video the push makes for a WHIP room is H.264 constrained baseline without B-frames
(:data:`WHIP_PROFILE`), which every WebRTC receiver decodes; sound is sent as Opus.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jobs.errors import RoomUnreachable

from .flv import SinceKeyframe, has_video_config
from .whip_publisher import REASON, REFUSED, SESSION_OPEN

SCHEMES = ("whip+http", "whip+https")
#: The H.264 profile WebRTC receivers all take (aiortc, browsers, SFUs): constrained baseline.
WHIP_PROFILE = "baseline"
#: How long the publisher may take to end its session (the WHIP DELETE) before it is killed.
CLOSE_TIMEOUT = 3.0
#: A stream's header is a few hundred bytes: past this, media flows and nothing waits.
HEADER_BYTES = 64 << 10


def is_whip(url: str) -> bool:
    """Whether ``url`` names a WHIP endpoint (``whip+http(s)://``)."""
    return url.split(":", 1)[0].lower() in SCHEMES


def whip_url(endpoint: str, token: str | None = None) -> str:
    """The room URL of WHIP endpoint ``endpoint`` (``https://…``, no fragment), its bearer
    ``token`` in the fragment."""
    return f"whip+{endpoint}" + (f"#bearer={quote(token, safe='')}" if token else "")


def endpoint_of(url: str) -> tuple[str, str | None]:
    """The endpoint (``https://…``) and bearer token of a WHIP room URL."""
    endpoint, _, fragment = url.split("+", 1)[1].partition("#")
    token = unquote(fragment.removeprefix("bearer=")) if fragment.startswith("bearer=") else None
    return endpoint, token


@cache
def dtls_identity() -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate and key for DTLS (PEM files, made once per
    process): FFmpeg's own is P-224, which OpenSSL-based peers (aiortc) refuse."""
    from cryptography import x509  # noqa: PLC0415 - only WHIP pushes need it
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roomcast")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="roomcast-dtls-"))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return str(cert_file), str(key_file)


class _Spawner:
    """Starts every publisher process from one thread that lives as long as this process.

    A publisher asks Linux to kill it when its parent dies (PR_SET_PDEATHSIG), and Linux
    takes "parent" to be the thread that started it: a publisher started by a fan-out's
    short-lived connect thread would be killed as that thread ends.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._pid = 0

    def popen(self, args: list[str], **options: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen(args, **options)``, run on the spawner's thread."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked worker process
                self._requests = queue.SimpleQueue()
                threading.Thread(
                    target=self._run, name="roomcast-whip-spawner", daemon=True
                ).start()
                self._pid = os.getpid()
            requests = self._requests
        started: Future[subprocess.Popen[bytes]] = Future()
        requests.put((args, options, started))
        return started.result()

    def _run(self) -> None:
        requests = self._requests
        while True:
            args, options, started = requests.get()
            try:
                started.set_result(subprocess.Popen(args, **options))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                started.set_exception(exc)


_SPAWNER = _Spawner()


class WhipConnection:
    """A publish to a WHIP endpoint, fed FLV bytes (:class:`pipeline.sink.RoomConnection`).

    The session opens on the stream's header (``write`` waits for it). A refusal (the
    endpoint refuses the offer, the stream has no pictures) raises RoomUnreachable, which
    fails the push; any other failure an OSError with the publisher's reason, and the sink
    reconnects as for RTMP.
    """

    #: A fan-out hands a WHIP room its sound as Opus, encoded once for all of them
    #: (:mod:`pipeline.opus`); a push of its own hands AAC, which the publisher re-encodes.
    wants_opus = True

    def __init__(self, url: str, timeout: float) -> None:
        endpoint, token = endpoint_of(url)
        cert, key = dtls_identity()
        self._timeout = timeout
        self._reason = ""
        self._lock = threading.Lock()
        #: The stream's first bytes, until its header is whole (then None).
        self._head: bytes | None = b""
        #: What ``offer`` could not hand on yet.
        self._pending = bytearray()
        #: What went out since the last keyframe, for the session that replaces this one.
        self._since_keyframe = SinceKeyframe()
        self._open = False
        self._opened = threading.Event()
        self._proc = _SPAWNER.popen(
            [sys.executable, "-m", "pipeline.whip_publisher"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._reader = threading.Thread(
            target=self._read_reasons, name="roomcast-whip-log", daemon=True
        )
        assert self._proc.stdin is not None and self._proc.stderr is not None
        self._stdin = self._proc.stdin.fileno()
        self._writable = selectors.DefaultSelector()
        self._writable.register(self._stdin, selectors.EVENT_WRITE)
        self._reader.start()
        config = {
            "url": endpoint,
            "token": token,
            "cert": cert,
            "key": key,
            "handshake_ms": int(timeout * 1000),
            "parent": os.getpid(),
        }
        os.set_blocking(self._stdin, False)
        self._send(json.dumps(config).encode() + b"\n")

    def _read_reasons(self) -> None:
        """Note when the session opens, and keep the publisher's last line: the reason it
        gives when it fails."""
        assert self._proc.stderr is not None
        with self._proc.stderr:
            for line in self._proc.stderr:
                text = line.decode(errors="replace").strip()
                if text == SESSION_OPEN:
                    self._open = True
                    self._opened.set()
                elif text.startswith(REASON):
                    self._reason = text
        self._opened.set()  # ended: whoever waits for the session hears it

    def write(self, data: bytes) -> int:
        """Hand FLV bytes to the publisher; OSError once it has failed or stalls for longer
        than the room timeout.

        The write that completes the stream's header waits until the session is open: the
        publish fails or reconnects there, on the push's own thread, as an RTMP connect does.
        """
        with self._lock:
            self._send(data)
            self._since_keyframe.feed(data)
            if self._head is not None:
                self._head += data
                if has_video_config(self._head):
                    self._head = None
                    self._await_session()
                elif len(self._head) > HEADER_BYTES:
                    self._head = None  # media already: never waited for here
        return len(data)

    def offer(self, data: bytes) -> int:
        """Hand FLV bytes on without waiting (a fan-out's room, :mod:`pipeline.fanout`): what
        the publisher cannot take yet is kept for the next offer. Returns the bytes still
        kept; raises as ``write`` once the publisher has ended (RoomUnreachable: refused).

        The session is not waited for: until it opens, what is offered waits here.
        """
        with self._lock:
            self._pending += data
            if self._proc.poll() is not None:
                raise self._failed()
            if self._pending:
                try:
                    sent = os.write(self._stdin, self._pending)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    raise self._failed() from None
                del self._pending[:sent]
            return len(self._pending)

    def _await_session(self) -> None:
        if not self._opened.wait(self._timeout + 1.0):
            self._proc.kill()
            raise OSError(f"the WHIP session did not open within {self._timeout:g} s")
        if not self._open:
            raise self._failed()

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self._timeout
        while view:
            if self._proc.poll() is not None:
                raise self._failed()
            try:
                sent = os.write(self._stdin, view)
            except BlockingIOError:
                sent = 0
            except (BrokenPipeError, OSError):
                raise self._failed() from None
            view = view[sent:]
            if view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OSError(f"the WHIP publisher took nothing for {self._timeout:g} s")
                self._writable.select(min(left, 0.1))

    def _failed(self) -> Exception:
        """Why the publisher ended: a refusal (its offer or its stream was refused, which a
        new session would not change) fails the push, anything else may be reconnected."""
        try:
            self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(1.0)  # its last line
        reason = self._reason or f"the WHIP publisher ended ({self._proc.returncode})"
        if self._proc.returncode == REFUSED:
            return RoomUnreachable(reason)
        return OSError(reason)

    def since_keyframe(self) -> bytes:
        """The FLV tags this publish carried since its last keyframe: what a new session
        that replaces it sends first, so that its viewer does not wait for the next one
        (a WebRTC viewer's decoder starts at a keyframe)."""
        return self._since_keyframe.replay()

    def cut(self) -> None:
        """End the publish now, from any thread: the publisher is killed (no DELETE)."""
        self._proc.kill()

    def close(self) -> None:
        """End the session cleanly (the publisher sends the WHIP DELETE); a publisher that
        does not end in time is killed (FFmpeg's muxer may block for good)."""
        assert self._proc.stdin is not None
        with self._lock:
            pending, self._pending = bytes(self._pending), bytearray()
        try:
            if pending and self._proc.poll() is None:
                self._send(pending)  # the stream's end, which offer had kept
        except (OSError, RoomUnreachable):
            pass  # the publisher is gone: nothing to finish
        try:
            self._proc.stdin.close()
        except OSError:
            pass  # the publisher is gone already
        try:
            self._proc.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
