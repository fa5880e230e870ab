"""Start a throwaway ``redis-server`` for development and tests."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis as redis_client

from devstack.ports import LOCALHOST, free_port, port_is_free
from devstack.process import ChildServer, find_binary, log_tail, stop_process

DEFAULT_PORT = 6379
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS-only Redis: its certificate and key, and the CA that signed them."""

    cert: Path
    key: Path
    ca: Path


def redis_url(
    host: str, port: int, password: str | None = None, db: int = 0, tls: bool = False
) -> str:
    """Build a ``redis://`` (``rediss://`` with TLS) URL with an optional password."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{'rediss' if tls else 'redis'}://{auth}{host}:{port}/{db}"


def redis_answers(
    host: str, port: int, password: str | None = None, ca_file: Path | None = None
) -> bool:
    """Return True when a Redis server on ``host:port`` answers PING (over TLS, trusting
    ``ca_file``, when it is given)."""
    tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(ca_file)} if ca_file else {}
    client = redis_client.Redis(
        host=host,
        port=port,
        password=password,
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        **tls,
    )
    try:
        return bool(client.ping())
    except redis_client.RedisError:
        return False
    finally:
        client.close()


def _quote(value: str) -> str:
    """Quote a value for redis.conf (double quotes, backslash escapes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisServer(ChildServer):
    """A ``redis-server`` child process on 127.0.0.1 with no persistence.

    With ``tls``, it listens only for TLS on its port (no client certificates asked for).
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        tls: TlsFiles | None = None,
        persistent: bool = False,
    ):
        self._workdir = Path(workdir)
        # An append-only file (fsync every second) keeps job records across a restart.
        self._persistent = persistent
        self._port = port if port is not None else free_port()
        self._password = password
        self._tls = tls
        self._proc: subprocess.Popen[bytes] | None = None
        self.logfile = self._workdir / f"redis-{self._port}.log"

    @property
    def host(self) -> str:
        """Address the server listens on."""
        return LOCALHOST

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        return self._port

    @property
    def password(self) -> str | None:
        """The ``requirepass`` password, or None."""
        return self._password

    @property
    def url(self) -> str:
        """URL for clients, e.g. ``redis://127.0.0.1:6390/0`` (``rediss://`` with TLS)."""
        return redis_url(self.host, self._port, self._password, tls=self._tls is not None)

    @property
    def tls(self) -> TlsFiles | None:
        """The TLS files, or None for a plain server."""
        return self._tls

    def start(self) -> None:
        """Start the server and wait until it answers PING.

        Raises:
            RuntimeError: the server exited or did not answer within 10 s (with its log tail).
        """
        if self._proc is not None and self._proc.poll() is None:
            return
        binary = find_binary("redis-server", "/usr/bin/redis-server")
        self._workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        with self.logfile.open("ab") as log:
            # Early errors (a bad config line) go to stderr before the logfile opens.
            # New session: a Ctrl-C in the terminal must not kill it before we stop it.
            self._proc = subprocess.Popen(
                [binary, str(config)],
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        ca_file = self._tls.ca if self._tls is not None else None
        while not redis_answers(self.host, self._port, self._password, ca_file):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self._port} did not start; "
                    f"last lines of {self.logfile}:\n{log_tail(self.logfile)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        stop_process(self._proc, grace=5.0)
        self._proc = None

    def _write_config(self) -> Path:
        # A config file rather than arguments keeps the password out of `ps`.
        if self._tls is None:
            listen = [f"port {self._port}"]
        else:
            listen = [
                "port 0",
                f"tls-port {self._port}",
                f"tls-cert-file {_quote(str(self._tls.cert.resolve()))}",
                f"tls-key-file {_quote(str(self._tls.key.resolve()))}",
                f"tls-ca-cert-file {_quote(str(self._tls.ca.resolve()))}",
                "tls-auth-clients no",
            ]
        lines = [
            f"bind {self.host}",
            *listen,
            'save ""',
            f"appendonly {'yes' if self._persistent else 'no'}",
            "appendfsync everysec",
            "daemonize no",
            f"dir {_quote(str(self._workdir.resolve()))}",
            f"logfile {_quote(str(self.logfile.resolve()))}",
        ]
        if self._password:
            lines.append(f"requirepass {_quote(self._password)}")
        config = self._workdir / f"redis-{self._port}.conf"
        config.touch(mode=0o600)
        config.write_text("\n".join(lines) + "\n")
        return config


def reuse_or_start(workdir: Path) -> tuple[str, RedisServer | None]:
    """Return a URL of a usable Redis and the server started for it, if any.

    A Redis already answering on 127.0.0.1:6379 is reused (the server part is then None);
    otherwise a new one is started on 6379 when that port is free, else on a free port,
    with an append-only file so that job records survive its restart.
    The caller stops the returned server.
    """
    if redis_answers(LOCALHOST, DEFAULT_PORT):
        return redis_url(LOCALHOST, DEFAULT_PORT), None
    # 6379 may be held by something that is not Redis, or by a Redis with a password.
    port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else None
    server = RedisServer(workdir, port=port, persistent=True)
    server.start()
    return server.url, server
