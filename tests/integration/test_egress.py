"""The workers' egress guard (worker/egress.py): every connection FFmpeg makes for a source
goes through a proxy that judges the address it connects to, so redirects and HLS segments
cannot lead a push inside the network. Checked by opening real media with PyAV.

The network here is loopback: 127.0.0.1 plays "public" (the proxy's allow list has it) and
127.0.0.2 plays "internal" (a server bound there answers, but the guard refuses it).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

from jobs.errors import SourceError
from pipeline.source import open_source
from pipeline.spec import Timeouts
from worker.egress import GuardProxy

from ..media import make_clip
from ..sources import serving

TIMEOUTS = Timeouts(source_open=5, source_read=5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_clip(tmp_path_factory.mktemp("egress") / "e.mp4", seconds=1, size="160x120")
    return path.read_bytes()


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import subprocess  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("egress_ts")
    mp4 = make_clip(folder / "e.mp4", seconds=1, size="160x120")
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(mp4),
            "-c",
            "copy",
            "-f",
            "mpegts",
            str(folder / "e.ts"),
        ],
        check=True,
    )
    return (folder / "e.ts").read_bytes()


@pytest.fixture(scope="module")
def proxy() -> Iterator[GuardProxy]:
    guard = GuardProxy(allow=[ipaddress.ip_network("127.0.0.1/32")])
    yield guard
    guard.shutdown()
    guard.server_close()


@pytest.fixture(scope="module")
def internal(clip: bytes, ts_clip: bytes) -> Iterator[str]:
    with serving({"/e.mp4": clip, "/e.ts": ts_clip}, host="127.0.0.2") as base:
        yield base


def opens(url: str, proxy: GuardProxy | None) -> bool:
    try:
        source = open_source(url, TIMEOUTS, proxy=None if proxy is None else proxy.url)
    except SourceError:
        return False
    with source.container as container:
        return any(True for _ in container.demux(*source.streams))


def test_a_public_source_plays_through_the_guard(clip: bytes, proxy: GuardProxy) -> None:
    with serving({"/e.mp4": clip}) as public:
        assert opens(f"{public}/e.mp4", proxy)


def test_a_redirect_to_an_internal_address_is_refused_where_it_would_otherwise_play(
    internal: str, proxy: GuardProxy
) -> None:
    with serving({"/go.mp4": f"redirect:{internal}/e.mp4".encode()}) as public:
        assert opens(f"{public}/go.mp4", None), "without the guard the redirect plays"
        assert not opens(f"{public}/go.mp4", proxy)


def test_an_hls_segment_on_an_internal_address_is_refused(internal: str, proxy: GuardProxy) -> None:
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:1.0,\n{internal}/e.ts\n#EXT-X-ENDLIST\n"
    )
    with serving({"/index.m3u8": playlist.encode()}) as public:
        assert opens(f"{public}/index.m3u8", None), "without the guard the segment plays"
        assert not opens(f"{public}/index.m3u8", proxy)


@pytest.mark.parametrize(
    "request_line", ["CONNECT 127.0.0.2:443 HTTP/1.1", "GET http://127.0.0.2/ HTTP/1.1"]
)
def test_the_proxy_answers_a_refusal_with_403_and_its_reason(
    proxy: GuardProxy, request_line: str
) -> None:
    with socket.create_connection(proxy.server_address, timeout=5) as sock:
        sock.sendall(f"{request_line}\r\nHost: x\r\n\r\n".encode())
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 403")
    assert "127.0.0.2, a loopback address" in answer


def test_a_kept_alive_request_cannot_ride_another_hosts_tunnel(
    clip: bytes, proxy: GuardProxy
) -> None:
    with serving({"/e.mp4": clip}) as public:
        host = public.removeprefix("http://")
        with socket.create_connection(proxy.server_address, timeout=5) as sock:
            head = f"GET {public}/e.mp4 HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n"
            sock.sendall(f"{head}\r\n".encode())
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
    assert b"200 OK" in received.split(b"\r\n", 1)[0]
    assert len(received) > len(clip)  # the whole answer came, then the connection closed
