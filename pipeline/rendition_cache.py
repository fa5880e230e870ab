"""Where renditions are kept: a directory, bounded in size, shared by the worker processes.

Layout: ``<root>/<format key>/<identity key>.mp4`` with a ``.json`` beside it (what it is
a rendition of, the URL redacted). A rendition is written to a ``.part`` file and renamed
into place once complete, so a reader never sees half of one; a lock file (``flock``, which
the kernel drops when its holder dies) makes sure two processes preparing the same clip
produce one rendition. Each use touches a rendition's time, and past ``max_bytes`` the least
recently used go first. Everything is on disk: a restart loses nothing.

Worker machines share renditions through an optional second tier, an S3-compatible store
(:class:`~pipeline.rendition_store.S3Store`). The directory stays the working tier (a push
remuxes a local file): a rendition missing here is downloaded from the store, under its
lock, before it is used; one committed here is published there, the first machine's
copy winning. The store is a saving like the directory: when it fails, the cache logs it,
leaves it alone for a while (:data:`SHARED_PAUSE_SECONDS`) and goes on locally.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from .identity import identity_key
from .rendition_store import SUFFIX, S3Store, SharedStoreError, over_budget

log = logging.getLogger(__name__)

#: How long a shared store that failed is left alone: a dead endpoint then costs one
#: connection timeout in this time, not one per clip of every push.
SHARED_PAUSE_SECONDS = 30.0

#: The longest a push waits for a rendition to come down from the shared store, by
#: default: a clip of a minute or two at 720p (a few MB) on a data-centre network, within
#: the 500 ms a switch has. A larger one finishes downloading for the next push; this one
#: is encoded as it plays.
FETCH_WAIT_SECONDS = 0.25

T = TypeVar("T")


@dataclass
class Claim:
    """The right to write one rendition: write ``part``, then :meth:`commit`.

    ``existing`` is the rendition another process finished while this one waited for the
    lock, or the one fetched from the shared store (nothing to write then).
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
        self.meta = meta | {"Bytes": self.size}
        self.path.with_suffix(".json").write_text(json.dumps(self.meta))
        os.replace(self.part, self.path)
        self.committed = True
        return self.path

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self.part.stat().st_size if self.part.exists() else 0


@dataclass(frozen=True)
class Found:
    """A rendition found: where it is, and whether it was just downloaded from the shared
    store (a push counts those apart)."""

    path: Path
    fetched: bool = False


class RenditionCache:
    """Renditions in a local (or shared POSIX) directory, and optionally in an
    S3-compatible store ``shared`` by the worker machines."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        shared: S3Store | None = None,
        fetch_wait: float = FETCH_WAIT_SECONDS,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.shared = shared
        #: The longest a push waits for a download from ``shared`` (see ``locate``).
        self.fetch_wait = fetch_wait
        #: Until when (monotonic) the shared store is left alone after a failure.
        self._shared_paused_until = 0.0

    def path_for(self, identity: str, format_key: str) -> Path:
        """Where the rendition of ``identity`` in ``format_key`` lives (or would)."""
        return self.root / format_key / f"{identity_key(identity)}{SUFFIX}"

    def here(self, identity: str, format_key: str) -> Path | None:
        """This machine's rendition, marked as just used; None if it has none (the shared
        store is not asked)."""
        path = self.path_for(identity, format_key)
        return path if _used(path) else None

    def find(self, identity: str, format_key: str) -> Path | None:
        """The rendition, marked as just used; None if there is none (see :meth:`locate`)."""
        found = self.locate(identity, format_key)
        return found.path if found is not None else None

    def locate(
        self, identity: str, format_key: str, wait_fetch: float | None = None
    ) -> Found | None:
        """The rendition, marked as just used: this machine's, else downloaded from the
        shared store; None if neither has it.

        Never waits for another process: a rendition that one of this machine's processes
        writes or downloads right now is missing (a push then encodes the clip as it plays,
        as it does without a shared store; :func:`~pipeline.renditions.prepare` waits in
        :meth:`claim`). So two processes download a rendition once. ``wait_fetch``: the
        longest a download may hold the caller up; one that takes longer finishes in the
        background for the next use, and the rendition is missing now (a switch must not
        wait for a large file to cross the network).
        """
        path = self.path_for(identity, format_key)
        if _used(path):
            return Found(path)
        if self.shared is None:
            return None
        if wait_fetch is None:
            return Found(path, fetched=True) if self._fetch_unless_locked(path) else None
        done = threading.Event()
        outcome: list[bool] = []

        def fetch() -> None:
            try:
                outcome.append(self._fetch_unless_locked(path))
            except OSError as exc:  # this machine's disk: the clip is encoded as it plays
                log.warning("rendition %s: could not download it: %s", path.name, exc)
                outcome.append(False)
            finally:
                done.set()

        threading.Thread(target=fetch, name="rendition-fetch", daemon=True).start()
        if done.wait(wait_fetch) and outcome[0]:
            return Found(path, fetched=True)
        if not done.is_set():
            log.info("rendition %s: download under way, not waited for", path.name)
        return None

    def _fetch_unless_locked(self, path: Path) -> bool:
        """Download the rendition at ``path`` unless another process of this machine holds
        its lock (writing or downloading it); whether it is here now, downloaded."""
        shared = self.shared
        # Asked before the lock is taken: a slow "not there" must not keep this machine's
        # push from recording the clip while it waits for the answer.
        if shared is None or not self._use_shared("look-up", lambda: shared.has(*_names(path))):
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_suffix(".lock").open("a") as lock:
            if not _lock(lock, wait=False):
                return False
            try:
                if _used(path):  # downloaded by the process that held the lock
                    return True
                fetched = self._fetch(path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        if fetched:
            self.evict(keep=path)
        return fetched

    @contextlib.contextmanager
    def claim(
        self,
        identity: str,
        format_key: str,
        wait: bool = True,
        background: bool = False,
        fetch: bool = True,
    ) -> Iterator[Claim | None]:
        """Hold the right to write a rendition; None if another process holds it and
        ``wait`` is false. A ``part`` left uncommitted is removed on the way out.

        With a shared store, a rendition it has is downloaded as the claim's ``existing``
        (unless not ``fetch``: a push that just missed it must not wait for a download). A
        committed one is published to it on the way out, after the lock is released: in a
        thread if ``background`` (a push must not wait for an upload), else before the
        ``with`` ends (a preparation is ready once every machine can have it).
        """
        path = self.path_for(identity, format_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fetched = False
        with path.with_suffix(".lock").open("a") as lock:
            if not _lock(lock, wait):
                yield None
                return
            part = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.part")
            existing = path if _used(path) else None
            if existing is None and fetch and self._fetch(path):
                existing, fetched = path, True
            claim = Claim(path, part, existing=existing)
            try:
                yield claim
            finally:
                part.unlink(missing_ok=True)
                fcntl.flock(lock, fcntl.LOCK_UN)
        if claim.committed or fetched:
            self.evict(keep=path)
        if claim.committed and self.shared is not None:
            if background:
                publish = threading.Thread(
                    target=self._publish, args=(path, claim.meta), name="rendition-publish"
                )
                publish.daemon = True  # an upload cut by an exit leaves nothing in the store
                publish.start()
            else:
                self._publish(path, claim.meta)

    def _fetch(self, path: Path) -> bool:
        """Download the rendition at ``path`` from the shared store, if it has it (the
        caller holds its lock). A ``.part`` first, renamed into place once complete."""
        shared = self.shared
        if shared is None:
            return False
        part = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.part")
        try:
            fetched = self._use_shared("fetch", lambda: shared.fetch(*_names(path), part))
            if fetched is None:
                return False
            meta = fetched.meta | {"Bytes": part.stat().st_size}
            path.with_suffix(".json").write_text(json.dumps(meta))
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)
        log.info("rendition %s fetched from %s", path.name, shared.where)
        if shared.due_for_touch(fetched):
            # A copy inside the store, seconds for a large one: not on a push's way.
            touch = threading.Thread(
                target=self._use_shared,
                args=("touch", lambda: shared.touch(*_names(path))),
                name="rendition-touch",
            )
            touch.daemon = True
            touch.start()
        return True

    def _publish(self, path: Path, meta: dict[str, Any]) -> None:
        """Put a committed rendition in the shared store (unless one is there), then keep
        the store within its size. Never raises: the local rendition serves regardless."""
        shared = self.shared
        if shared is None:
            return
        try:
            published = self._use_shared(
                "publish", lambda: shared.publish(*_names(path), path, meta)
            )
        except OSError as exc:  # evicted here before a background upload began
            log.info("rendition %s not published: %s", path.name, exc)
            return
        if published:
            log.info("rendition %s published to %s", path.name, shared.where)
            key = shared.key(*_names(path))
            self._use_shared("evict", lambda: shared.evict(keep=key))
        elif published is not None:
            log.info("rendition %s: another machine published it first", path.name)

    def _use_shared(self, what: str, call: Callable[[], T]) -> T | None:
        """``call``'s answer; None, logged, if the shared store failed (and it is then left
        alone for :data:`SHARED_PAUSE_SECONDS`) or is being left alone."""
        shared = self.shared
        if shared is None or time.monotonic() < self._shared_paused_until:
            return None
        try:
            return call()
        except SharedStoreError as exc:
            self._shared_paused_until = time.monotonic() + SHARED_PAUSE_SECONDS
            log.warning(
                "shared rendition store %s: %s failed, local renditions only for %g s: %s",
                shared.where,
                what,
                SHARED_PAUSE_SECONDS,
                exc,
            )
            return None

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
        removed, total = over_budget(entries, self.max_bytes, keep)
        for path in removed:
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
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


def _used(path: Path) -> bool:
    """Mark the rendition at ``path`` as just used; False if there is none."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _names(path: Path) -> tuple[str, str]:
    """(format key, identity key) of the rendition at ``path``: its names in the store."""
    return path.parent.name, path.stem


def _lock(lock: IO[str], wait: bool) -> bool:
    """Take ``lock``'s exclusive flock; False if ``wait`` is false and someone holds it."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True
