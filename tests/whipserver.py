"""A WHIP endpoint nobody here wrote the WebRTC of: aiohttp for the HTTP, aiortc for ICE,
DTLS, SRTP and decoding. It stands in for TRTC's WHIP ingest (or any SFU's) in the tests.

``POST /whip/<stream>`` (an SDP offer, ``Authorization: Bearer <token>`` when the endpoint
has one) answers 201 with the SDP answer and the session's ``Location``; ``DELETE`` on that
ends it. Each session keeps what its viewer saw: the number drawn in each picture
(tests/media.py), when it was decoded, and the sound's frames.

``POST /v2/pub/<SDKAppID>/<room>?SessionID=<UserId>`` is TRTC's WHIP ingest as Tencent's OBS
sample uses it: the bearer token must be a UserSig of that user and app, signed with the app's
key (``trtc_keys``), or the offer is refused (401) as TRTC refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket

from devstack.aiortc_interop import declare_rtx_ssrcs, ice_connections, install_stun_demux
from jobs import usersig

from .media import read_clip_id, read_frame_number


@dataclass(frozen=True)
class SenderReport:
    """An RTCP sender report: the sender's wall clock (NTP, s) at an RTP time of a stream;
    ``mapper``: aiortc's, which starts the stream's frame times at its first RTP timestamp."""

    ntp: float
    rtp: int
    clock: int
    mapper: Any

    def sender_time(self, pts: int) -> float:
        """The sender's wall clock for a frame of time ``pts`` (aiortc's, from 0): how a
        WebRTC player lines sound up with pictures."""
        origin = self.mapper._origin  # noqa: SLF001 - aiortc keeps it to itself
        delta = (pts + origin - self.rtp) & 0xFFFFFFFF
        delta -= 1 << 32 if delta >= 1 << 31 else 0
        return self.ntp + delta / self.clock


@dataclass
class Session:
    """One publish as the endpoint received it."""

    stream: str
    #: TRTC's ingest: the user publishing (its SessionID).
    user: str | None = None
    numbers: list[int] = field(default_factory=list)
    clips: list[int] = field(default_factory=list)
    #: Each picture's RTP time (s) and when it was decoded (monotonic).
    times: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    sound_frames: int = 0
    sample_rates: set[int] = field(default_factory=set)
    #: For lip sync: each picture's RTP time and mean brightness, each sound frame's RTP
    #: time, rate and first channel, and the first RTCP sender report of each kind.
    lumas: list[tuple[int, float]] = field(default_factory=list)
    sounds: list[tuple[int, int, Any]] = field(default_factory=list)
    reports: dict[str, SenderReport] = field(default_factory=dict)
    sizes: set[tuple[int, int]] = field(default_factory=set)
    deleted: bool = False
    ended: threading.Event = field(default_factory=threading.Event)


class WhipServer:
    """The endpoint on 127.0.0.1 on a free port, run on a thread of its own."""

    def __init__(self, token: str | None = None, trtc_keys: dict[int, str] | None = None) -> None:
        install_stun_demux()  # no SRTP packet taken for a broken STUN message and lost
        self.token = token
        self.trtc_keys = trtc_keys or {}
        self.sessions: list[Session] = []
        self.refused = 0
        #: Streams whose offers are answered, and whose sessions then never open (the
        #: endpoint's side is gone before the handshake): an endpoint unreachable for media.
        self.unreachable: set[str] = set()
        self.unreachable_offers = 0
        #: Drop this many-th H.264 packet of each session before SRTP (a packet lost on
        #: the way: the publisher must resend it when asked); ``lost`` counts the drops.
        self.lose_video_packet: int | None = None
        self.lost = 0
        self._peers: dict[str, tuple[RTCPeerConnection, Session, list[Any]]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="whip-server", daemon=True)
        self._runner: web.AppRunner

    def url(self, stream: str) -> str:
        """The endpoint of ``stream``."""
        return f"http://127.0.0.1:{self.port}/whip/{stream}"

    def __enter__(self) -> WhipServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def trtc_url(self) -> str:
        """TRTC's WHIP ingest here (``ROOMCAST_TRTC_WHIP_URL``)."""
        return f"http://127.0.0.1:{self.port}/v2/pub"

    def session(self, stream: str, timeout: float = 15.0) -> Session:
        """The first session published as ``stream``, once it has begun."""
        deadline = time.monotonic() + timeout
        while True:
            for session in self.sessions:
                if session.stream == stream:
                    return session
            assert time.monotonic() < deadline, f"no WHIP session for {stream}"
            time.sleep(0.05)

    def drop(self, stream: str) -> None:
        """End ``stream``'s open sessions from this side as a crashed endpoint would: the
        transport stops without a DTLS goodbye, and the publisher's sends are refused."""
        asyncio.run_coroutine_threadsafe(self._drop(stream), self._loop).result(10)

    async def _drop(self, stream: str) -> None:
        for sid, (peer, session, _) in list(self._peers.items()):
            if session.stream != stream:
                continue
            for transceiver in peer.getTransceivers():
                transport = transceiver.receiver.transport
                if transport is not None:
                    await transport.transport.stop()
            await self._end(sid)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/whip/{stream}", self._post)
        app.router.add_delete("/whip/{stream}/{sid}", self._delete)
        app.router.add_post("/v2/pub/{app}/{stream}", self._post)
        app.router.add_delete("/v2/pub/{app}/{stream}/{sid}", self._delete)
        runner = self._runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
        self._ready.set()
        self._loop.run_forever()

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if "app" in request.match_info:
            app = int(request.match_info["app"])
            try:
                usersig.check(given, app, request.query["SessionID"], self.trtc_keys[app])
            except (KeyError, usersig.UserSigError):
                return False
            return True
        return not self.token or given == self.token

    async def _post(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            self.refused += 1
            return web.Response(status=401, text="bad token")
        offer = await request.text()
        session = Session(request.match_info["stream"], request.query.get("SessionID"))
        peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        tasks: list[Any] = []
        sid = uuid.uuid4().hex[:12]

        @peer.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in peer.getTransceivers() if t.receiver.track is track)
            _note_sender_reports(receiver, session, track.kind)
            tasks.append(asyncio.ensure_future(self._consume(session, track)))

        try:
            offer = declare_rtx_ssrcs(offer)
            await peer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await peer.setLocalDescription(await peer.createAnswer())
        except Exception as exc:  # noqa: BLE001 - aiortc's negotiation errors have no base
            await peer.close()
            return web.Response(status=406, text=f"negotiation failed: {exc}")
        if self.lose_video_packet is not None:
            self._lose_video_packet(peer, offer, self.lose_video_packet)
        if session.stream in self.unreachable:
            self.unreachable_offers += 1
            answer = peer.localDescription.sdp
            await peer.close()
            for task in tasks:
                task.cancel()
            headers = {"Content-Type": "application/sdp", "Location": f"{request.path}/{sid}"}
            return web.Response(status=201, body=answer.encode(), headers=headers)
        self._peers[sid] = (peer, session, tasks)
        self.sessions.append(session)
        query = f"?{request.query_string}" if request.query_string else ""
        return web.Response(
            status=201,
            body=peer.localDescription.sdp.encode(),
            headers={
                "Content-Type": "application/sdp",
                "Location": f"{request.path}/{sid}{query}",
            },
        )

    def _lose_video_packet(self, peer: RTCPeerConnection, offer: str, nth: int) -> None:
        """Drop the ``nth`` H.264 packet that reaches ``peer``'s ICE connection (one for
        every track: FFmpeg bundles them)."""
        found = re.search(r"a=rtpmap:(\d+) H264/", offer)
        assert found is not None, "no H.264 in the offer"
        video = int(found[1])
        (connection,) = ice_connections(peer)
        deliver = connection.data_received
        seen = 0

        def data_received(data: bytes, component: int) -> None:
            nonlocal seen
            if len(data) > 12 and data[0] >> 6 == 2 and data[1] & 0x7F == video:
                seen += 1
                if seen == nth:
                    self.lost += 1
                    return
            deliver(data, component)

        connection.data_received = data_received

    async def _delete(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        found = self._peers.get(request.match_info["sid"])
        if found is None:
            return web.Response(status=404)
        found[1].deleted = True
        await self._end(request.match_info["sid"])
        return web.Response(status=200)

    async def _consume(self, session: Session, track: Any) -> None:
        async for frame in frames(track):
            if track.kind == "video":
                gray = frame.to_ndarray(format="gray")
                session.lumas.append((frame.pts, float(gray.mean())))
                session.numbers.append(read_frame_number(frame))
                session.clips.append(read_clip_id(frame))
                session.times.append(float(frame.pts * frame.time_base))
                session.arrivals.append(time.monotonic())
                session.sizes.add((frame.width, frame.height))
            else:
                session.sound_frames += 1
                session.sample_rates.add(frame.sample_rate)
                samples = frame.to_ndarray()  # s16, channels interleaved
                first = samples.reshape(-1, len(frame.layout.channels))[:, 0] / 32768.0
                session.sounds.append((frame.pts, frame.sample_rate, first))

    async def _end(self, sid: str) -> None:
        peer, session, tasks = self._peers.pop(sid)
        # Let the receive buffers hand over what they hold before the tracks end.
        await asyncio.sleep(0.2)
        await peer.close()
        for task in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2)
        session.ended.set()

    async def _shutdown(self) -> None:
        for sid in list(self._peers):
            await self._end(sid)
        await self._runner.cleanup()
        # What is left (a session's reader whose peer was closed at once, aiortc's own) ends
        # here, not as garbage in whichever test runs when the loop is collected.
        left = asyncio.all_tasks() - {asyncio.current_task()}
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


async def frames(track: Any) -> AsyncIterator[Any]:
    """The frames an aiortc track receives, until it ends."""
    while True:
        try:
            yield await track.recv()
        except MediaStreamError:
            return


def _note_sender_reports(receiver: Any, session: Session, kind: str) -> None:
    """Keep the first RTCP sender report of ``receiver``'s stream in ``session``."""
    handle = receiver._handle_rtcp_packet  # noqa: SLF001 - aiortc keeps sender reports to itself
    mapper = receiver._RTCRtpReceiver__timestamp_mapper  # noqa: SLF001

    async def noting(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and kind not in session.reports:
            info = packet.sender_info
            session.reports[kind] = SenderReport(
                ntp=(info.ntp_timestamp >> 32) + (info.ntp_timestamp & 0xFFFFFFFF) / 2**32,
                rtp=info.rtp_timestamp,
                clock=90_000 if kind == "video" else 48_000,
                mapper=mapper,
            )
        await handle(packet)

    receiver._handle_rtcp_packet = noting  # noqa: SLF001


@contextlib.contextmanager
def whip_server(
    token: str | None = None, trtc_keys: dict[int, str] | None = None
) -> Iterator[WhipServer]:
    """A :class:`WhipServer` for the length of a test."""
    with WhipServer(token, trtc_keys) as server:
        yield server
