"""The local room's publish check, like TRTC's: nginx-rtmp asks it before accepting a push.

nginx-rtmp's ``on_publish`` POSTs a form to this server before a publish starts: the
session (``app``, ``tcurl``, ``addr``, ``clientid``...), ``call=publish``, ``name`` (the
stream name, the room) and ``type``, followed by the publish URL's own query, here
``sdkappid``, ``userid`` and ``usersig``. A 2xx answer lets the publish through, any 4xx/5xx
refuses it (nginx drops the connection), and a 3xx with ``Location: <name>`` renames the
stream. ``on_publish_done`` reports the end. (nginx-rtmp's ngx_rtmp_notify_module.c.)

Checks, as TRTC does before a user enters a room: the SdkAppId is one this room has a key
for, the UserSig decodes, names this UserId and SdkAppId, has not expired, and its HMAC
verifies against the app's key (jobs/usersig.py).

Each user's stream stays apart: the first user publishing into a room gets the stream named
after the room (what ``LocalRoom.play_url(room)`` plays, as before); a second user in the same
room is renamed ``<room>__<userid>`` while the first is on. A user publishing twice at once is
refused by nginx ("already publishing"), much as TRTC lets one session per user.

A limit of the stand-in, not of TRTC: nginx-rtmp keeps at most 255 bytes of
``<room>?<query>``, and a real UserSig is 180-200 characters. A publish URL that long arrives
cut off, and is refused with a reason saying so: keep local room and user ids short.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from jobs.usersig import UserSigError, check

log = logging.getLogger(__name__)

#: nginx-rtmp's NGX_RTMP_MAX_NAME: the publish name and its query share this buffer,
#: which keeps one byte for its terminating NUL.
MAX_PUBLISH_NAME = 255
USER_SEPARATOR = "__"


@dataclass(frozen=True)
class Decision:
    """One publish the room was asked about, and what it said (no UserSig in it)."""

    room: str
    user: str
    accepted: bool
    reason: str
    stream: str | None = None


@dataclass
class _Publisher:
    room: str
    user: str
    stream: str


class PublishAuth:
    """A small HTTP server answering nginx-rtmp's ``on_publish``/``on_publish_done`` calls.

    ``secret_keys`` maps each SdkAppId the room knows to its secret key.
    """

    def __init__(self, secret_keys: dict[int, str]) -> None:
        self._keys = dict(secret_keys)
        self._lock = threading.Lock()
        self._publishers: dict[str, _Publisher] = {}  # by nginx client id
        self.decisions: list[Decision] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        """The port nginx calls."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Listen on a free loopback port, in a daemon thread."""
        auth = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, location = auth.handle(self.path, body.decode("latin-1"))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                # The preview page's list of who publishes where (nginx proxies it).
                data = json.dumps(auth.publishers()).encode()
                self.send_response(200 if self.path == "/publishers" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # decisions are logged by handle(), without the query's secrets

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop answering (nginx then refuses every publish). Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def stream_of(self, room: str, user: str) -> str | None:
        """The stream name ``user`` publishes under in ``room`` right now, if publishing."""
        with self._lock:
            for p in self._publishers.values():
                if p.room == room and p.user == user:
                    return p.stream
        return None

    def publishers(self) -> list[dict[str, str]]:
        """Everyone publishing now: ``[{"Room", "User", "Stream"}]``."""
        with self._lock:
            return [
                {"Room": p.room, "User": p.user, "Stream": p.stream}
                for p in self._publishers.values()
            ]

    def users_in(self, room: str) -> dict[str, str]:
        """``{user: stream name}`` of everyone publishing in ``room`` right now."""
        with self._lock:
            return {p.user: p.stream for p in self._publishers.values() if p.room == room}

    def handle(self, path: str, body: str) -> tuple[int, str | None]:
        """Answer one notification: (HTTP status, Location for a rename or None)."""
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if path.startswith("/on_publish_done"):
            with self._lock:
                self._publishers.pop(form.get("clientid", ""), None)
            return 200, None
        room, user = form.get("name", ""), form.get("userid", "")
        reason = self._refusal(form, body)
        if reason is not None:
            return self._decide(Decision(room, user, False, reason)), None
        with self._lock:
            mine = [p.stream for p in self._publishers.values() if (p.room, p.user) == (room, user)]
            taken = any(p.stream == room for p in self._publishers.values())
            # A user already publishing here keeps its stream name, so nginx refuses the
            # second publish ("already publishing"), as it did before streams were split.
            stream = mine[0] if mine else f"{room}{USER_SEPARATOR}{user}" if taken else room
            self._publishers[form.get("clientid", "")] = _Publisher(room, user, stream)
        self._decide(Decision(room, user, True, "UserSig verified", stream))
        return (302, stream) if stream != room else (200, None)

    def _refusal(self, form: dict[str, str], body: str) -> str | None:
        # The publish URL's query is the body's tail after "type=<type>&" (nginx appends it
        # raw); its length tells whether nginx cut the publish name off.
        query = body.partition("&type=")[2].partition("&")[2]
        if len(form.get("name", "")) + 1 + len(query) >= MAX_PUBLISH_NAME:
            return (
                f"the publish URL's '<room>?<query>' reached nginx-rtmp's {MAX_PUBLISH_NAME}-"
                "byte limit and was cut off, so its UserSig cannot be checked; use shorter "
                "room and user ids with the local room"
            )
        app = form.get("sdkappid", "")
        if not app.isdigit() or int(app) not in self._keys:
            return f"SdkAppId {app or '(none)'} is not known to this room"
        user, sig = form.get("userid", ""), form.get("usersig", "")
        if not user or not sig:
            return "userid and usersig are required"
        try:
            check(sig, int(app), user, secret_key=self._keys[int(app)])
        except UserSigError as exc:
            return str(exc)
        return None

    def _decide(self, decision: Decision) -> int:
        with self._lock:
            self.decisions.append(decision)
        if decision.accepted:
            log.info("room: %s publishes in %s as stream %s", decision.user, decision.room,
                     decision.stream)  # fmt: skip
            return 200
        log.warning("room: refused %s in %s: %s", decision.user, decision.room, decision.reason)
        return 403
