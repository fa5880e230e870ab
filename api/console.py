"""``GET /console``: a small web console over this API, for people rather than programs.

It lists the pushes with their state and progress, starts one from a form, stops one, switches
the clip of a switchable one and, given ``ROOMCAST_CONSOLE_PREVIEW_URL`` (the local room's
preview server), plays what the room receives; a push with ``"Whip": "trtc"`` is played over
WHEP from ``ROOMCAST_CONSOLE_WHIP_PREVIEW_URL`` (the dev stack's WHIP ingest, devstack/whip.py)
instead. It is plain HTML and vanilla JS modules under ``static/console/``, calling the same
public endpoints as any client; hls.js is vendored from npm by ``scripts/setup``, so the
browser loads nothing from elsewhere but the room's HLS and the WHEP endpoint's answers.

The page itself holds no data and answers without a key; with ``ROOMCAST_API_KEYS`` the
person types a key, which the page keeps in sessionStorage and sends as a bearer header.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app
from flask.typing import ResponseReturnValue

from jobs.settings import Settings

bp = Blueprint("console", __name__)

PAGE = Path(__file__).resolve().parent / "static" / "console" / "index.html"
#: Replaced (HTML-escaped) in the page by the preview servers' URLs, or by nothing.
PREVIEW_PLACEHOLDER = "{{preview_url}}"
WHIP_PREVIEW_PLACEHOLDER = "{{whip_preview_url}}"


@bp.get("/console")
def console() -> ResponseReturnValue:
    """The web console: pushes, their progress and controls, and the room's picture."""
    settings = cast(Settings, current_app.extensions["roomcast.settings"])
    preview = preview_base(settings.console_preview_url, "ROOMCAST_CONSOLE_PREVIEW_URL")
    whip = preview_base(settings.console_whip_preview_url, "ROOMCAST_CONSOLE_WHIP_PREVIEW_URL")
    # The settings go into attributes, not a script: the CSP forbids inline scripts, and
    # escaping keeps a URL with quotes from breaking out of them.
    page = _page().replace(PREVIEW_PLACEHOLDER, html.escape(preview, quote=True))
    page = page.replace(WHIP_PREVIEW_PLACEHOLDER, html.escape(whip, quote=True))
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp(preview, whip)
    response.headers["Cache-Control"] = "no-cache"
    return response


@lru_cache(maxsize=1)
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def preview_base(url: str, name: str = "ROOMCAST_CONSOLE_PREVIEW_URL") -> str:
    """A preview server's base URL ending in ``/``, or "" when unset or not http(s)
    (``name``: its setting's, for the warning)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        if url:
            current_app.logger.warning(
                "%s %r is not an http(s) URL: the console does not play from it", name, url
            )
        return ""
    return url if url.endswith("/") else url + "/"


def csp(preview: str, whip: str = "") -> str:
    """The page's Content-Security-Policy: this API, plus the preview server for HLS only,
    and the WHEP server for its offers and DELETEs (WebRTC's media needs no directive).

    hls.js feeds the <video> through Media Source Extensions (blob: URLs) and may run its
    demuxer in a worker made from a blob: URL; inline scripts and styles stay forbidden.
    """
    origin, whip_origin = _origin(preview), _origin(whip)
    connect = origin + (whip_origin if whip_origin != origin else "")
    return (
        f"default-src 'self'; connect-src 'self'{connect}; media-src 'self' blob:{origin}; "
        "worker-src 'self' blob:; img-src 'self' data:; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _origin(url: str) -> str:
    """`` scheme://host:port`` of ``url`` (with its leading space), or "" for none."""
    if not url:
        return ""
    parts = urlsplit(url)
    # Host and port only: a URL's user and password have no place in a header.
    port = f":{parts.port}" if parts.port else ""
    return f" {parts.scheme}://{parts.hostname}{port}"
