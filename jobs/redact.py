"""Keep secrets out of anything that is logged, stored or shown.

Sources are signed URLs, and every provider names its secrets differently (Tencent CSS
``txSecret``, COS ``q-ak``/``q-signature``, S3 ``X-Amz-Security-Token``, OSS
``security-token``, GCS ``X-Goog-Signature``, Azure ``sig``…). So masking works from the
other side: every query value and any userinfo of a URL is masked, except the values of a
short list of parameters known to be harmless (``SAFE_PARAMS``). Paths stay readable, so
people see which file plays.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters that name or select the media: identifiers, sizes and times.
CONTENT_PARAMS = frozenset(
    {
        # roomcast's own push URL (the UserSig beside them is masked).
        "sdkappid",
        "userid",
        "roomid",
        "strroomid",
        # Media selection and display.
        "format",
        "w",
        "h",
        "width",
        "height",
        "quality",
        "lang",
        "start",
        "end",
        "t",
        "v",
    }
)
#: When a signature expires: neither secret nor enough to forge one, and different each
#: time a URL is signed (so never part of what identifies the content, pipeline/identity.py).
SIGNING_PARAMS = frozenset(
    {
        "txtime",
        "expires",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-algorithm",
        "x-amz-signedheaders",
        "x-goog-date",
        "x-goog-expires",
        "x-goog-algorithm",
        "x-goog-signedheaders",
        "response-content-type",
    }
)
#: Query parameters shown as they are: identifiers, sizes and times, never credentials.
SAFE_PARAMS = CONTENT_PARAMS | SIGNING_PARAMS

MASK = "***"


def is_safe_param(name: str) -> bool:
    """Whether a query parameter's value may be shown."""
    return name.lower() in SAFE_PARAMS


def redact_url(url: str) -> str:
    """``url`` with its userinfo, fragment and every query value not in ``SAFE_PARAMS``
    masked (and a WHIP room URL's path). Works for any scheme (http, rtmp, redis…); a string
    that is not a URL comes back with ``user:password@`` patterns and ``name=value`` pairs
    masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_pairs(_mask_userinfo(url))
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    if parts.scheme.lower().startswith("whip+") and parts.path not in ("", "/"):
        # A WHIP endpoint's path may be the stream's key (pipeline/whip.py).
        return urlunsplit((parts.scheme, netloc, f"/{MASK}", "", MASK if parts.fragment else ""))
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([_shown(k, v) for k, v in pairs], safe="*")
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


#: What a harmless parameter's value may hold to be shown (no separators hiding another).
_PLAIN = re.compile(r"[\w.:+-]*")


def _shown(name: str, value: str) -> tuple[str, str]:
    """A query pair as shown: a bare name (``?TOKEN``) may be the secret itself."""
    if not is_safe_param(name):
        return (name, MASK) if value else (MASK, "")
    return (name, value) if _PLAIN.fullmatch(value) else (name, MASK)


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_USERINFO = re.compile(r"(//)[^/@\s]+@")
# user:password@host without a scheme in front.
_BARE_USERINFO = re.compile(r"(?<![\w/])[^\s/@:'\"]+:[^\s/@'\"]+@(?=[\w.-])")
# A query's name=value outside a whole URL (a host without scheme, a quoted fragment):
# after ? or &, or before &.
_PAIR = re.compile(
    r"(?:(?<=[?&])|(?<![\w.-])(?=[A-Za-z][\w.-]*=[^&\s'\"]+&))([A-Za-z][\w.-]*)=([^&\s'\"]+)"
)


def _mask_userinfo(text: str) -> str:
    return _BARE_USERINFO.sub(f"{MASK}@", _USERINFO.sub(rf"\g<1>{MASK}@", text))


def _mask_pairs(text: str) -> str:
    return _PAIR.sub(lambda m: m[0] if is_safe_param(m[1]) else f"{m[1]}={MASK}", text)


def redact_text(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Free text (an error message, FFmpeg's output) with the given secret values, every
    URL's secrets (see :func:`redact_url`) and query-like ``name=value`` pairs masked."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL.sub(lambda m: redact_url(m[0]), text)
    return _mask_pairs(_mask_userinfo(text))
