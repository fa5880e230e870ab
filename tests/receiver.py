"""A callback receiver as a classroom backend runs one: its own process, verifying every
delivery with the Standard Webhooks library, logging what it got, and misbehaving on cue.

    python -m tests.receiver --port P --log FILE --secret S [--fail-for SECONDS]
        [--hang-first N] [--hang-seconds SECONDS]

``--fail-for``: answer 500 to everything during the first SECONDS after start.
``--hang-first``: then hold the first N requests for ``--hang-seconds`` before answering
(longer than the sender's timeout: a receiver that times out).

Every request that gets a 2xx is first appended to FILE as one JSON line: the headers that
matter, the body, whether its signature verified, and when. Requests answered 500 or held
are logged too (``answer``), so a test sees that the misbehaviour happened. Killing the
process (kill -9) and starting it again with the same FILE is a receiver restart.

:class:`Receiver` starts, kills and restarts it for a test and reads FILE back.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class _Behaviour:
    secret: str
    log: Path
    fail_until: float
    hang_left: int
    hang_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_for(self) -> str:
        with self.lock:
            if time.monotonic() < self.fail_until:
                return "500"
            if self.hang_left > 0:
                self.hang_left -= 1
                return "hang"
            return "ok"

    def write(self, entry: dict[str, Any]) -> None:
        with self.lock, self.log.open("a") as out:
            out.write(json.dumps(entry) + "\n")


class _Handler(BaseHTTPRequestHandler):
    behaviour: _Behaviour

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        # A receiver's whole job: the library's verify, with the secret as base64.
        webhook = Webhook(base64.b64encode(self.behaviour.secret.encode()).decode())
        try:
            webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        answer = self.behaviour.answer_for()
        entry = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "verified": verified,
            "answer": answer,
            "at": time.time(),
            "body": json.loads(body),
        }
        self.behaviour.write(entry)
        if answer == "hang":
            time.sleep(self.behaviour.hang_seconds)
        self.send_response(500 if answer == "500" else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--fail-for", type=float, default=0.0)
    parser.add_argument("--hang-first", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=3.0)
    args = parser.parse_args()
    _Handler.behaviour = _Behaviour(
        args.secret,
        args.log,
        time.monotonic() + args.fail_for,
        args.hang_first,
        args.hang_seconds,
    )
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    print("listening", flush=True)
    server.serve_forever()


class Receiver:
    """The receiver process for a test: start, kill -9, start again; what it logged."""

    def __init__(self, port: int, log: Path, secret: str) -> None:
        self.port = port
        self.log = log
        self.secret = secret
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/roomcast-events?token=receiver-token"

    def start(self, fail_for: float = 0.0, hang_first: int = 0, hang_seconds: float = 3.0) -> None:
        from devstack.ports import wait_for_port  # noqa: PLC0415

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.receiver", "--port", str(self.port),
             "--log", str(self.log), "--secret", self.secret, "--fail-for", str(fail_for),
             "--hang-first", str(hang_first), "--hang-seconds", str(hang_seconds)],
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        wait_for_port("127.0.0.1", self.port, 15)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def entries(self) -> list[dict[str, Any]]:
        """Every request logged so far, in arrival order."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def acknowledged(self, request_id: str) -> list[dict[str, Any]]:
        """The events of push ``request_id`` answered with a 2xx, in arrival order."""
        return [
            e["body"]
            for e in self.entries()
            if e["answer"] != "500" and e["body"].get("RequestId") == request_id
        ]


if __name__ == "__main__":
    main()
