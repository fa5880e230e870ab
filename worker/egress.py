"""The workers' egress guard: an HTTP proxy on loopback through which FFmpeg opens every
http(s) connection of a source, so the SSRF guard judges each one as it is made.

Checking a URL before FFmpeg opens it leaves three ways around the check: FFmpeg resolves
the name again when it connects (a rebinding DNS answers differently the second time), it
follows HTTP redirects itself, and it opens an HLS playlist's segments itself. Through this
proxy (FFmpeg's ``http_proxy`` option, which https takes as a CONNECT tunnel and the HLS
demuxer passes on to every segment), each connection's host is resolved once, every
address is judged (``jobs.urlguard.blocked_reason``), and the proxy connects to the
address it judged: nothing is resolved twice.

One proxy per worker process, started with the first guarded push; it serves loopback
only. A refused connection is answered 403 and logged with its reason.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import socketserver
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from jobs.errors import SourceError
from jobs.redact import redact_url
from jobs.urlguard import IPNetwork, checked_addresses

log = logging.getLogger(__name__)

#: Seconds to connect to an upstream address, and a tunnel's idle limit.
CONNECT_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
_HEAD_LIMIT = 64 * 1024


class Refused(Exception):
    """The upstream address is not one the guard lets through."""


def connect_checked(host: str, port: int, allow: Iterable[IPNetwork]) -> socket.socket:
    """A connection to ``host`` at an address the guard lets through; Refused otherwise."""
    try:
        addresses = checked_addresses(host, port, allow)
    except SourceError as exc:
        raise Refused(exc.message) from None
    last: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            last = exc
    raise Refused(f"could not connect to {host!r}: {last}")


class _Handler(socketserver.BaseRequestHandler):
    server: GuardProxy
    target = ""

    def handle(self) -> None:
        client = self.request
        client.settimeout(IDLE_TIMEOUT)
        try:
            head = _read_head(client)
            method, target, version, rest = _parse(head)
            self.target = target
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = connect_checked(host.strip("[]"), int(port), self.server.allow)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    raise Refused("only absolute http:// requests and CONNECT are proxied")
                upstream = connect_checked(parts.hostname, parts.port or 80, self.server.allow)
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                line = f"{method} {path} {version}\r\n".encode()
                upstream.sendall(line + _one_request(rest))
        except Refused as exc:
            log.warning("egress refused: %s (%s)", exc, redact_url(self.target))
            _answer(client, 403, str(exc))
            return
        except (OSError, ValueError) as exc:
            _answer(client, 400, f"bad proxy request: {exc}")
            return
        with upstream:
            _splice(client, upstream)


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > _HEAD_LIMIT:
            raise ValueError("incomplete request head")
        data += chunk
    return data


def _parse(head: bytes) -> tuple[str, str, str, bytes]:
    line, _, rest = head.partition(b"\r\n")
    method, target, version = line.decode("latin-1").split(" ", 2)
    return method, target, version, rest


def _one_request(headers: bytes) -> bytes:
    """The headers with ``Connection: close``: a kept-alive connection could carry the next
    request, for another host, down this one's tunnel unchecked."""
    block, _, extra = headers.partition(b"\r\n\r\n")
    kept = [
        line
        for line in block.split(b"\r\n")
        if line
        and line.split(b":", 1)[0].strip().lower()
        not in (b"connection", b"proxy-connection", b"keep-alive")
    ]
    return b"\r\n".join([*kept, b"Connection: close", b"", b""]) + extra


def _answer(sock: socket.socket, status: int, reason: str) -> None:
    body = reason.encode()
    head = f"HTTP/1.1 {status} Refused by roomcast\r\nContent-Length: {len(body)}\r\n"
    try:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
    except OSError:
        pass


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or both stay idle too long."""
    peers = {a: b, b: a}
    # A selector, not select(): a worker carrying hundreds of pushes has descriptors past 1024.
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        while True:
            ready = selector.select(IDLE_TIMEOUT)
            if not ready or not _copy([key.fileobj for key, _ in ready], peers):
                return


def _copy(ready: list[Any], peers: dict[socket.socket, socket.socket]) -> bool:
    """Move what arrived to the other side; False once either side is done."""
    for sock in ready:
        try:
            data = sock.recv(65536)
            if not data:
                return False
            peers[sock].sendall(data)
        except OSError:
            return False
    return True


class GuardProxy(socketserver.ThreadingTCPServer):
    """The proxy: ``url`` is what FFmpeg's ``http_proxy`` option takes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, allow: Iterable[IPNetwork] = ()) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.allow = tuple(allow)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, name="egress-guard", daemon=True).start()


_proxy: GuardProxy | None = None
_lock = threading.Lock()


def egress_proxy(allow: Iterable[IPNetwork] = ()) -> str:
    """This process's guard proxy (started on first use); its URL for FFmpeg."""
    global _proxy
    with _lock:
        if _proxy is None:
            # FFmpeg still honours no_proxy with http_proxy set: a host listed there (often
            # localhost, 169.254.169.254, cluster suffixes) would be reached unguarded.
            for name in ("no_proxy", "NO_PROXY"):
                os.environ.pop(name, None)
            _proxy = GuardProxy(allow)
        return _proxy.url
