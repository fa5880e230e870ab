"""A worker cut off from Redis (a network partition) stops publishing before another worker
takes its push over, so the room never sees the same user publish twice."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from devstack.redis import RedisServer
from devstack.room import LocalRoom

from ..conftest import job_for
from ..stack import Api, start_api, start_worker, stop


class Partition:
    """A TCP relay in front of Redis that the test can cut, as a failing network would."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._sockets: list[socket.socket] = []
        self._pipes: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                pipe = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self._pipes.append(pipe)
                pipe.start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection through the relay and refuse new ones."""
        self._cut.set()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop relaying, and close every socket (not left to the garbage collector, which
        would warn about them in whichever test runs then)."""
        self.cut()
        self._server.close()
        for pipe in self._pipes:
            pipe.join(5)
        for s in self._sockets:
            s.close()


def with_address(url: str, port: int, db: int) -> str:
    """``url`` (redis://[:pw@]host:port/db) pointed at another port and database."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{port}", f"/{db}", "", ""))


@pytest.fixture
def partition(redis_server: RedisServer) -> Iterator[Partition]:
    host_port = urlsplit(redis_server.url).netloc.rsplit("@", 1)[-1]
    proxy = Partition("127.0.0.1", int(host_port.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


def test_a_worker_cut_off_from_redis_stops_before_another_worker_takes_its_push_over(
    redis_server: RedisServer,
    partition: Partition,
    service_env: dict[str, str],
    room: LocalRoom,
    long_clip: str,
    room_name: str,
    tmp_path: Path,
) -> None:
    direct = redis_server.url.rsplit("/", 1)[0] + "/4"
    env = dict(service_env, ROOMCAST_REDIS_URL=direct)
    cut_off = start_worker(
        dict(env, ROOMCAST_REDIS_URL=with_address(direct, partition.port, 4)),
        tmp_path / "cut_off.log",
        "cut_off",
        concurrency=1,
    )
    api_proc, base = start_api(env, tmp_path / "api.log")
    api = Api(base)
    rescuer = None
    try:
        rid = api.submit(**job_for(room, long_clip, room_name))
        first = api.wait_state(rid, {"running"}, timeout=15)
        assert first["Worker"].startswith("cut_off@")
        rescuer = start_worker(env, tmp_path / "rescuer.log", "rescuer", concurrency=1)
        while room.publishers(room_name) == 0:
            time.sleep(0.1)

        partition.cut()
        cut = time.monotonic()
        most_publishers, silent_since, took_over = 0, None, None
        while time.monotonic() - cut < 30:
            publishers = room.publishers(room_name)
            most_publishers = max(most_publishers, publishers)
            if publishers == 0 and silent_since is None:
                silent_since = time.monotonic()
            status = api.status(rid)
            if status["Worker"].startswith("rescuer@") and publishers == 1:
                took_over = time.monotonic()
                break
            time.sleep(0.1)
        print(
            f"\ncut at 0 s: the cut-off worker's publish ended at "
            f"{(silent_since or cut) - cut:.1f} s, the push publishes again from the other "
            f"worker at {(took_over or cut) - cut:.1f} s"
        )
        assert took_over is not None, f"not taken over within 30 s: {api.status(rid)}"
        assert most_publishers == 1, "two publishers of one user at once"
        assert silent_since is not None and silent_since - cut < 8.0
        assert "no heartbeat reached Redis" in (tmp_path / "cut_off.log").read_text()
        status = api.status(rid)
        assert status["State"] == "running" and status["Attempts"] == 2
        api.call("POST", f"/v1/pushes/{rid}/stop")
        final = api.wait_state(rid, {"stopped"}, timeout=15)
        assert final["Worker"].startswith("rescuer@")
    finally:
        stop(api_proc)
        stop(cut_off, sig=9)
        if rescuer is not None:
            stop(rescuer)
