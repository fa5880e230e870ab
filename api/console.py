"""``GET /console``: a small web console over this API, for people rather than programs.

It lists the pushes with their state and progress, starts one from a form, stops one, switches
the clip of a switchable one and, given ``ROOMCAST_CONSOLE_PREVIEW_URL`` (the local room's
preview server), plays what the room receives. It is plain HTML and one vanilla JS module
under ``static/console/``, calling the same public endpoints as any client; hls.js is vendored
from npm by ``scripts/setup``, so the browser loads nothing from elsewhere but the room's HLS.

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
#: Replaced (HTML-escaped) in the page by the preview server's URL, or by nothing.
PREVIEW_PLACEHOLDER = "{{preview_url}}"


@bp.get("/console")
def console() -> ResponseReturnValue:
    """The web console: pushes, their progress and controls, and the room's picture."""
    settings = cast(Settings, current_app.extensions["roomcast.settings"])
    preview = preview_base(settings.console_preview_url)
    # The setting goes into an attribute, not a script: the CSP forbids inline scripts, and
    # escaping keeps a URL with quotes from breaking out of it.
    page = _page().replace(PREVIEW_PLACEHOLDER, html.escape(preview, quote=True))
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp(preview)
    response.headers["Cache-Control"] = "no-cache"
    return response


@lru_cache(maxsize=1)
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def preview_base(url: str) -> str:
    """The preview server's base URL ending in ``/``, or "" when unset or not http(s)."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        if url:
            current_app.logger.warning(
                "ROOMCAST_CONSOLE_PREVIEW_URL %r is not an http(s) URL: the console shows "
                "no player",
                url,
            )
        return ""
    return url if url.endswith("/") else url + "/"


def csp(preview: str) -> str:
    """The page's Content-Security-Policy: this API, plus the preview server for HLS only.

    hls.js feeds the <video> through Media Source Extensions (blob: URLs) and may run its
    demuxer in a worker made from a blob: URL; inline scripts and styles stay forbidden.
    """
    origin = ""
    if preview:
        parts = urlsplit(preview)
        origin = f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; connect-src 'self'{origin}; media-src 'self' blob:{origin}; "
        "worker-src 'self' blob:; img-src 'self' data:; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
