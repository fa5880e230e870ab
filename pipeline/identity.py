"""What makes two URLs the same clip: the server's validators, not the URL's signature.

A rendition is found again by the source's identity. Signed URLs change on every request
(their signature and expiry), so the identity is the object's place (scheme, host, path and
the query parameters known to select content, :data:`jobs.redact.CONTENT_PARAMS`) plus what
the server says of its bytes: ETag, Last-Modified and length. A server that gives neither
ETag nor Last-Modified gives nothing to tell a changed file from the same one: such a clip
is not cached.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from jobs.redact import CONTENT_PARAMS, redact_text, redact_url

log = logging.getLogger(__name__)

#: The query parameters that are part of a clip's identity: those that select content, less
#: ``t`` (a media offset on some servers, the signature's expiry on Tencent's CDN: an
#: expiry would make every signed URL a new clip; the validators tell contents apart).
IDENTITY_PARAMS = CONTENT_PARAMS - {"t"}
#: What ``quote`` leaves as it is: the URL's syntax, and escapes already there.
URL_SAFE = "/:?#[]@!$&'()*+,;=%~"


class NoIdentity(Exception):
    """The source gives nothing that identifies its content; the message says why."""


def source_identity(url: str, timeout: float, proxy: str | None = None) -> str:
    """A string that is the same for the same bytes at the same place, and changes with them.

    Asks the server for the first byte (a ranged GET, not a HEAD: a presigned URL is
    signed for GET only). ``proxy``: the HTTP proxy every source connection goes through.
    Raises :class:`NoIdentity`.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise NoIdentity(f"{parts.scheme} sources are streams, not files")
    # The worker's egress proxy, or none at all: never the environment's.
    handler = urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {})
    try:
        # FFmpeg plays a URL with spaces or non-ASCII letters as it is; urllib needs them
        # percent-encoded (what is encoded already stays as it is).
        request = urllib.request.Request(quote(url, safe=URL_SAFE), headers={"Range": "bytes=0-0"})
        with urllib.request.build_opener(handler).open(request, timeout=timeout) as answer:
            headers = answer.headers
            length = _total_length(headers.get("Content-Range"), headers.get("Content-Length"))
    except Exception as exc:  # noqa: BLE001 - any failure only means: not cached
        # urllib's messages may quote the URL, or a redirect's: masked like any other text.
        detail = redact_text(str(exc), [url])
        raise NoIdentity(f"{redact_url(url)} did not answer: {detail}") from None
    etag, modified = headers.get("ETag"), headers.get("Last-Modified")
    if not (etag or modified):
        raise NoIdentity(f"{redact_url(url)} gives no ETag or Last-Modified")
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() in IDENTITY_PARAMS])
    place = urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, query, ""))
    return "\n".join([place, etag or "", modified or "", length or ""])


def identity_key(identity: str) -> str:
    """A file name for an identity."""
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def _total_length(content_range: str | None, content_length: str | None) -> str | None:
    """The whole object's length: after the slash of a 206's Content-Range, else the body's."""
    if content_range and "/" in content_range:
        return content_range.rsplit("/", 1)[1].strip()
    return content_length
