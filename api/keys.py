"""API keys and what each may touch: every app (admin), or only its SdkAppIds.

Keys come from ``ROOMCAST_API_KEYS`` and from ``ROOMCAST_API_KEYS_FILE``, which is read
again when it changes, so keys are added, scoped or revoked without a restart (replace it
by a rename; a file read half-written, one that does not end with a new line, is ignored
until it does; a file removed revokes its keys). Either holds entries separated by commas
or new lines (``#`` starts a comment in the file)::

    k3y-for-ops                              # admin: every SdkAppId, /metrics
    k3y-for-school-a:1400000001              # only this app's pushes
    k3y-for-school-b:1400000002|1400000003   # these two apps' pushes

A scoped key starts, lists, follows, commands and stops only its apps' pushes; another
app's push answers 404, as one that does not exist, so a key learns nothing of other
tenants. Submitting for another SdkAppId answers 403 naming ``SdkAppId``.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from flask import g

from jobs.errors import Forbidden, NotFound
from jobs.store import Job, JobStore

#: How often a process looks at the keys file's modification time, at most.
FILE_CHECK_SECONDS = 1.0


class KeyFileError(ValueError):
    """An entry of the keys is malformed."""


@dataclass(frozen=True)
class ApiKey:
    """One key and its scope: ``apps`` None for every app (an admin key)."""

    secret: str
    apps: frozenset[int] | None = None

    @property
    def admin(self) -> bool:
        """Whether the key may act for every app (and read service-wide metrics)."""
        return self.apps is None

    def allows(self, sdk_app_id: int) -> bool:
        """Whether the key may act for ``sdk_app_id``."""
        return self.apps is None or sdk_app_id in self.apps


def parse_keys(text: str) -> list[ApiKey]:
    """The keys in ``text`` (the format above); raises KeyFileError naming a bad entry."""
    keys = []
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].split(","):
            entry = entry.strip()
            if entry:
                keys.append(_parse_entry(entry))
    return keys


def _parse_entry(entry: str) -> ApiKey:
    secret, colon, scope = entry.partition(":")
    if not secret:
        raise KeyFileError("an API key entry has no key before ':'")
    if colon and not scope.strip():
        raise KeyFileError("an API key entry ends with ':' and no scope ('*' for every app)")
    if not scope or scope.strip() == "*":
        return ApiKey(secret)
    try:
        apps = frozenset(int(app) for app in scope.split("|"))
    except ValueError:
        # The key itself is never repeated in a message.
        raise KeyFileError(
            f"an API key's scope {scope!r} is not SdkAppIds separated by |"
        ) from None
    return ApiKey(secret, apps)


class KeyRing:
    """The keys a process accepts now: the inline ones and the file's latest."""

    def __init__(self, inline: str, path: str | None = None) -> None:
        self._inline = parse_keys(inline)
        self._path = Path(path) if path else None
        self._from_file: list[ApiKey] = []
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if self._path is not None:
            self._reload(starting=True)  # a missing or malformed file stops the API at start

    @property
    def enabled(self) -> bool:
        """Whether calls need a key at all."""
        return bool(self._inline) or self._path is not None

    def find(self, token: str) -> ApiKey | None:
        """The key ``token`` is, compared in time that does not depend on where it differs.

        Every key is compared (no early exit), each with ``hmac.compare_digest``; bytes,
        since compare_digest refuses non-ASCII str and a header may hold anything.
        """
        given = token.encode("utf-8", "surrogateescape")
        found = None
        for key in [*self._inline, *self._file_keys()]:
            if hmac.compare_digest(given, key.secret.encode("utf-8", "surrogateescape")):
                found = key
        return found

    def _file_keys(self) -> list[ApiKey]:
        if self._path is not None and time.monotonic() - self._checked >= FILE_CHECK_SECONDS:
            with self._lock:
                try:
                    self._reload()
                except FileNotFoundError:
                    self._from_file, self._stamp = [], None  # removed: its keys are revoked
                except (OSError, KeyFileError):
                    pass  # a file being rewritten: keep the last good keys, look again soon
        return self._from_file

    def _reload(self, starting: bool = False) -> None:
        assert self._path is not None
        self._checked = time.monotonic()
        info = os.stat(self._path)
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            text = self._path.read_text()
            written = text.endswith("\n") or starting
            if not written or os.stat(self._path).st_mtime_ns != info.st_mtime_ns:
                raise KeyFileError("the keys file is being written")  # read it again soon
            self._from_file = parse_keys(text)
            self._stamp = stamp


#: The key every call acts with when no keys are configured.
ADMIN = ApiKey("")


def current_key() -> ApiKey:
    """The key of the request being answered (``ADMIN`` without keys)."""
    return cast(ApiKey, g.get("api_key", ADMIN))


def visible_job(store: JobStore, request_id: str) -> Job:
    """The push ``request_id`` if the request's key may see it; NotFound otherwise (another
    app's push answers exactly as a push that does not exist)."""
    job = store.get(request_id)
    if job is None or not current_key().allows(job.record.SdkAppId):
        raise NotFound(f"no push with request id {request_id!r}")
    return job


def check_app(sdk_app_id: int) -> None:
    """403 naming SdkAppId unless the request's key may act for ``sdk_app_id``."""
    if not current_key().allows(sdk_app_id):
        raise Forbidden(f"this API key may not act for SdkAppId {sdk_app_id}", field="SdkAppId")
