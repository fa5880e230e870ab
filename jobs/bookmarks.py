"""The template's Redis feature: a bookmark per (SdkAppId, room, VideoSrc).

Key ``roomcast:progress:<SdkAppId>:<room>:<sha256 of VideoSrc>`` (a hash), where VideoSrc
is taken without its secret query values, so a re-signed URL of the same file finds its
bookmark. Fields: Position and Duration (seconds of source), RequestId, UpdatedAt (epoch
seconds), VideoSrc (redacted). Written about once a second and on every stop, deleted when
a push reaches the end of the source, expiring after ``ROOMCAST_PROGRESS_TTL_SECONDS``.
A fan-out push (Targets) keeps one such bookmark in each of its rooms, written while that
room is live: a room removed, failed or behind keeps the position its viewers last saw.
With ``RedisTls=true`` (or a ``rediss://`` service URL) the connection uses TLS, verified
against the system CAs and ``ROOMCAST_REDIS_TLS_CA_FILE``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ProgressStoreError, SourceError
from .records import MAIN_TARGET, JobRecord, JobSecrets
from .redact import is_safe_param, redact_url
from .settings import Settings
from .urlguard import check_source_address, redis_host_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedisTarget:
    """Which Redis holds the bookmarks (the request's, or the service's own)."""

    host: str
    port: int
    password: str | None = None
    db: int = 0
    tls: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisTarget:
        """The service's own Redis, from ``ROOMCAST_REDIS_URL`` (``rediss://``: TLS)."""
        parts = urlsplit(url)
        db = int(parts.path.lstrip("/") or 0)
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            parts.password,
            db,
            tls=parts.scheme.lower() == "rediss",
        )


def source_identity(video_src: str) -> str:
    """VideoSrc with only its harmless query parameters (``SAFE_PARAMS``): the same file
    signed twice, or with a new token, is one source."""
    parts = urlsplit(video_src)
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_safe_param(k)]
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def template_key(room: str) -> str:
    """The template's progress key: one per room, the position in milliseconds."""
    return f"trtc:play:position:{room}"


def _seconds(raw: bytes) -> float | None:
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # not a position (written by hand?): start from the beginning


def _template_seconds(millis: bytes) -> float | None:
    try:
        return max(0.0, float(millis) / 1000)
    except ValueError:
        return None  # not the template's number: start from the beginning


def bookmark_key(sdk_app_id: int, room: str, video_src: str) -> str:
    """The documented key of one bookmark."""
    digest = hashlib.sha256(source_identity(video_src).encode()).hexdigest()
    return f"roomcast:progress:{sdk_app_id}:{room}:{digest}"


@dataclass(frozen=True)
class RoomKeys:
    """Where one room's bookmark lives: roomcast's key (:func:`bookmark_key`), and the
    template's (:func:`template_key`) when it is written as well."""

    key: str
    template_key: str | None = None


#: Finds the keys of a fan-out room added while the push runs (None: unknown).
RoomResolver = Callable[[str], "RoomKeys | None"]


class Bookmark:
    """One source's saved position in the rooms of a push: its own room, or each room of a
    fan-out, by room id (``main``, a ``TargetId``).

    Each room has a bookmark of its own: a fan-out room that was removed, or failed, keeps
    the position its viewers last saw while the others go on.
    """

    def __init__(
        self,
        target: RedisTarget,
        rooms: Mapping[str, RoomKeys],
        ttl: int,
        video_src: str,
        tls_ca_file: str | None = None,
        resolve: RoomResolver | None = None,
    ) -> None:
        """Bookmarks of ``rooms`` in ``target``; ``tls_ca_file`` is trusted besides the
        system CAs when ``target.tls`` is set. ``resolve`` finds the keys of a room that
        :meth:`save` names and ``rooms`` lacks (one added while the push runs)."""
        self.target = target
        self.rooms = dict(rooms)
        self._resolve = resolve
        self._ttl = ttl
        self._video_src = redact_url(video_src)
        tls: dict[str, Any] = {}
        if target.tls:
            # Verify the chain and the host name explicitly: redis-py's defaults for
            # ssl_check_hostname differ between the versions we accept.
            tls = {
                "ssl": True,
                "ssl_ca_certs": tls_ca_file or None,
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        # No retries with backoff: a dead Redis must cost a failed write, not seconds.
        self._redis = redis.Redis(
            host=target.host,
            port=target.port,
            password=target.password,
            db=target.db,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            **tls,
        )
        self.failing: str | None = None
        self._pending: tuple[str, float, float | None, tuple[str, ...] | None] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    def save_soon(
        self,
        request_id: str,
        position: float,
        duration: float | None,
        rooms: Collection[str] | None = None,
    ) -> None:
        """Queue the latest position for a background write: the media loop never waits
        on the progress Redis (a slow or dead one must not stall the room's stream)."""
        with self._wake:
            self._pending = (request_id, position, duration, _rooms(rooms))
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, daemon=True, name="bookmark-writer"
                )
                self._writer.start()
            self._wake.notify()

    def _write_loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._pending is None:
                    return
                pending, self._pending = self._pending, None
            self.save(*pending)

    def check(self) -> None:
        """Fail now, with the host and the cause (never the password), if Redis is unusable."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise self._unusable(exc) from None

    def _unusable(self, exc: redis.RedisError) -> ProgressStoreError:
        """What ``exc`` means for the caller: the host and the cause, never the password."""
        where = f"{self.target.host}:{self.target.port}" + (" (TLS)" if self.target.tls else "")
        if isinstance(exc, redis.AuthenticationError):
            return ProgressStoreError(
                f"the progress Redis at {where} refused the password (RedisPassword)"
            )
        # A certificate failure arrives here as a ConnectionError whose text carries
        # OpenSSL's reason (e.g. CERTIFICATE_VERIFY_FAILED), which is what an operator needs.
        hint = ""
        if self.target.tls and isinstance(exc, redis.TimeoutError):
            # A plain Redis never answers a TLS ClientHello: the only symptom is a timeout.
            hint = " (a timeout over TLS often means that the port does not speak TLS)"
        return ProgressStoreError(
            f"the progress Redis at {where} cannot be used: "
            f"{type(exc).__name__}: {_reason(exc)}{hint}"
        )

    def positions(self) -> dict[str, float | None]:
        """Each room's saved position (seconds in the source; None: no bookmark), read in
        one round trip (:class:`ProgressStoreError` if Redis fails it)."""
        pipe = self._redis.pipeline(transaction=False)
        for keys in self.rooms.values():
            pipe.hget(keys.key, "Position")
            if keys.template_key is not None:
                pipe.get(keys.template_key)
        try:
            answers = iter(cast("list[bytes | None]", pipe.execute()))
        except redis.RedisError as exc:
            raise self._unusable(exc) from None
        found: dict[str, float | None] = {}
        for room, keys in self.rooms.items():
            raw = next(answers)
            millis = next(answers) if keys.template_key is not None else None
            if raw is not None:
                found[room] = _seconds(raw)
            else:
                found[room] = None if millis is None else _template_seconds(millis)
        return found

    def load(self) -> float | None:
        """Where the push starts: the earliest of its rooms' saved positions, so that no
        room misses a second (None, the beginning, when one of them has no bookmark)."""
        found = list(self.positions().values())
        if not found or None in found:
            return None
        return min(p for p in found if p is not None)

    def save(
        self,
        request_id: str,
        position: float,
        duration: float | None,
        rooms: Collection[str] | None = None,
    ) -> None:
        """Write the position for ``rooms`` (default: every room); a failure is remembered
        (shown in the status), not raised."""
        fields: Mapping[Any, str] = {
            "Position": f"{position:.3f}",
            "Duration": "" if duration is None else f"{duration:.3f}",
            "RequestId": request_id,
            "UpdatedAt": f"{time.time():.3f}",
            "VideoSrc": self._video_src,
        }
        try:
            pipe = self._redis.pipeline(transaction=True)
            for keys in self._keys(rooms):
                pipe.hset(keys.key, mapping=fields)
                pipe.expire(keys.key, self._ttl)
                if keys.template_key is not None:
                    pipe.set(keys.template_key, str(round(position * 1000)), ex=self._ttl)
            pipe.execute()
        except redis.RedisError as exc:
            if self.failing is None:
                log.warning(
                    "saving progress to %s:%s failed: %s",
                    self.target.host,
                    self.target.port,
                    _reason(exc),
                )
            self.failing = f"progress is not being saved: {_reason(exc)}"
        else:
            if self.failing is not None:
                log.info("saving progress works again")
            self.failing = None

    def delete(self, rooms: Collection[str] | None = None) -> None:
        """The push reached the end in ``rooms`` (default: every room): their next push
        starts from the beginning."""
        names = [
            name
            for keys in self._keys(rooms)
            for name in (keys.key, keys.template_key)
            if name is not None
        ]
        try:
            if names:
                self._redis.delete(*names)
        except redis.RedisError as exc:
            log.warning("could not delete the finished bookmark: %s", _reason(exc))

    def _keys(self, rooms: Collection[str] | None) -> list[RoomKeys]:
        """The keys of ``rooms`` (default: every room), finding those of rooms added since."""
        if rooms is None:
            return list(self.rooms.values())
        for room in rooms:
            if room not in self.rooms and self._resolve is not None:
                found = self._resolve(room)
                if found is not None:
                    self.rooms[room] = found
        return [self.rooms[room] for room in rooms if room in self.rooms]

    def stop_writer(self) -> None:
        """Stop the background writer and wait for a write in flight.

        Called before the final save or the delete, so an older position written late can
        never bring back a bookmark that the end of the source removed.
        """
        with self._wake:
            self._closed = True
            self._pending = None
            self._wake.notify()
        if self._writer is not None:
            self._writer.join(timeout=5)

    def close(self) -> None:
        """Stop the background writer (after its last write) and release the connections."""
        self.stop_writer()
        self._redis.close()


def open_bookmark(
    settings: Settings,
    record: JobRecord,
    secrets: JobSecrets,
    resolve: RoomResolver | None = None,
) -> Bookmark:
    """The bookmarks of a push's rooms (each room of a fan-out), in the Redis its request
    names or the service's own; :class:`ProgressStoreError` now if that Redis is unusable.
    ``resolve``: see :class:`Bookmark`."""
    if record.RedisHost and settings.block_private_addresses:
        try:
            url = redis_host_url(record.RedisHost, record.RedisPort)
            check_source_address(url, settings.guard_networks)
        except SourceError as exc:
            raise ProgressStoreError(f"RedisHost: {exc.message}") from None
    if record.RedisHost:
        target = RedisTarget(
            record.RedisHost,
            record.RedisPort or 6379,
            secrets.RedisPassword,
            tls=record.RedisTls,
        )
    else:
        target = RedisTarget.from_url(settings.redis_url)
    targets = record.targets()
    rooms = (
        {MAIN_TARGET: record.Room.RtmpRoom}
        if targets is None
        else {t.TargetId: t.Room.RtmpRoom for t in targets}
    )
    bookmark = Bookmark(
        target,
        {
            room_id: room_keys(settings, record.SdkAppId, room, secrets.VideoSrc)
            for room_id, room in rooms.items()
        },
        settings.progress_ttl_seconds,
        secrets.VideoSrc,
        tls_ca_file=settings.redis_tls_ca_file,
        resolve=resolve,
    )
    bookmark.check()
    return bookmark


def room_keys(settings: Settings, sdk_app_id: int, room: str, video_src: str) -> RoomKeys:
    """One room's bookmark keys, the template's as well where the service writes it."""
    return RoomKeys(
        bookmark_key(sdk_app_id, room, video_src),
        template_key(room) if settings.template_resume_keys else None,
    )


def _rooms(rooms: Collection[str] | None) -> tuple[str, ...] | None:
    return None if rooms is None else tuple(rooms)


def _reason(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0] or type(exc).__name__
