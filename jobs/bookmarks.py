"""The template's Redis feature: a bookmark per (SdkAppId, room, VideoSrc).

Key ``roomcast:progress:<SdkAppId>:<room>:<sha256 of VideoSrc>`` (a hash), where VideoSrc
is taken without its secret query values, so a re-signed URL of the same file finds its
bookmark. Fields: Position and Duration (seconds of source), RequestId, UpdatedAt (epoch
seconds), VideoSrc (redacted). Written about once a second and on every stop, deleted when
a push reaches the end of the source, expiring after ``ROOMCAST_PROGRESS_TTL_SECONDS``.
With ``RedisTls=true`` (or a ``rediss://`` service URL) the connection uses TLS, verified
against the system CAs and ``ROOMCAST_REDIS_TLS_CA_FILE``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ProgressStoreError
from .redact import is_safe_param, redact_url

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


def _template_seconds(millis: bytes) -> float | None:
    try:
        return max(0.0, float(millis) / 1000)
    except ValueError:
        return None  # not the template's number: start from the beginning


def bookmark_key(sdk_app_id: int, room: str, video_src: str) -> str:
    """The documented key of one bookmark."""
    digest = hashlib.sha256(source_identity(video_src).encode()).hexdigest()
    return f"roomcast:progress:{sdk_app_id}:{room}:{digest}"


class Bookmark:
    """One source's saved position in one room."""

    def __init__(
        self,
        target: RedisTarget,
        key: str,
        ttl: int,
        video_src: str,
        tls_ca_file: str | None = None,
        template_key: str | None = None,
    ) -> None:
        """Bookmark ``key`` in ``target``; ``tls_ca_file`` is trusted besides the system CAs
        when ``target.tls`` is set. ``template_key``: the template's own key as well
        (:func:`template_key`), read when ``key`` is missing and written beside it."""
        self.target = target
        self.key = key
        self.template_key = template_key
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
        self._pending: tuple[str, float, float | None] | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    def save_soon(self, request_id: str, position: float, duration: float | None) -> None:
        """Queue the latest position for a background write: the media loop never waits
        on the progress Redis (a slow or dead one must not stall the room's stream)."""
        with self._wake:
            self._pending = (request_id, position, duration)
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
        where = f"{self.target.host}:{self.target.port}" + (" (TLS)" if self.target.tls else "")
        try:
            self._redis.ping()
        except redis.AuthenticationError:
            raise ProgressStoreError(
                f"the progress Redis at {where} refused the password (RedisPassword)"
            ) from None
        except redis.RedisError as exc:
            # A certificate failure arrives here as a ConnectionError whose text carries
            # OpenSSL's reason (e.g. CERTIFICATE_VERIFY_FAILED), which is what an operator needs.
            hint = ""
            if self.target.tls and isinstance(exc, redis.TimeoutError):
                # A plain Redis never answers a TLS ClientHello: the only symptom is a timeout.
                hint = " (a timeout over TLS often means that the port does not speak TLS)"
            raise ProgressStoreError(
                f"the progress Redis at {where} cannot be used: "
                f"{type(exc).__name__}: {_reason(exc)}{hint}"
            ) from None

    def load(self) -> float | None:
        """The saved position (seconds in the source), or None when there is no bookmark."""
        self.check()
        raw = cast("bytes | None", self._redis.hget(self.key, "Position"))
        if raw is None and self.template_key is not None:
            millis = cast("bytes | None", self._redis.get(self.template_key))
            return None if millis is None else _template_seconds(millis)
        return None if raw is None else float(raw)

    def save(self, request_id: str, position: float, duration: float | None) -> None:
        """Write the position; a failure is remembered (shown in the status), not raised."""
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(
                self.key,
                mapping={
                    "Position": f"{position:.3f}",
                    "Duration": "" if duration is None else f"{duration:.3f}",
                    "RequestId": request_id,
                    "UpdatedAt": f"{time.time():.3f}",
                    "VideoSrc": self._video_src,
                },
            )
            pipe.expire(self.key, self._ttl)
            if self.template_key is not None:
                pipe.set(self.template_key, str(round(position * 1000)), ex=self._ttl)
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

    def delete(self) -> None:
        """The push reached the end: the next one starts from the beginning."""
        try:
            self._redis.delete(self.key, *([self.template_key] if self.template_key else []))
        except redis.RedisError as exc:
            log.warning("could not delete the finished bookmark: %s", _reason(exc))

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


def _reason(exc: BaseException) -> str:
    return str(exc).split("\n", 1)[0] or type(exc).__name__
