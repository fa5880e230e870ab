"""Keep secrets out of anything that is logged, stored or shown."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters whose values are credentials (TRTC's usersig, signed-URL tokens...).
SECRET_PARAMS = frozenset(
    {
        "usersig",
        "sig",
        "sign",
        "signature",
        "token",
        "access_token",
        "password",
        "secret",
        "key",
        "privatemapkey",
        "x-amz-signature",
        "x-cos-security-token",
        "q-signature",
        "auth_key",
    }
)
MASK = "***"


def redact_url(url: str) -> str:
    """Return ``url`` with its userinfo password and secret query values masked.

    Works for any scheme (http, rtmp, redis...); a string that is not a URL comes back
    unchanged except for ``user:password@`` patterns.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_userinfo(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, MASK if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_USERINFO = re.compile(r"(//[^/@:\s]*:)[^@/\s]+@")


def _mask_userinfo(text: str) -> str:
    return _USERINFO.sub(rf"\g<1>{MASK}@", text)


_SECRET_QUERY = re.compile(
    r"(?i)\b(" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS)) + r")=([^&\s'\"]+)"
)


def redact_text(text: str, secrets: list[str]) -> str:
    """Mask the given secret values, URL passwords and secret query values in free text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = _SECRET_QUERY.sub(rf"\1={MASK}", text)
    return _mask_userinfo(text)
