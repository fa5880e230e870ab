"""Callback signatures follow Standard Webhooks, so receivers verify them with its libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from jobs.outbox import retry_delay
from worker.callbacks import Signer

BODY = b'{"Id":"r1.3","Seq":3,"Event":"stopped"}'
AT = datetime.fromtimestamp(1_700_000_000, UTC)


def test_the_signature_is_the_base64_hmac_of_id_timestamp_and_body() -> None:
    headers = Signer("s3cret").headers("r1.3", BODY, AT)
    mac = hmac.new(b"s3cret", b"r1.3.1700000000." + BODY, hashlib.sha256).digest()
    assert headers["webhook-id"] == "r1.3"
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_a_receiver_verifies_with_the_library_and_the_secret_in_base64() -> None:
    headers = Signer("s3cret").headers("r1.3", BODY, datetime.now(UTC))
    receiver = Webhook(base64.b64encode(b"s3cret").decode())
    assert receiver.verify(BODY, headers) == {"Id": "r1.3", "Seq": 3, "Event": "stopped"}
    with pytest.raises(WebhookVerificationError):
        receiver.verify(BODY.replace(b"stopped", b"succeeded"), headers)


def test_a_whsec_secret_is_used_as_the_convention_has_it() -> None:
    key = "whsec_" + base64.b64encode(b"raw key bytes").decode()
    headers = Signer(key).headers("r1.3", BODY, datetime.now(UTC))
    Webhook(key).verify(BODY, headers)


def test_a_stale_delivery_is_refused_by_the_receivers_library() -> None:
    headers = Signer("s3cret").headers("r1.3", BODY, AT)  # years ago: a replayed request
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(b"s3cret").decode()).verify(BODY, headers)


def test_the_older_body_only_signature_is_still_sent() -> None:
    headers = Signer("s3cret").headers("r1.3", BODY, AT)
    digest = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert headers["X-Roomcast-Signature"] == f"sha256={digest}"


def test_retries_wait_one_two_four_seconds_and_so_on_up_to_the_longest() -> None:
    delays = [retry_delay(n, 60) for n in range(1, 10)]
    for delay, full in zip(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60], strict=True):
        assert 0.8 * full <= delay <= full
