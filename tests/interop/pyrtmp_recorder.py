"""An RTMP server built on pyrtmp (PyPI) that records what each publish delivers.

    python -m tests.interop.pyrtmp_recorder PORT OUT.jsonl

Every audio and video message becomes one JSON line: its stream's name, type (8, 9), the
timestamp pyrtmp reassembled, and the payload as hex. pyrtmp's own chunk reader does the
reassembly: that is what is under test, not this file.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from pyrtmp.rtmp import RTMPProtocol, SimpleRTMPController, SimpleRTMPServer


class Recorder(SimpleRTMPController):
    """pyrtmp's simple controller, writing each media message down."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def _record(self, kind: int, message: Any) -> None:
        line = {"kind": kind, "timestamp": message.timestamp, "payload": message.payload.hex()}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    async def on_video_message(self, session: Any, message: Any) -> None:
        self._record(9, message)

    async def on_audio_message(self, session: Any, message: Any) -> None:
        self._record(8, message)


async def serve(port: int, out: TextIO) -> None:
    server = SimpleRTMPServer()
    loop = asyncio.get_event_loop()
    server.server = await loop.create_server(
        lambda: RTMPProtocol(controller=Recorder(out)), host="127.0.0.1", port=port
    )
    await server.start()
    await server.wait_closed()


if __name__ == "__main__":
    with open(sys.argv[2], "a") as log:
        asyncio.run(serve(int(sys.argv[1]), log))
