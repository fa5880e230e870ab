"""A local stand-in for a TRTC room: nginx with the RTMP module, plus a browser preview.

Publishers push to ``{rtmp_base}/{room}?sdkappid=..&userid=..&usersig=..`` exactly as they
would to TRTC; viewers pull ``play_url(room)`` over RTMP or watch ``preview_url`` in a browser
(HLS). A second RTMP application, ``live``, serves as a live source for tests. The HTTP side
also serves source files from ``media_dir`` under ``/media/`` (with Range support). Given
``secret_keys``, the room checks each publish's UserSig as TRTC does
(devstack/publish_auth.py).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlencode

from devstack.ports import LOCALHOST, free_port, wait_for_port
from devstack.process import ChildServer, find_binary, log_tail, stop_process
from devstack.publish_auth import PublishAuth

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
ROOM_DIR = Path(__file__).resolve().parent / "room"
TEMPLATE = ROOM_DIR / "nginx.conf.template"
WWW_DIR = ROOM_DIR / "www"
START_TIMEOUT = 10.0
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render_template(template: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` placeholders; an unknown name raises KeyError.

    Not str.format: nginx configs are full of braces and ``$variables``.
    """
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def _user_line() -> str:
    # As root, nginx's workers would drop to "nobody", which cannot write the HLS dir or
    # read media under a private temp dir; keep them as the invoking user. As non-root
    # the directive is ignored with a warning, so leave it out.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};"


class LocalRoom(ChildServer):
    """An nginx child process serving one local room server on two ports.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        media_dir: Path | None = None,
        rtmp_port: int | None = None,
        http_port: int | None = None,
        secret_keys: dict[int, str] | None = None,
        hls: bool = True,
    ):
        """``secret_keys`` (SdkAppId → key): check each publish's UserSig like TRTC and keep
        each user's stream apart (devstack/publish_auth.py). None: accept every publish.
        ``hls``: also cut every stream into HLS for the browser preview (off for benchmarks:
        nginx-rtmp writes each 188-byte TS packet with its own system call)."""
        self._workdir = Path(workdir).resolve()
        self._media_dir = Path(media_dir).resolve() if media_dir else self._workdir / "media"
        self._rtmp_port = rtmp_port if rtmp_port is not None else free_port()
        self._http_port = http_port if http_port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.auth = PublishAuth(secret_keys) if secret_keys is not None else None
        self._hls = hls
        self.config_path = self._workdir / "nginx.conf"
        self.error_log = self._workdir / "error.log"
        self.hls_dir = self._workdir / "hls"
        self.pid_file = self._workdir / "nginx.pid"

    @property
    def rtmp_port(self) -> int:
        """Port of the RTMP server."""
        return self._rtmp_port

    @property
    def http_port(self) -> int:
        """Port of the HTTP server (preview page, /stat, /hls/, /media/)."""
        return self._http_port

    @property
    def media_dir(self) -> Path:
        """Directory served under ``/media/``."""
        return self._media_dir

    @property
    def rtmp_base(self) -> str:
        """Push target in TRTC's shape; append ``/{room}?sdkappid=..&userid=..&usersig=..``."""
        return f"rtmp://{LOCALHOST}:{self._rtmp_port}/push"

    def play_url(self, room: str, user: str | None = None) -> str:
        """RTMP URL a viewer pulls to watch what is pushed into ``room``.

        Without ``user``: the room's first publisher. With ``user`` (rooms with secret keys
        only): that user's stream, which must be publishing now.
        """
        if user is None:
            return f"{self.rtmp_base}/{room}"
        stream = self.auth.stream_of(room, user) if self.auth is not None else None
        if stream is None:
            raise LookupError(f"{user} is not publishing in room {room}")
        return f"{self.rtmp_base}/{stream}"

    @property
    def live_base(self) -> str:
        """Base of the ``live`` application: publish to and pull from ``{live_base}/{name}``."""
        return f"rtmp://{LOCALHOST}:{self._rtmp_port}/live"

    @property
    def http_base(self) -> str:
        """Base URL of the HTTP server."""
        return f"http://{LOCALHOST}:{self._http_port}"

    def media_url(self, name: str) -> str:
        """HTTP URL of a file in ``media_dir``."""
        return f"{self.http_base}/media/{name}"

    def hls_url(self, room: str) -> str:
        """HLS playlist of ``room`` (appears a few seconds after a publish starts)."""
        return f"{self.http_base}/hls/{room}.m3u8"

    @property
    def stat_url(self) -> str:
        """nginx-rtmp's XML statistics (active streams and their clients)."""
        return f"{self.http_base}/stat"

    def publishers(self, stream: str) -> int:
        """How many clients publish into ``stream`` now (0 or 1 with nginx-rtmp)."""
        return publishers_at(self.stat_url, stream)

    def drop_publisher(self, stream: str) -> None:
        """Drop whoever publishes into ``stream``, as a room that removes its user would: the
        publish's connection is closed from the room's side."""
        query = urlencode({"app": "push", "name": stream})
        with urllib.request.urlopen(f"{self.http_base}/control/drop/publisher?{query}", timeout=5):
            pass

    @property
    def preview_url(self) -> str:
        """Browser page listing the live rooms; add ``#room`` to open one."""
        return f"{self.http_base}/"

    def start(self) -> None:
        """Render the config, start nginx and wait until both ports accept connections.

        Raises:
            RuntimeError: nginx exited or did not listen within 10 s (with its error log tail).
        """
        if self._proc is not None and self._proc.poll() is None:
            return
        nginx = find_binary("nginx", "/usr/sbin/nginx")
        if not RTMP_MODULE.is_file():
            raise FileNotFoundError(
                f"nginx RTMP module missing at {RTMP_MODULE}; run scripts/setup "
                "(Debian package libnginx-mod-rtmp)"
            )
        if self.auth is not None:
            self.auth.start()
        self._write_config()
        # Fresh logs per start, so a failure shows this attempt's errors only; a stale pid
        # file would pass the check below.
        for stale in (self.pid_file, self.error_log):
            stale.unlink(missing_ok=True)
        # -e: nginx opens its error log before reading the config; keep it in workdir.
        cmd = [nginx, "-p", str(self._workdir), "-c", str(self.config_path)]
        cmd += ["-e", str(self.error_log)]
        with (self._workdir / "nginx.out").open("wb") as out:
            # New session: a Ctrl-C in the terminal must not kill it before we stop it.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        # nginx writes its pid file only once every listen socket is bound. Ports that
        # accept are not proof: a port taken by someone else accepts too, and nginx keeps
        # its other sockets listening for ~2 s of bind retries before it gives up.
        while self._read_pid() != self._proc.pid:
            self._check_alive(deadline, "nginx did not bind its ports")
            time.sleep(0.05)
        for port in (self._rtmp_port, self._http_port):
            while True:
                self._check_alive(deadline, f"nginx did not listen on port {port}")
                try:
                    wait_for_port(LOCALHOST, port, timeout=0.2)
                    break
                except TimeoutError:
                    pass

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL after 5 s). Safe to call twice."""
        stop_process(self._proc, grace=5.0)
        self._proc = None
        if self.auth is not None:
            self.auth.stop()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _check_alive(self, deadline: float, timeout_reason: str) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            self._fail(f"nginx exited with status {self._proc.returncode}")
        if time.monotonic() > deadline:
            self._fail(f"{timeout_reason} within {START_TIMEOUT:g} s")

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        out = log_tail(self._workdir / "nginx.out", lines=2)
        raise RuntimeError(
            f"local room failed to start: {reason}\n"
            f"last lines of {self.error_log}:\n{log_tail(self.error_log)}\n{out}"
        )

    def _write_config(self) -> None:
        for path in (self._workdir / "tmp", self.hls_dir, self._media_dir):
            path.mkdir(parents=True, exist_ok=True)
        values = {
            "rtmp_module": str(RTMP_MODULE),
            "user_line": _user_line(),
            "workdir": str(self._workdir),
            "media_dir": str(self._media_dir),
            "www_dir": str(WWW_DIR),
            "rtmp_port": str(self._rtmp_port),
            "http_port": str(self._http_port),
            "publish_auth": self._publish_auth_lines(),
            "publishers_location": self._publishers_location(),
            "hls": "on" if self._hls else "off",
        }
        self.config_path.write_text(render_template(TEMPLATE.read_text(), values))

    def _publish_auth_lines(self) -> str:
        if self.auth is None:
            return ""
        base = f"http://{LOCALHOST}:{self.auth.port}"
        return f"on_publish {base}/on_publish;\n            on_publish_done {base}/on_publish_done;"

    def _publishers_location(self) -> str:
        if self.auth is None:
            return ""
        return (
            "location = /publishers.json {\n"
            f"            proxy_pass http://{LOCALHOST}:{self.auth.port}/publishers;\n"
            "            add_header Cache-Control no-cache;\n"
            "        }"
        )


def publishers_at(stat_url: str, stream: str) -> int:
    """Publishing clients of ``stream`` in an nginx-rtmp ``/stat`` document.

    A stream block says ``<publishing/>`` once for the stream and once in its publishing
    client's block, so the clients are counted, not the markers.
    """
    return sum("<publishing/>" in client for client in _clients_at(stat_url, stream))


def players_at(stat_url: str, stream: str) -> int:
    """Playing clients (viewers) of ``stream``, waiting for a publisher or watching."""
    return sum("<publishing/>" not in client for client in _clients_at(stat_url, stream))


def _clients_at(stat_url: str, stream: str) -> list[str]:
    """The ``<client>`` blocks of ``stream`` in an nginx-rtmp ``/stat`` document."""
    with urllib.request.urlopen(stat_url, timeout=5) as resp:
        xml = resp.read().decode()
    marker = f"<name>{stream}</name>"
    if marker not in xml:
        return []
    block = xml.split(marker, 1)[1].split("</stream>", 1)[0]
    return block.split("<client>")[1:]
