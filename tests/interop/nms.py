"""node-media-server (npm), run for a test: an RTMP server that relays to players.

scripts/setup installs it into .venv/interop; without it the tests that need it fail,
saying how to install it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent.parent
MODULES = REPO / ".venv" / "interop" / "node_modules"
SERVER = """
const NodeMediaServer = require('node-media-server');
new NodeMediaServer({
  logType: 1,
  rtmp: { port: parseInt(process.argv[2]), chunk_size: 4096, gop_cache: true,
          ping: 2, ping_timeout: 4 },
}).run();
"""


@dataclass(frozen=True)
class NodeMediaServer:
    """Where it listens: ``rtmp``, an ``rtmp://…/live`` base URL."""

    rtmp: str


@contextmanager
def node_media_server(workdir: Path) -> Iterator[NodeMediaServer]:
    """node-media-server on free ports, until the block ends."""
    if not (MODULES / "node-media-server").exists():
        raise RuntimeError(f"node-media-server is not in {MODULES}: run scripts/setup")
    script = workdir / "nms_server.js"
    script.write_text(SERVER)
    port = free_port()
    log = (workdir / "nms.log").open("ab")
    proc = subprocess.Popen(
        ["node", str(script), str(port)],
        env={"NODE_PATH": str(MODULES), "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port("127.0.0.1", port, 15)
        yield NodeMediaServer(f"rtmp://127.0.0.1:{port}/live")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
