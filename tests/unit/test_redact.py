"""Masking by default: no query value or userinfo of a caller's URL shows, unless the
parameter is on the short list of harmless names; paths stay readable."""

from __future__ import annotations

import pytest

from jobs.bookmarks import source_identity
from jobs.redact import MASK, redact_text, redact_url

from ..signed_urls import signed, signed_by_all, signed_queries, with_userinfo

BASE = "https://media.example.com/lessons/week1/explain.mp4"


@pytest.mark.parametrize("provider", sorted(signed_queries()))
def test_a_signed_url_of_each_provider_keeps_its_path_and_loses_every_secret(
    provider: str,
) -> None:
    redacted = redact_url(signed(BASE, provider))
    assert "LEAK" not in redacted
    assert redacted.startswith(f"{BASE}?")


def test_expiry_times_stay_readable() -> None:
    redacted = redact_url(signed_by_all(BASE))
    for shown in ("txTime=6A8F2C00", "X-Amz-Expires=3600", "X-Goog-Date=20261206T000000Z"):
        assert shown in redacted


def test_an_unknown_parameter_is_masked_by_default() -> None:
    assert redact_url(f"{BASE}?auth=abc&quality=hd") == f"{BASE}?auth={MASK}&quality=hd"


def test_userinfo_and_fragments_are_masked() -> None:
    redacted = redact_url(with_userinfo(f"{BASE}#token=LEAKfrag"))
    assert "LEAK" not in redacted and redacted.endswith("/lessons/week1/explain.mp4#***")


@pytest.mark.parametrize(
    "text",
    [
        "Server returned 403 Forbidden for {url}",
        "error opening '{url}': Input/output error",
        "redirected to {url} and failed",
    ],
)
def test_free_text_loses_the_secrets_of_every_url_in_it(text: str) -> None:
    message = text.format(url=with_userinfo(signed_by_all(BASE)))
    assert "LEAK" not in redact_text(message)


def test_free_text_masks_a_query_without_its_scheme() -> None:
    message = "media.example.com/a.mp4?txSecret=LEAKx&txTime=6A8F2C00 timed out"
    assert (
        redact_text(message) == f"media.example.com/a.mp4?txSecret={MASK}&txTime=6A8F2C00 timed out"
    )


def test_the_same_file_signed_twice_is_one_source_for_resume() -> None:
    assert source_identity(signed_by_all(BASE, "a")) == source_identity(signed_by_all(BASE, "b"))
    assert source_identity(f"{BASE}?quality=hd") != source_identity(f"{BASE}?quality=sd")


@pytest.mark.parametrize(
    ("url", "hidden"),
    [
        ("https://h/a.mp4?LEAKTOKEN", "LEAKTOKEN"),  # a bare name may be the secret itself
        ("https://h/a.mp4?t=5;txSecret=LEAK9", "LEAK9"),  # a harmless name hiding another
    ],
    ids=["bare_name", "semicolon"],
)
def test_odd_query_shapes_hide_their_secrets(url: str, hidden: str) -> None:
    assert hidden not in redact_url(url)


@pytest.mark.parametrize(
    "text",
    ["opening LEAKuser:LEAKpass@media.example.com/x failed", "sig=LEAK1&x=2 refused"],
    ids=["userinfo_without_scheme", "pairs_without_question_mark"],
)
def test_free_text_hides_secrets_in_odd_shapes_too(text: str) -> None:
    assert "LEAK" not in redact_text(text)


def test_ordinary_log_text_is_left_alone() -> None:
    text = "mail a@b.com at 10:30; pool=threads, 3:4"
    assert redact_text(text) == text
