"""Signed URLs as each provider makes them, with distinctive secret values to search for.

Every secret value starts with ``LEAK`` so a test can look for ``LEAK`` anywhere roomcast
writes; the harmless parts (paths, expiry times) are plain.
"""

from __future__ import annotations

from urllib.parse import urlencode


def _url(base: str, params: list[tuple[str, str]]) -> str:
    return f"{base}?{urlencode(params)}"


def signed_queries(tag: str = "") -> dict[str, list[tuple[str, str]]]:
    """Each provider's signature parameters (secret values carry ``LEAK`` and ``tag``)."""
    s = f"LEAK{tag}"
    return {
        "tencent-css": [("txSecret", f"{s}css0a1b2c3d"), ("txTime", "6A8F2C00")],
        "tencent-cos": [
            ("q-sign-algorithm", "sha1"),
            ("q-ak", f"AKID{s}cosak"),
            ("q-sign-time", "1700000000;1700003600"),
            ("q-key-time", "1700000000;1700003600"),
            ("q-header-list", "host"),
            ("q-url-param-list", ""),
            ("q-signature", f"{s}cossig9f8e"),
            ("x-cos-security-token", f"{s}costoken"),
        ],
        "aws-s3": [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"ASIA{s}S3/20261206/us-east-1/s3/aws4_request"),
            ("X-Amz-Date", "20261206T000000Z"),
            ("X-Amz-Expires", "3600"),
            ("X-Amz-SignedHeaders", "host"),
            ("X-Amz-Security-Token", f"{s}s3sessiontoken"),
            ("X-Amz-Signature", f"{s}s3signature"),
        ],
        "aliyun-oss": [
            ("OSSAccessKeyId", f"STS.{s}ossid"),
            ("Expires", "1700003600"),
            ("Signature", f"{s}osssig"),
            ("security-token", f"{s}osstoken"),
        ],
        "google-gcs": [
            ("X-Goog-Algorithm", "GOOG4-RSA-SHA256"),
            ("X-Goog-Credential", f"svc{s}gcs@project.iam.gserviceaccount.com/20261206/auto"),
            ("X-Goog-Date", "20261206T000000Z"),
            ("X-Goog-Expires", "900"),
            ("X-Goog-SignedHeaders", "host"),
            ("X-Goog-Signature", f"{s}gcssig"),
        ],
        "azure-sas": [
            ("sv", "2022-11-02"),
            ("se", "2026-12-07T00:00:00Z"),
            ("sr", "b"),
            ("sp", "r"),
            ("sig", f"{s}azuresig%3D"),
        ],
    }


def signed(base: str, provider: str, tag: str = "") -> str:
    """``base`` (a URL without query) signed the way ``provider`` signs."""
    return _url(base, signed_queries(tag)[provider])


def signed_by_all(base: str, tag: str = "") -> str:
    """``base`` with every provider's signature parameters at once."""
    return _url(base, [pair for pairs in signed_queries(tag).values() for pair in pairs])


def with_userinfo(url: str, tag: str = "") -> str:
    """``url`` with a user and password before its host."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://LEAK{tag}user:LEAK{tag}pass@{rest}"
