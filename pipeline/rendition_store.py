"""The rendition cache's shared tier: any S3-compatible object store (AWS S3, MinIO, Ceph,
R2…), so that a clip encoded on one worker machine is remuxed on all of them.

Layout: ``<prefix>/<format key>/<identity key>.mp4``, the local cache's names, with the
rendition's meta JSON beside it as ``.json`` (a sibling object, not object metadata: that
is limited to 2 KB of ASCII headers, and a source URL can be longer, or Chinese). A
rendition is one ``PutObject`` with ``If-None-Match: *``: the first machine to finish it
wins, a later one is refused (412) and keeps its copy locally only. A single PUT becomes
visible whole or not at all, so a reader never sees half of one. Past ``max_bytes``, the
objects last written or touched longest ago go first.

Credentials come from boto3's own chain only (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, a profile, an instance role): nothing here holds, logs or
reports them. boto3 is imported when a store is built, so the API and workers without the
``s3`` extra never load it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from jobs.redact import redact_text

log = logging.getLogger(__name__)

K = TypeVar("K")

SUFFIX = ".mp4"
META_SUFFIX = ".json"
#: Bytes read from a download at a time.
CHUNK = 1 << 20
#: Error codes that mean "no such object" (HeadObject answers a bare 404).
MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
#: Error codes that mean "another writer got there first": 412 for a finished object, 409
#: while another conditional write of the same key is in flight (AWS).
LOST_RACE = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})


class SharedStoreError(Exception):
    """The shared store could not be used; the message says why, without credentials.

    Never reaches a user: the cache logs it and goes on with its local tier.
    """


@dataclass(frozen=True)
class Fetched:
    """A rendition downloaded from the shared store: its meta, and when its object was last
    written or touched (what shared eviction goes by)."""

    meta: dict[str, Any]
    last_modified: datetime


class S3Store:
    """Renditions in a bucket (under ``prefix``), bounded by ``max_bytes``.

    ``endpoint_url``: an S3-compatible server's (empty: AWS); ``region``: empty for the
    chain's default. ``touch_after``: a rendition fetched longer than this after its object
    was last written or touched is touched again (its last use, for eviction), at most once
    in that time whatever the number of machines fetching it.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        max_bytes: int,
        endpoint_url: str | None = None,
        region: str | None = None,
        touch_after: float = 3600.0,
    ) -> None:
        try:
            import boto3  # noqa: F401, PLC0415 - optional: the s3 extra
            from botocore.config import Config  # noqa: PLC0415
        except ImportError:
            raise SharedStoreError(
                "a shared rendition store needs boto3: pip install 'roomcast[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.max_bytes = max_bytes
        self.endpoint_url = endpoint_url or None
        self.touch_after = touch_after
        options: dict[str, Any] = {}
        if self.endpoint_url:
            # Other S3 servers: bucket in the path (a virtual host bucket.minio:9000 needs a
            # DNS entry per bucket), and checksums only where S3 requires them (botocore's
            # default CRC32 on every request is refused by some of them).
            options = {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        self._config = Config(
            connect_timeout=5,
            read_timeout=60,
            # One retry: a push waits on a fetch, and a dead store is paused by the cache.
            retries={"max_attempts": 2, "mode": "standard"},
            **options,
        )
        self._region = region or None
        self._made: tuple[int, Any] | None = None

    @property
    def _client(self) -> Any:
        """This process's S3 client, made on first use: a client (its connections) made
        before a prefork worker forks must not be shared with the children."""
        made = self._made
        if made is None or made[0] != os.getpid():
            import boto3  # noqa: PLC0415 - optional: the s3 extra

            # A session of its own: boto3's default session is not safe to share between
            # threads, a client is. Two threads may both make one the first time: harmless.
            client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self._region, config=self._config
            )
            made = self._made = (os.getpid(), client)
        return made[1]

    @property
    def where(self) -> str:
        """The store, for logs: ``s3://bucket/prefix``, and the endpoint's address."""
        at = f" at {redact_text(self.endpoint_url)}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{at}"

    def key(self, format_key: str, name: str, suffix: str = SUFFIX) -> str:
        """The object key of rendition ``name`` (its identity key) in ``format_key``."""
        base = f"{self.prefix}/" if self.prefix else ""
        return f"{base}{format_key}/{name}{suffix}"

    def fetch(self, format_key: str, name: str, dest: Path) -> Fetched | None:
        """Download the rendition into ``dest`` (written whole and synced, or raises);
        None when the store has none. Raises :class:`SharedStoreError`."""
        key = self.key(format_key, name)
        with _translated(f"fetching {key}"):
            try:
                answer = self._client.get_object(Bucket=self.bucket, Key=key)
            except self._client.exceptions.ClientError as exc:
                if _code(exc) in MISSING:
                    return None
                raise
            with answer["Body"] as body, dest.open("wb") as out:
                # botocore checks the length read against Content-Length: a cut download
                # raises instead of leaving a short file.
                shutil.copyfileobj(body, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            meta = self._meta(format_key, name)
        return Fetched(meta, answer["LastModified"])

    def publish(self, format_key: str, name: str, path: Path, meta: dict[str, Any]) -> bool:
        """Upload the rendition at ``path`` unless the store has one: True if this call put
        it there, False if another machine did first (that is fine: either is the clip in
        this format). Raises :class:`SharedStoreError`, or OSError if ``path`` cannot be
        read."""
        key = self.key(format_key, name)
        with _translated(f"publishing {key}"):
            # A HEAD first: the common loser need not send hundreds of MB to be refused.
            if self._exists(key):
                return False
            with path.open("rb") as body:
                try:
                    self._client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentType="video/mp4",
                        IfNoneMatch="*",
                    )
                except self._client.exceptions.ClientError as exc:
                    if _code(exc) in LOST_RACE:
                        return False
                    raise
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key(format_key, name, META_SUFFIX),
                Body=json.dumps(meta).encode(),
                ContentType="application/json",
            )
        return True

    def has(self, format_key: str, name: str) -> bool:
        """Whether the store holds the rendition. Raises :class:`SharedStoreError`."""
        key = self.key(format_key, name)
        with _translated(f"looking up {key}"):
            return self._exists(key)

    def touch(self, format_key: str, name: str) -> None:
        """Mark the rendition as just used: S3 cannot set an object's time, so it is copied
        onto itself (a copy inside the store; nothing is downloaded)."""
        key = self.key(format_key, name)
        with _translated(f"touching {key}"):
            self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                # S3 refuses a copy onto itself that changes nothing: the metadata is
                # "replaced" (by the same content type).
                MetadataDirective="REPLACE",
                ContentType="video/mp4",
            )

    def due_for_touch(self, fetched: Fetched) -> bool:
        """Whether a rendition just fetched should be touched (see ``touch_after``)."""
        age = datetime.now(UTC) - fetched.last_modified
        return age.total_seconds() >= self.touch_after

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete the renditions written or touched longest ago until the store holds at
        most ``max_bytes`` (never the object ``keep``), and the meta of renditions already
        gone. Returns the keys of the renditions deleted. Raises :class:`SharedStoreError`.

        A machine still downloading a deleted rendition gets it whole (S3 serves an object
        read in flight); the next one encodes it again.
        """
        with _translated("evicting"):
            renditions, metas = [], set()
            for item in self._objects():
                if item["Key"].endswith(SUFFIX):
                    renditions.append((item["LastModified"], item["Size"], item["Key"]))
                elif item["Key"].endswith(META_SUFFIX):
                    metas.add(item["Key"])
            removed, total = over_budget(renditions, self.max_bytes, keep)
            for key in removed:
                self._delete(key)
            # The meta of a rendition deleted by an eviction interrupted between the two.
            for meta in metas - {_meta_key(key) for _, _, key in renditions}:
                self._client.delete_object(Bucket=self.bucket, Key=meta)
        if removed:
            log.info("shared renditions: %d removed to stay under %d bytes", len(removed), total)
        return removed

    def usage(self) -> tuple[int, int]:
        """(renditions, bytes) the store holds now. Raises :class:`SharedStoreError`."""
        with _translated("listing"):
            sizes = [o["Size"] for o in self._objects() if o["Key"].endswith(SUFFIX)]
        return len(sizes), sum(sizes)

    def _delete(self, key: str) -> None:
        """Delete a rendition, then its meta."""
        self._client.delete_object(Bucket=self.bucket, Key=key)
        self._client.delete_object(Bucket=self.bucket, Key=_meta_key(key))

    def _objects(self) -> Iterator[dict[str, Any]]:
        """Every object of the layout under the prefix (``<format>/<name>.<suffix>``; any
        other object a bucket shared with other uses holds is left alone)."""
        base = f"{self.prefix}/" if self.prefix else ""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base
        )
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"][len(base) :].count("/") == 1:
                    yield item

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if _code(exc) in MISSING:
                return False
            raise
        return True

    def _meta(self, format_key: str, name: str) -> dict[str, Any]:
        """The rendition's meta; empty when its object is missing (written just after the
        rendition, or lost): the meta only describes, nothing depends on it."""
        key = self.key(format_key, name, META_SUFFIX)
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key)
        except self._client.exceptions.ClientError as exc:
            if _code(exc) in MISSING:
                return {}
            raise
        with answer["Body"] as body:
            try:
                meta = json.loads(body.read())
            except ValueError:
                return {}
        return meta if isinstance(meta, dict) else {}


def over_budget(
    entries: Iterable[tuple[Any, int, K]], max_bytes: int, keep: K | None = None
) -> tuple[list[K], int]:
    """Which of ``entries`` (last use, bytes, name) to remove, least recently used first,
    so that the rest fit ``max_bytes`` (never ``keep``); and the bytes left. The eviction
    rule of both tiers: this store and each machine's directory."""
    listed = sorted(entries, key=lambda entry: entry[0])
    total = sum(size for _, size, _ in listed)
    removed = []
    for _, size, name in listed:
        if total <= max_bytes:
            break
        if name == keep:
            continue
        total -= size
        removed.append(name)
    return removed, total


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turns botocore's errors into :class:`SharedStoreError`, any URL's secrets masked (a
    local file's OSError is this machine's, not the store's: it goes on as it is)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise SharedStoreError(f"{what}: {redact_text(str(exc))}") from None


def _code(exc: Any) -> str:
    """The S3 error code of a botocore ClientError."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _meta_key(key: str) -> str:
    """The key of the meta beside the rendition at ``key``."""
    return key.removesuffix(SUFFIX) + META_SUFFIX
