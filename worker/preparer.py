"""The ``roomcast.prepare`` task's work: encode each clip of a preparation into the cache.

Each clip is opened under the same rules as a push's (SSRF guard, egress proxy, time
limits) and encoded once (pipeline/renditions.py); the record is updated as it goes, so the
status API shows each clip's state and progress. One clip that cannot be prepared fails
alone, with its reason; the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from fractions import Fraction

import av.error

from jobs.errors import RoomcastError
from jobs.preparations import ClipPreparation, Preparation, PreparationStore
from jobs.records import iso
from jobs.redact import redact_text, redact_url
from jobs.settings import Settings
from jobs.store import now
from jobs.urlguard import check_source_address
from pipeline.identity import NoIdentity, source_identity
from pipeline.renditions import RenditionFormat, prepare
from pipeline.source import open_source

from .egress import egress_proxy
from .runner import output_profile, timeouts
from .services import rendition_cache

log = logging.getLogger(__name__)

#: How often a clip's progress is written while it encodes.
PROGRESS_EVERY_SECONDS = 1.0


def run_preparation(
    store: PreparationStore,
    settings: Settings,
    request_id: str,
    counted: Callable[..., None] = lambda **_: None,
) -> str:
    """Prepare every clip of preparation ``request_id``; returns its final state.
    ``counted`` adds to the service's counters (a rendition encoded)."""
    preparation, urls = store.get(request_id), store.urls(request_id)
    if preparation is None or urls is None:
        log.warning("preparation %s is unknown or expired", request_id)
        return "unknown"
    preparation.State = "running"
    store.save(preparation)
    fmt = _asked_format(preparation, settings)
    try:
        for clip, url in zip(preparation.Clips, urls, strict=True):
            clip.State = "preparing"
            store.save(preparation)
            try:
                fmt = _prepare_clip(store, preparation, clip, url, settings, fmt)
                if not clip.Cached:
                    counted(renditions_prepared=1)
            except Exception as exc:  # noqa: BLE001 - one clip fails alone, with its reason
                clip.State = "failed"
                clip.Error = _reason(exc, url)
                log.warning("preparation %s: %s: %s", request_id, clip.VideoSrc, clip.Error)
            store.save(preparation)
    finally:
        for clip in preparation.Clips:
            if clip.State in ("queued", "preparing"):
                clip.State, clip.Error = "failed", "the preparation was interrupted"
        ready = all(clip.State == "ready" for clip in preparation.Clips)
        preparation.State = "succeeded" if ready else "failed"  # type: ignore[assignment]
        preparation.EndedAt = iso(now())
        store.save(preparation)
    return preparation.State


def _reason(exc: Exception, url: str) -> str:
    """Why a clip could not be prepared, for people (the URL's secrets masked)."""
    if isinstance(exc, RoomcastError):
        text = exc.message
    elif isinstance(exc, NoIdentity | av.error.FFmpegError | OSError):
        text = str(exc)
    else:
        # No traceback: its frames' text could hold the URL, which the log must not.
        log.error(
            "preparing %s failed unexpectedly: %s", redact_url(url), redact_text(repr(exc), [url])
        )
        text = f"an internal error ({type(exc).__name__})"
    return redact_text(text, [url])


def _prepare_clip(
    store: PreparationStore,
    preparation: Preparation,
    clip: ClipPreparation,
    url: str,
    settings: Settings,
    fmt: RenditionFormat | None,
) -> RenditionFormat:
    cache = rendition_cache(settings)
    if cache is None:
        raise NoIdentity("renditions are off on this worker (ROOMCAST_RENDITIONS=false)")
    guarded = settings.block_private_addresses
    if guarded:
        check_source_address(url, settings.guard_networks)
    proxy = egress_proxy(settings.guard_networks) if guarded else None
    limits = timeouts(settings)
    shown = 0.0

    def progress(seconds: float) -> None:
        nonlocal shown
        clip.Progress = round(seconds, 1)
        if time.monotonic() - shown >= PROGRESS_EVERY_SECONDS:
            shown = time.monotonic()
            store.save(preparation)

    identity = source_identity(url, limits.source_open, proxy)  # before the bytes are read
    source = open_source(url, limits, secrets=(url,), proxy=proxy)
    try:
        done = prepare(
            source, cache, output_profile(settings), identity, fmt=fmt, on_progress=progress
        )
    finally:
        source.close()
    clip.State, clip.Cached = "ready", done.cached
    clip.Seconds = clip.Progress = done.seconds
    preparation.Format = done.format.as_dict()
    return done.format


def _asked_format(preparation: Preparation, settings: Settings) -> RenditionFormat | None:
    """The format the request named (Width, Height, Fps), if it named one."""
    asked = preparation.Format
    if not asked:
        return None
    fps = Fraction(asked["Fps"]).limit_denominator(1001)
    return RenditionFormat(asked["Width"], asked["Height"], fps, output_profile(settings))
