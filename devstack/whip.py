"""A local stand-in for TRTC's WHIP ingest, with WHEP playback and a browser preview.

``python -m devstack.whip --port P --keys APPID:KEY[,APPID:KEY]`` serves, on 127.0.0.1
(aiohttp for the HTTP, aiortc for ICE, DTLS, SRTP and the codecs):

- ``POST /v2/pub/<SdkAppId>/<room>?SessionID=<UserId>``: a publish (an SDP offer), as TRTC's
  WHIP ingest takes it (Tencent's OBS sample, Tencent-RTC/obs-trtc). The bearer token must be
  a UserSig of that user and app, signed with the app's key (jobs/usersig.py), or the offer
  is refused with 401 as TRTC refuses it. 201 answers with the SDP answer, once aiortc has
  gathered its candidates (it cannot trickle), and the session's ``Location`` (query
  included); ``DELETE`` there ends the session. A second session of the same user in the
  same room replaces the first, as TRTC lets one session per user.
- ``POST /v2/sub/<SdkAppId>/<room>[?SessionID=<UserId>]``: WHEP playback (the path Tencent's
  OBS sample uses), no auth: a recvonly offer is answered with the room's publisher's tracks
  (that user's, or the latest publisher's), relayed by aiortc's ``MediaRelay``; 404 when
  nobody publishes there. ``DELETE`` on its ``Location`` ends it. aiortc hands on decoded
  frames only, so each viewer's picture and sound are re-encoded (in the codec its offer
  prefers: VP8 for browsers).
- ``GET /rooms``: the sessions publishing now (JSON); ``GET /``: a preview page that lists
  them and plays ``/#<room>`` over WHEP.

One log line per session start and end. :class:`LocalWhip` runs it as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from devstack.aiortc_interop import declare_rtx_ssrcs, ice_connections, install_stun_demux
from devstack.ports import LOCALHOST, free_port, wait_for_port
from devstack.process import ChildServer, log_tail, stop_process
from jobs.usersig import UserSigError, check, parse_keys

log = logging.getLogger("devstack.whip")

REPO_ROOT = Path(__file__).resolve().parent.parent
WWW_DIR = Path(__file__).resolve().parent / "room" / "whip"
#: The local room's stylesheet, shared by both preview pages.
STYLE = Path(__file__).resolve().parent / "room" / "www" / "style.css"
#: The console's WHEP player, which the preview page uses too.
WHEP_JS = REPO_ROOT / "api" / "static" / "console" / "whep.js"
START_TIMEOUT = 15.0
#: How long a closing session waits for its tracks to hand over what they hold.
END_GRACE = 2.0
#: A publisher sending no picture this long is gone (a paused push repeats its picture).
PICTURE_TIMEOUT = 15.0


# --- the endpoint -------------------------------------------------------------------------


@dataclass(eq=False)
class Publisher:
    """One publish session: its user in its room, and the tracks it sends."""

    sid: str
    app: int
    room: str
    user: str
    peer: RTCPeerConnection
    since: float = field(default_factory=time.time)
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)
    viewers: set[str] = field(default_factory=set)
    pictures: int = 0
    size: str = ""
    tasks: list[asyncio.Future[None]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """What ``GET /rooms`` says about it."""
        return {
            "SdkAppId": self.app,
            "Room": self.room,
            "UserId": self.user,
            "Session": self.sid,
            "Seconds": round(time.time() - self.since, 1),
            "Video": self.size,
            "Audio": "audio" in self.tracks,
            "Pictures": self.pictures,
            "Viewers": len(self.viewers),
        }


@dataclass(eq=False)
class Viewer:
    """One WHEP playback session, fed from one publisher."""

    sid: str
    publisher: Publisher
    peer: RTCPeerConnection
    tracks: list[MediaStreamTrack] = field(default_factory=list)


class Ingest:
    """The HTTP endpoint: publish sessions in, viewer sessions out."""

    def __init__(self, secret_keys: dict[int, str]) -> None:
        install_stun_demux()  # no SRTP packet taken for a broken STUN message and lost
        self._keys = dict(secret_keys)
        self._relay = MediaRelay()
        self.publishers: dict[str, Publisher] = {}
        self.viewers: dict[str, Viewer] = {}

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[_cors])
        app.router.add_post("/v2/pub/{app}/{room}", self.publish)
        app.router.add_delete("/v2/pub/{app}/{room}/{sid}", self.unpublish)
        app.router.add_post("/v2/sub/{app}/{room}", self.subscribe)
        app.router.add_delete("/v2/sub/{app}/{room}/{sid}", self.unsubscribe)
        app.router.add_get("/rooms", self.rooms)
        app.router.add_get("/", _static(WWW_DIR / "index.html"))
        app.router.add_get("/app.js", _static(WWW_DIR / "app.js"))
        app.router.add_get("/style.css", _static(STYLE))
        app.router.add_get("/whep.js", _static(WHEP_JS))
        app.router.add_get("/favicon.ico", _no_icon)
        app.on_shutdown.append(self._shutdown)
        return app

    # --- publishing -------------------------------------------------------------------------

    def _refusal(self, request: web.Request, app: int | None, user: str) -> str | None:
        """Why this request may not publish as ``user`` (no secret in it), or None."""
        key = self._keys.get(app) if app is not None else None
        if key is None:
            return "unknown SdkAppId"
        if not user:
            return "no SessionID (the UserId)"
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        try:
            check(token, app, user, key)  # type: ignore[arg-type]  # app is set with a key
        except UserSigError as exc:
            return str(exc)
        return None

    async def publish(self, request: web.Request) -> web.Response:
        """``POST /v2/pub/<app>/<room>?SessionID=<user>``: answer a publisher's offer."""
        app, room = _app_of(request), request.match_info["room"]
        user = request.query.get("SessionID", "")
        refusal = self._refusal(request, app, user)
        if refusal is not None or app is None:
            log.info("publish refused: room %s user %s app %s: %s", room, user, app, refusal)
            return web.Response(status=401, text=f"{refusal}\n")
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        publisher = Publisher(uuid.uuid4().hex[:12], app, room, user, peer)

        @peer.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            publisher.tracks[track.kind] = track
            publisher.tasks.append(asyncio.ensure_future(self._drain(publisher, track)))

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState == "connected":
                _keep_consent(peer)
            if peer.connectionState in ("failed", "closed"):
                await self._end_publisher(publisher.sid, f"connection {peer.connectionState}")

        answer = await _answer(peer, await request.text())
        if answer is None:
            return web.Response(status=400, text="the offer cannot be negotiated\n")
        for old in list(self.publishers.values()):
            if (old.app, old.room, old.user) == (app, room, user):
                await self._end_publisher(old.sid, "replaced by a new session of its user")
        self.publishers[publisher.sid] = publisher
        log.info(
            "publish start: room %s user %s app %s session %s (%s)",
            room, user, app, publisher.sid, " + ".join(sorted(publisher.tracks)) or "no tracks",
        )  # fmt: skip
        return _created(request, answer, publisher.sid)

    async def unpublish(self, request: web.Request) -> web.Response:
        """``DELETE`` on a publish session's Location: end it."""
        publisher = self.publishers.get(request.match_info["sid"])
        if publisher is None:
            return web.Response(status=404)
        if self._refusal(request, publisher.app, publisher.user) is not None:
            return web.Response(status=401)
        await self._end_publisher(publisher.sid, "DELETE")
        return web.Response(status=200)

    async def _drain(self, publisher: Publisher, track: MediaStreamTrack) -> None:
        """Read the track for as long as it runs (aiortc queues what nobody reads), noting
        its pictures; viewers get the same frames through the relay. A publisher whose
        pictures stop has gone without a word (killed): its session ends."""
        sink = self._relay.subscribe(track, buffered=False)
        timeout = PICTURE_TIMEOUT if track.kind == "video" else None
        while True:
            try:
                frame = await asyncio.wait_for(sink.recv(), timeout)
            except MediaStreamError:
                return
            except TimeoutError:
                why = f"no picture for {PICTURE_TIMEOUT:g} s"
                asyncio.ensure_future(self._end_publisher(publisher.sid, why))
                return
            if track.kind == "video":
                publisher.pictures += 1
                publisher.size = f"{frame.width}x{frame.height}"  # type: ignore[union-attr]

    async def _end_publisher(self, sid: str, why: str) -> None:
        publisher = self.publishers.pop(sid, None)
        if publisher is None:
            return
        for viewer in list(publisher.viewers):
            await self._end_viewer(viewer, "its publisher left")
        await publisher.peer.close()
        if publisher.tasks:
            await asyncio.wait(publisher.tasks, timeout=END_GRACE)
        log.info(
            "publish end: room %s user %s app %s session %s after %.1f s, %d pictures (%s)",
            publisher.room, publisher.user, publisher.app, sid,
            time.time() - publisher.since, publisher.pictures, why,
        )  # fmt: skip

    # --- playback -------------------------------------------------------------------------

    def _publisher_of(self, app: int | None, room: str, user: str | None) -> Publisher | None:
        """That user's session in the room, else the room's latest."""
        found = [
            p
            for p in self.publishers.values()
            if p.app == app and p.room == room and (not user or p.user == user)
        ]
        return max(found, key=lambda p: p.since) if found else None

    async def subscribe(self, request: web.Request) -> web.Response:
        """``POST /v2/sub/<app>/<room>[?SessionID=<user>]``: answer a viewer's offer."""
        room = request.match_info["room"]
        publisher = self._publisher_of(_app_of(request), room, request.query.get("SessionID"))
        if publisher is None:
            return web.Response(status=404, text=f"nobody publishes in room {room}\n")
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        viewer = Viewer(uuid.uuid4().hex[:12], publisher, peer)

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState in ("failed", "closed"):
                await self._end_viewer(viewer.sid, f"connection {peer.connectionState}")

        def add_tracks() -> None:
            wanted = {t.kind for t in peer.getTransceivers()}
            for kind, track in publisher.tracks.items():
                if kind in wanted:
                    viewer.tracks.append(self._relay.subscribe(track, buffered=False))
                    peer.addTrack(viewer.tracks[-1])

        answer = await _answer(peer, await request.text(), add_tracks)
        if answer is None:
            return web.Response(status=400, text="the offer cannot be negotiated\n")
        if publisher.sid not in self.publishers:  # it left while we answered
            await peer.close()
            return web.Response(status=404, text=f"nobody publishes in room {room}\n")
        self.viewers[viewer.sid] = viewer
        publisher.viewers.add(viewer.sid)
        log.info(
            "play start: room %s user %s session %s viewer %s",
            room, publisher.user, publisher.sid, viewer.sid,
        )  # fmt: skip
        return _created(request, answer, viewer.sid)

    async def unsubscribe(self, request: web.Request) -> web.Response:
        """``DELETE`` on a viewer's Location: end it."""
        if request.match_info["sid"] not in self.viewers:
            return web.Response(status=404)
        await self._end_viewer(request.match_info["sid"], "DELETE")
        return web.Response(status=200)

    async def _end_viewer(self, sid: str, why: str) -> None:
        viewer = self.viewers.pop(sid, None)
        if viewer is None:
            return
        viewer.publisher.viewers.discard(sid)
        for track in viewer.tracks:
            track.stop()
        await viewer.peer.close()
        log.info("play end: room %s viewer %s (%s)", viewer.publisher.room, sid, why)

    async def rooms(self, request: web.Request) -> web.Response:
        """``GET /rooms``: who publishes where, the latest first."""
        publishers = sorted(self.publishers.values(), key=lambda p: p.since, reverse=True)
        return web.json_response(
            [p.describe() for p in publishers], headers={"Cache-Control": "no-cache"}
        )

    async def _shutdown(self, app: web.Application) -> None:
        for sid in list(self.viewers):
            await self._end_viewer(sid, "shutdown")
        for sid in list(self.publishers):
            await self._end_publisher(sid, "shutdown")


def _keep_consent(peer: RTCPeerConnection) -> None:
    """Stop aioice's consent checks (RFC 7675) on a publisher's connection.

    FFmpeg's WHIP muxer does not answer them in a way aioice accepts: six missed checks five
    seconds apart, and aioice would close every publish about 35 s in (the push then
    reconnects, a visible cut). A publisher that vanishes still ends: its DELETE, the DTLS
    close, or its pictures stopping (:data:`PICTURE_TIMEOUT`). aioice keeps the task in a
    private attribute; if that changes, nothing is done.
    """
    for connection in ice_connections(peer):
        task = getattr(connection, "_query_consent_task", None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            connection._query_consent_task = None


def _app_of(request: web.Request) -> int | None:
    text = request.match_info["app"]
    return int(text) if text.isdigit() else None


async def _answer(
    peer: RTCPeerConnection, offer: str, before_answer: Any = None
) -> RTCSessionDescription | None:
    """Negotiate ``offer``; the answer once ICE has gathered, or None (peer closed)."""
    try:
        offer = declare_rtx_ssrcs(offer)  # so that FFmpeg's retransmissions are taken
        await peer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if before_answer is not None:
            before_answer()
        # aiortc's setLocalDescription returns once its candidates are gathered.
        await peer.setLocalDescription(await peer.createAnswer())
    except Exception as exc:  # aiortc's negotiation errors share no base class
        log.info("offer refused: %s", exc)
        await peer.close()
        return None
    answer: RTCSessionDescription = peer.localDescription
    return answer


def _created(request: web.Request, answer: RTCSessionDescription, sid: str) -> web.Response:
    """201 with the SDP answer and the session's Location (keeping the query: SessionID)."""
    query = f"?{request.query_string}" if request.query_string else ""
    return web.Response(
        status=201,
        body=answer.sdp.encode(),
        content_type="application/sdp",
        headers={"Location": f"{request.path}/{sid}{query}"},
    )


def _static(path: Path) -> Any:
    types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

    async def handler(request: web.Request) -> web.Response:
        response = web.Response(body=path.read_bytes(), content_type=types[path.suffix])
        response.headers["Cache-Control"] = "no-cache"
        if path.suffix == ".html":
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
            )
        return response

    return handler


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


@web.middleware
async def _cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Pages of this machine may play (the console is on another port), no other web page
    the developer has open; the preflight is answered here, and Location is readable, for
    the viewer's DELETE."""
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, DELETE, GET"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    origin = request.headers.get("Origin", "")
    if urlsplit(origin).hostname in ("127.0.0.1", "localhost", "::1"):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Expose-Headers"] = "Location"
    return response


def serve(port: int, secret_keys: dict[int, str]) -> None:
    """Run the endpoint on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    ingest = Ingest(secret_keys)
    apps = ", ".join(str(app) for app in sorted(secret_keys)) or "none"
    print(
        f"devstack.whip: WHIP ingest at http://{LOCALHOST}:{port}/v2/pub (apps: {apps})",
        flush=True,
    )
    web.run_app(ingest.app(), host=LOCALHOST, port=port, print=None, access_log=None)


# --- the child process ----------------------------------------------------------------------


class LocalWhip(ChildServer):
    """The endpoint as a child process (``python -m devstack.whip``) on 127.0.0.1.

    Use as a context manager, or call :meth:`start` (or :meth:`launch`, then
    :meth:`wait_ready`) and :meth:`stop`. ``log``: where its output goes; None: this
    process's own stdout.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        secret_keys: dict[int, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self._workdir = Path(workdir)
        self._port = port if port is not None else free_port()
        self._keys = dict(secret_keys or {})
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The HTTP port."""
        return self._port

    @property
    def base(self) -> str:
        """The endpoint's base URL."""
        return f"http://{LOCALHOST}:{self._port}"

    @property
    def pub_url(self) -> str:
        """TRTC's WHIP ingest here: ``ROOMCAST_TRTC_WHIP_URL``."""
        return f"{self.base}/v2/pub"

    def sub_url(self, app: int, room: str, user: str | None = None) -> str:
        """The WHEP URL playing ``room`` (``user``'s session, or its latest publisher)."""
        return f"{self.base}/v2/sub/{app}/{room}" + (f"?SessionID={user}" if user else "")

    @property
    def preview_url(self) -> str:
        """The preview page; add ``#room`` to open one."""
        return f"{self.base}/"

    @property
    def rooms_url(self) -> str:
        """The sessions publishing now, as JSON."""
        return f"{self.base}/rooms"

    def launch(self) -> None:
        """Start the child process, without waiting for it to listen."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._workdir.mkdir(parents=True, exist_ok=True)
        keys = ",".join(f"{app}:{key}" for app, key in self._keys.items())
        cmd = [sys.executable, "-m", "devstack.whip", "--port", str(self._port), "--keys", keys]
        out = self.log.open("ab") if self.log is not None else None
        try:
            # New session: a Ctrl-C in the terminal must not stop it before we do.
            self._proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()

    def wait_ready(self) -> None:
        """Wait until the endpoint accepts connections.

        Raises:
            RuntimeError: it exited, or did not listen within 15 s (with its log's tail).
        """
        assert self._proc is not None, "not launched"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._fail(f"it exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"it did not listen on port {self._port} within {START_TIMEOUT:g} s")
            try:
                wait_for_port(LOCALHOST, self._port, timeout=0.2)
                return
            except TimeoutError:
                pass

    def start(self) -> None:
        """Start the child process and wait until it listens."""
        self.launch()
        self.wait_ready()

    def stop(self) -> None:
        """Stop it (SIGTERM: sessions end, then the process; SIGKILL after 5 s)."""
        stop_process(self._proc, grace=5.0)
        self._proc = None

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        tail = f":\n{log_tail(self.log)}" if self.log is not None else ""
        raise RuntimeError(f"the local WHIP endpoint failed to start: {reason}{tail}")


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.whip --port P --keys APPID:KEY[,APPID:KEY]``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.whip", description=__doc__)
    parser.add_argument("--port", type=int, default=8090, help="HTTP port on 127.0.0.1")
    parser.add_argument(
        "--keys", default="", help="the apps' secret keys, 'appid:key,appid:key' (dev keys)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # aiortc and aioice log every ICE check at INFO: keep to this endpoint's own lines.
    for noisy in ("aiortc", "aioice"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.port, parse_keys(args.keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
