"""Pages the API serves, read as a browser would: what they load, and from where."""

from __future__ import annotations

import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``; the status, headers and raw body (HTTP errors included)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class Page(HTMLParser):
    """Every src=/href= of a page, and its <meta name=... content=...> values."""

    def __init__(self, html: str = "") -> None:
        super().__init__()
        self.refs: list[str] = []
        self.meta: dict[str, str] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.refs += [v for n, v in attrs if n in ("src", "href") and v]
        if tag == "meta" and values.get("name"):
            self.meta[str(values["name"])] = values.get("content") or ""

    @property
    def scripts(self) -> list[str]:
        """The page's script references."""
        return [r for r in self.refs if r.endswith(".js")]


def assert_assets_served_locally(page_url: str, page: Page) -> None:
    """Every asset the page names is relative (no CDN) and served by the same server."""
    for ref in page.refs:
        assert not urlsplit(ref).scheme and not urlsplit(ref).netloc, ref  # no CDN
        status, _, asset = fetch(urljoin(page_url, ref))
        assert status == 200 and asset, ref
