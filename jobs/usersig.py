"""TRTC UserSig (TLSSigAPIv2): decode, verify and generate, with the standard library only.

A UserSig is ``tls_base64(zlib(json))`` where the JSON holds the identifier (UserId),
SdkAppId, issue time, validity in seconds and ``TLS.sig``, the base64 HMAC-SHA256 of those
fields under the application's secret key (../shared/TRTC.md, "UserSig"). ``tls_base64`` is
standard base64 with ``+``, ``/`` and ``=`` replaced by ``*``, ``-`` and ``_``.

Decoding needs no key, so the API can refuse a UserSig issued for another user or app, or
one that has expired, before a worker spends time on it. Verifying needs the key. The
official Python package (``tls-sig-api-v2``) only generates; verification here recomputes
the HMAC over the decoded fields and compares it in constant time.

Nothing here logs, and no error message contains the UserSig or the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any

#: The reference implementations' default validity: 180 days.
DEFAULT_EXPIRE = 180 * 86400
#: A UserSig is a few hundred bytes; this bounds what a crafted one may inflate to.
MAX_JSON_BYTES = 64 * 1024

_TO_TLS = bytes.maketrans(b"+/=", b"*-_")
_FROM_TLS = bytes.maketrans(b"*-_", b"+/=")


class UserSigError(ValueError):
    """A UserSig that cannot be used; the message says why (never the UserSig itself)."""


class MalformedUserSig(UserSigError):
    """Not a TLSSigAPIv2 UserSig: bad base64, not zlib, not the expected JSON."""


class UserSigMismatch(UserSigError):
    """Issued for another UserId or SdkAppId."""


class UserSigExpired(UserSigError):
    """Expired, or expiring within the required margin."""


class UserSigBadSignature(UserSigError):
    """The HMAC does not match the configured secret key."""


@dataclass(frozen=True)
class UserSigInfo:
    """What a UserSig says about itself (readable without the key)."""

    identifier: str
    sdkappid: int
    time: int
    expire: int
    userbuf: bytes | None = None
    #: The base64 ``TLS.sig`` (HMAC) as carried in the UserSig.
    signature: str = ""
    #: ``TLS.userbuf`` exactly as carried (base64), since the HMAC covers that text.
    userbuf_b64: str | None = None

    @property
    def expires_at(self) -> int:
        """Unix time at which the UserSig stops being valid (``time + expire``)."""
        return self.time + self.expire


def _tls_b64encode(data: bytes) -> str:
    return base64.b64encode(data).translate(_TO_TLS).decode("ascii")


def _tls_b64decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii").translate(_FROM_TLS)
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise MalformedUserSig("the UserSig is not TLS base64") from None


def _content(
    identifier: str, sdkappid: int, issued: int, expire: int, userbuf_b64: str | None
) -> bytes:
    # The exact text the reference implementations sign, field by field.
    text = (
        f"TLS.identifier:{identifier}\n"
        f"TLS.sdkappid:{sdkappid}\n"
        f"TLS.time:{issued}\n"
        f"TLS.expire:{expire}\n"
    )
    if userbuf_b64 is not None:
        text += f"TLS.userbuf:{userbuf_b64}\n"
    return text.encode("utf-8")


def _hmac_b64(key: str, content: bytes) -> str:
    digest = hmac.new(key.encode("utf-8"), content, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generate(
    sdkappid: int,
    key: str,
    user_id: str,
    expire: int = DEFAULT_EXPIRE,
    userbuf: bytes | None = None,
    now: int | None = None,
) -> str:
    """A UserSig for ``user_id`` valid ``expire`` seconds from ``now`` (default: the clock).

    Byte for byte what ``TLSSigAPIv2.gen_sig`` (PyPI ``tls-sig-api-v2``) produces for the
    same issue time: the same JSON key order, ``json.dumps`` defaults and zlib level.
    """
    issued = int(time.time()) if now is None else int(now)
    doc: dict[str, Any] = {
        "TLS.ver": "2.0",
        "TLS.identifier": str(user_id),
        "TLS.sdkappid": int(sdkappid),
        "TLS.expire": int(expire),
        "TLS.time": issued,
    }
    userbuf_b64 = None
    if userbuf is not None:
        userbuf_b64 = base64.b64encode(userbuf).decode("ascii")
        doc["TLS.userbuf"] = userbuf_b64
    doc["TLS.sig"] = _hmac_b64(
        key, _content(str(user_id), int(sdkappid), issued, int(expire), userbuf_b64)
    )
    return _tls_b64encode(zlib.compress(json.dumps(doc).encode("utf-8")))


def decode(sig: str) -> UserSigInfo:
    """Read a UserSig's fields without checking its signature.

    Raises:
        MalformedUserSig: not TLS base64, not zlib data, or not the TLSSigAPIv2 JSON.
    """
    compressed = _tls_b64decode(sig)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_JSON_BYTES)
        if inflater.unconsumed_tail:
            raise MalformedUserSig("the UserSig inflates to too much data")
        doc = json.loads(raw)
    except (zlib.error, UnicodeDecodeError, ValueError):
        raise MalformedUserSig("the UserSig is not compressed TLSSigAPIv2 JSON") from None
    if not isinstance(doc, dict):
        raise MalformedUserSig("the UserSig is not compressed TLSSigAPIv2 JSON")
    identifier = doc.get("TLS.identifier")
    signature = doc.get("TLS.sig")
    if not isinstance(identifier, str) or not identifier:
        raise MalformedUserSig("the UserSig has no TLS.identifier")
    if not isinstance(signature, str) or not signature:
        raise MalformedUserSig("the UserSig has no TLS.sig")
    userbuf_b64 = doc.get("TLS.userbuf")
    userbuf = None
    if userbuf_b64 is not None:
        if not isinstance(userbuf_b64, str):
            raise MalformedUserSig("the UserSig's TLS.userbuf is not base64 text")
        try:
            userbuf = base64.b64decode(userbuf_b64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedUserSig("the UserSig's TLS.userbuf is not base64") from None
    return UserSigInfo(
        identifier=identifier,
        sdkappid=_integer(doc, "TLS.sdkappid"),
        time=_integer(doc, "TLS.time"),
        expire=_integer(doc, "TLS.expire"),
        userbuf=userbuf,
        signature=signature,
        userbuf_b64=userbuf_b64,
    )


def _integer(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)
    # Some generators write numbers as decimal strings; the HMAC covers the same digits.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise MalformedUserSig(f"the UserSig's {name} is not a non-negative integer")


def verify(sig: str, secret_key: str) -> bool:
    """Whether ``sig`` was signed with ``secret_key`` (False for a malformed one too).

    Only the signature is checked; expiry and identity are :func:`check`'s business.
    """
    try:
        info = decode(sig)
    except MalformedUserSig:
        return False
    return _signature_matches(info, secret_key)


def _signature_matches(info: UserSigInfo, secret_key: str) -> bool:
    expected = _hmac_b64(
        secret_key,
        _content(info.identifier, info.sdkappid, info.time, info.expire, info.userbuf_b64),
    )
    return hmac.compare_digest(expected.encode("ascii"), info.signature.encode("utf-8"))


def check(
    sig: str,
    sdkappid: int,
    user_id: str,
    secret_key: str | None = None,
    min_validity: float = 0.0,
    now: float | None = None,
) -> UserSigInfo:
    """Everything TRTC checks before it lets ``user_id`` into an app's room.

    The UserSig must decode, name this ``user_id`` and ``sdkappid``, stay valid for at least
    ``min_validity`` more seconds, and, when ``secret_key`` is given, carry a matching HMAC.

    Raises:
        MalformedUserSig, UserSigMismatch, UserSigExpired, UserSigBadSignature.
    """
    info = decode(sig)
    if info.identifier != user_id:
        raise UserSigMismatch("the UserSig was issued for another UserId")
    if info.sdkappid != sdkappid:
        raise UserSigMismatch("the UserSig was issued for another SdkAppId")
    clock = time.time() if now is None else now
    left = info.expires_at - clock
    if left <= 0:
        raise UserSigExpired(f"the UserSig expired {-left:.0f} s ago")
    if left < min_validity:
        raise UserSigExpired(
            f"the UserSig expires in {left:.0f} s, less than the {min_validity:g} s required"
        )
    if secret_key is not None and not _signature_matches(info, secret_key):
        raise UserSigBadSignature("the UserSig's signature does not match the SdkAppId's key")
    return info


def parse_keys(spec: str) -> dict[int, str]:
    """``"appid:key,appid:key"`` → ``{appid: key}`` (keys may not contain commas).

    Raises:
        ValueError: an entry is not ``<integer>:<key>``; the message names the entry's
            position, never the key.
    """
    keys: dict[int, str] = {}
    for index, entry in enumerate(spec.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        app, sep, key = entry.partition(":")
        if not sep or not app.strip().isdigit() or not key.strip():
            raise ValueError(f"secret key entry {index} is not '<SdkAppId>:<key>'")
        keys[int(app.strip())] = key.strip()
    return keys
