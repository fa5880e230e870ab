"""Sources that misbehave, served over HTTP by the test process."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def stalling_source(data: bytes, stall_at: float) -> Iterator[str]:
    """The URL of an HTTP server of ``data`` that sends only its first ``stall_at`` part
    (0–1), then holds every connection open without sending more (a storage server that
    hangs) until the block ends, when it sends the rest (so that no read outlives it)."""
    cut = int(len(data) * stall_at)
    released = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            asked = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            start = int(asked.group(1)) if asked else 0
            self.send_response(206 if asked else 200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            try:
                self.wfile.write(data[start : max(start, cut)])
                self.wfile.flush()
                released.wait(30)
                self.wfile.write(data[max(start, cut) :])
            except OSError:
                return

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/clip.mp4"
    finally:
        released.set()
        server.shutdown()
        server.server_close()
