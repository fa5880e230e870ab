"""A room that is a directory: the FLV a room's ingest would receive, kept for reading back.

``push(..., connect=RoomFiles(directory).connect)`` sends a push into files instead of over
RTMP, one file per publish (the first, and one more after each reconnect), as a viewer
would receive each. With a :class:`~pipeline.clock.VirtualClock` the whole push then takes
only the time its media work takes, and what it sent can be checked by decoding the files
(``av.open(path)``): timestamps, keyframes, codecs, the picture and the sound.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import BinaryIO


class FileRoom:
    """A room connection (``pipeline.sink.RoomConnection``) that writes into a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = path.open("wb")
        self._lock = threading.Lock()
        #: Set once the publish was cut off (a stop the push was slow to act on).
        self.cut_off = False

    def write(self, data: bytes) -> int:
        """Append FLV bytes; OSError once cut off or closed (as a broken connection)."""
        with self._lock:
            if self._file is None:
                raise BrokenPipeError("the file room's publish has ended")
            self._file.write(data)
            return len(data)

    def cut(self) -> None:
        """End the publish now, from any thread."""
        self.cut_off = True
        self.close()

    def close(self) -> None:
        """End the publish."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class RoomFiles:
    """Where file rooms write: ``publish-1.flv``, ``publish-2.flv``… in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: list[Path] = []
        self.rooms: list[FileRoom] = []
        directory.mkdir(parents=True, exist_ok=True)

    def connect(self, url: str, timeout: float) -> FileRoom:
        """A new publish (``push()``'s ``connect``): the next file."""
        path = self.directory / f"publish-{len(self.files) + 1}.flv"
        self.files.append(path)
        room = FileRoom(path)
        self.rooms.append(room)
        return room
