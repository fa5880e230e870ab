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
from functools import partial
from typing import Any

import av.error

from jobs.errors import RoomcastError
from jobs.preparations import (
    ClipPreparation,
    Preparation,
    PreparationStore,
    end,
    end_stopped,
)
from jobs.redact import redact_text, redact_url
from jobs.settings import Settings
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


class PreparationStopped(Exception):
    """The preparation was asked to stop (API, CLI or Celery's revoke)."""


def run_preparation(
    store: PreparationStore,
    settings: Settings,
    request_id: str,
    counted: Callable[..., None] = lambda **_: None,
) -> str:
    """Prepare every clip of preparation ``request_id``; returns its final state.
    ``counted`` adds to the service's counters (a rendition encoded)."""
    urls = store.urls(request_id)
    preparation = store.change(request_id, ("queued",), _started)
    if preparation is None or urls is None:
        found = store.get(request_id)
        log.warning("preparation %s not started: it is %s", request_id, _state_of(found))
        return _state_of(found)
    fmt = _asked_format(preparation, settings)
    try:
        for index, (clip, url) in enumerate(zip(preparation.Clips, urls, strict=True)):
            if store.stop_asked(request_id) is not None:
                break
            clip.State = "preparing"
            store.save(preparation)
            try:
                fmt = _prepare_clip(store, preparation, clip, url, settings, fmt)
            except PreparationStopped:
                break
            except Exception as exc:  # noqa: BLE001 - one clip fails alone, with its reason
                clip.State = "failed"
                clip.Error = _reason(exc, url)
                log.warning("preparation %s: %s: %s", request_id, clip.VideoSrc, clip.Error)
                store.save(preparation)
                store.event(
                    preparation, "clip-failed", Clip=index, VideoSrc=clip.VideoSrc, Error=clip.Error
                )
                continue
            if not clip.Cached:
                counted(renditions_prepared=1)
            store.save(preparation)
            store.event(
                preparation,
                "clip-ready",
                Clip=index,
                VideoSrc=clip.VideoSrc,
                Cached=clip.Cached,
                Seconds=clip.Seconds,
            )
    finally:
        ended = store.change(request_id, ("running",), partial(_ended, store, preparation))
    state = ended.State if ended is not None else _state_of(store.get(request_id))
    log.info("preparation %s %s", request_id, state)
    return state


def _started(preparation: Preparation) -> dict[str, Any]:
    preparation.State = "running"
    return {"Clips": len(preparation.Clips)}


def _ended(store: PreparationStore, ran: Preparation, preparation: Preparation) -> dict[str, Any]:
    """The record's end, from the run's copy ``ran`` (the clips as they ended)."""
    preparation.Clips, preparation.Format = ran.Clips, ran.Format
    stop = store.stop_asked(preparation.RequestId)
    if stop is not None and any(c.State in ("queued", "preparing") for c in preparation.Clips):
        return end_stopped(preparation, stop.reason)
    failed = sum(clip.State != "ready" for clip in preparation.Clips)
    if not failed:
        return end(preparation, "succeeded", None, "failed")
    reason = f"{failed} of {len(preparation.Clips)} clips failed"
    return end(preparation, "failed", reason, "failed", "the preparation was interrupted")


def _state_of(preparation: Preparation | None) -> str:
    return "unknown" if preparation is None else preparation.State


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
            if store.stop_asked(preparation.RequestId) is not None:
                raise PreparationStopped  # the claim's part is removed on the way out

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
