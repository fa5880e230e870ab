"""Where renditions are kept: a directory, bounded in size, shared by the worker processes.

Layout: ``<root>/<format key>/<identity key>.mp4`` with a ``.json`` beside it (what it is
a rendition of, the URL redacted). A rendition is written to a ``.part`` file and renamed
into place once complete, so a reader never sees half of one; a lock file (``flock``, which
the kernel drops when its holder dies) makes sure two processes preparing the same clip
produce one rendition. Each use touches a rendition's time, and past ``max_bytes`` the least
recently used go first. Everything is on disk: a restart loses nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .identity import identity_key

log = logging.getLogger(__name__)

SUFFIX = ".mp4"


@dataclass
class Claim:
    """The right to write one rendition: write ``part``, then :meth:`commit`.

    ``existing`` is the rendition another process finished while this one waited for the
    lock (nothing to write then).
    """

    path: Path
    part: Path
    existing: Path | None = None
    committed: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def commit(self, **meta: Any) -> Path:
        """Put the written ``part`` in place, with ``meta`` beside it."""
        with self.part.open("rb") as written:
            os.fsync(written.fileno())
        self.path.with_suffix(".json").write_text(json.dumps(meta | {"Bytes": self.size}))
        os.replace(self.part, self.path)
        self.committed = True
        return self.path

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.part.stat().st_size if self.part.exists() else 0


class RenditionCache:
    """Renditions on a local (or shared POSIX) filesystem."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path_for(self, identity: str, format_key: str) -> Path:
        """Where the rendition of ``identity`` in ``format_key`` lives (or would)."""
        return self.root / format_key / f"{identity_key(identity)}{SUFFIX}"

    def find(self, identity: str, format_key: str) -> Path | None:
        """The rendition, marked as just used; None if there is none."""
        path = self.path_for(identity, format_key)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    @contextlib.contextmanager
    def claim(self, identity: str, format_key: str, wait: bool = True) -> Iterator[Claim | None]:
        """Hold the right to write a rendition; None if another process holds it and
        ``wait`` is false. A ``part`` left uncommitted is removed on the way out."""
        path = self.path_for(identity, format_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("a") as lock:
            if not _lock(lock, wait):
                yield None
                return
            part = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.part")
            claim = Claim(path, part, existing=self.find(identity, format_key))
            try:
                yield claim
            finally:
                part.unlink(missing_ok=True)
                fcntl.flock(lock, fcntl.LOCK_UN)
        if claim.committed:
            self.evict(keep=path)

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove the least recently used renditions until the cache fits ``max_bytes``.

        A push still reading a removed rendition keeps reading it (the file lives while
        open); the next one encodes it again.
        """
        self._remove_orphans()
        entries = []
        for path in self.root.glob(f"*/*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                entries.append((info.st_mtime, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            total -= size
            removed.append(path)
        if removed:
            log.info("rendition cache: %d removed to stay under %d bytes", len(removed), total)
        return removed

    def _remove_orphans(self) -> None:
        """Remove the ``.part`` files of writers that died (killed, out of memory): a part
        whose rendition's lock nobody holds is nobody's."""
        for part in self.root.glob("*/*.part"):
            rendition = part.with_name(part.name.split(".", 1)[0] + SUFFIX)
            with contextlib.suppress(OSError), rendition.with_suffix(".lock").open("a") as lock:
                if _lock(lock, wait=False):
                    part.unlink(missing_ok=True)
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def usage(self) -> tuple[int, int]:
        """(renditions, bytes) held now."""
        sizes = [p.stat().st_size for p in self.root.glob(f"*/*{SUFFIX}") if p.exists()]
        return len(sizes), sum(sizes)


def _lock(lock: IO[str], wait: bool) -> bool:
    """Take ``lock``'s exclusive flock; False if ``wait`` is false and someone holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True
