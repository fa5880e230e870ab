"""Sources that misbehave, or sit where they should not, served over HTTP by the test
process."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def send_head_of(self, data: bytes) -> int:
        """The answer's head for ``data`` as the request's Range asks; where the body starts."""
        asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(asked.group(1)) if asked else 0
        self.send_response(206 if asked else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        return start

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@contextmanager
def _server(handler: type[_Handler], host: str = "127.0.0.1") -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def stalling_source(data: bytes, stall_at: float) -> Iterator[str]:
    """The URL of an HTTP server of ``data`` that sends only its first ``stall_at`` part
    (0–1), then holds every connection open without sending more (a storage server that
    hangs) until the block ends, when it sends the rest (so that no read outlives it)."""
    cut = int(len(data) * stall_at)
    released = threading.Event()

    class Handler(_Handler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            start = self.send_head_of(data)
            try:
                self.wfile.write(data[start : max(start, cut)])
                self.wfile.flush()
                released.wait(30)
                self.wfile.write(data[max(start, cut) :])
            except OSError:
                return

    with _server(Handler) as server:
        try:
            yield f"http://127.0.0.1:{server.server_port}/clip.mp4"
        finally:
            released.set()


@contextmanager
def serving(files: dict[str, bytes], host: str = "127.0.0.1") -> Iterator[str]:
    """The base URL of an HTTP server of ``files`` (path → bytes) on ``host``; a path whose
    value starts with ``redirect:`` answers 302 to the rest. Ranges are honoured."""

    class Handler(_Handler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            data = files.get(self.path.split("?", 1)[0])
            if data is None:
                self.send_error(404)
                return
            if data.startswith(b"redirect:"):
                self.send_response(302)
                self.send_header("Location", data.removeprefix(b"redirect:").decode())
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = self.send_head_of(data)
            try:
                self.wfile.write(data[start:])
            except OSError:
                return

    with _server(Handler, host) as server:
        yield f"http://{host}:{server.server_port}"
