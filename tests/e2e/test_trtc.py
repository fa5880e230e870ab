"""TRTC integration: UserSig checks at submit, a local room that verifies UserSigs like TRTC,
and TRTC's server API (RemoveUserByStrRoomId) on stop, signed for real.

The end-to-end tests run their own Redis, worker and APIs, pushing into their own local room
that holds secret keys (the session's room accepts any UserSig), and a fake TRTC API endpoint
(tests/trtc_fake.py) that checks every TC3-HMAC-SHA256 signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.publish_auth import PublishAuth
from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs import usersig
from jobs.usersig import (
    MalformedUserSig,
    UserSigBadSignature,
    UserSigExpired,
    UserSigMismatch,
    check,
    decode,
    generate,
    verify,
)

from ..conftest import job_for
from ..stack import Answer, Api, start_api, start_worker, stop
from ..trtc_fake import FakeTrtc
from ..viewer import Viewer

APP = 1400000001
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
#: An app the room knows but the APIs have no key for: only decodable there.
OTHER_APP = 1400000002
OTHER_KEY = "other-app-key-0b7e"
SECRET_ID = "AKIDroomcastTEST"
SECRET_KEY = "tc-secret-key-5150"
USER = "bot1"
ENDED = {"succeeded", "failed", "stopped"}

_rooms = itertools.count()


def tls_b64(data: bytes) -> str:
    """TLSSigAPIv2's base64 variant, written out again here so the tests do not trust it."""
    return base64.b64encode(data).decode().replace("+", "*").replace("/", "-").replace("=", "_")


def usersig_from(doc: dict[str, object]) -> str:
    """A UserSig carrying ``doc`` as its JSON, whatever it holds."""
    return tls_b64(zlib.compress(json.dumps(doc).encode()))


def fields_of(sig: str) -> dict[str, object]:
    """A UserSig's JSON, decoded by hand."""
    raw = base64.b64decode(sig.replace("*", "+").replace("-", "/").replace("_", "="))
    return dict(json.loads(zlib.decompress(raw)))


# --- UserSig: the algorithm ------------------------------------------------------------------


def test_usersig_signs_the_documented_content_known_answer() -> None:
    # HMAC-SHA256 of TRTC.md's content for these fields under the official sample key,
    # computed independently: printf '<content>' | openssl dgst -sha256 -hmac KEY -binary
    # | base64.
    sig = generate(1400000000, KEY, "xiaojun", expire=15552000, now=1700000000)
    assert fields_of(sig) == {
        "TLS.ver": "2.0",
        "TLS.identifier": "xiaojun",
        "TLS.sdkappid": 1400000000,
        "TLS.expire": 15552000,
        "TLS.time": 1700000000,
        "TLS.sig": "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4=",
    }
    # The official package's exact bytes: json.dumps of that dict, zlib at its default level.
    assert sig == usersig_from(fields_of(sig))
    assert set(sig) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-_")


def test_usersig_decodes_to_what_it_was_issued_for_without_the_key() -> None:
    info = decode(generate(APP, KEY, USER, expire=3600, now=1_700_000_000))
    assert (info.identifier, info.sdkappid, info.time, info.expire) == (
        USER,
        APP,
        1_700_000_000,
        3600,
    )
    assert info.expires_at == 1_700_003_600
    assert info.userbuf is None


def test_usersig_from_another_implementation_verifies_whatever_its_json_key_order() -> None:
    # The Go and Java generators order the JSON differently and may compress harder.
    content = f"TLS.identifier:{USER}\nTLS.sdkappid:{APP}\nTLS.time:1700000000\nTLS.expire:60\n"
    mac = base64.b64encode(hmac.new(KEY.encode(), content.encode(), hashlib.sha256).digest())
    doc = {
        "TLS.sig": mac.decode(),
        "TLS.time": 1700000000,
        "TLS.expire": 60,
        "TLS.sdkappid": APP,
        "TLS.identifier": USER,
        "TLS.ver": "2.0",
    }
    sig = tls_b64(zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 9))
    assert verify(sig, KEY)


def test_usersig_with_userbuf_carries_it_and_signs_it() -> None:
    sig = generate(APP, KEY, USER, userbuf=b"\x00\x01room")
    assert decode(sig).userbuf == b"\x00\x01room"
    assert verify(sig, KEY)
    doc = fields_of(sig)
    doc["TLS.userbuf"] = base64.b64encode(b"\x00\x01othr").decode()
    assert not verify(usersig_from(doc), KEY)


def test_usersig_verifies_only_with_its_own_key() -> None:
    sig = generate(APP, KEY, USER)
    assert verify(sig, KEY)
    assert not verify(sig, KEY + "x")


@pytest.mark.parametrize(
    "field, value",
    [("TLS.identifier", "bot2"), ("TLS.sdkappid", APP + 1), ("TLS.expire", 10**9)],
    ids=["identifier", "sdkappid", "expire"],
)
def test_usersig_with_a_field_changed_after_signing_fails_verification(
    field: str, value: object
) -> None:
    doc = fields_of(generate(APP, KEY, USER))
    doc[field] = value
    assert not verify(usersig_from(doc), KEY)


def test_usersig_with_its_signature_changed_fails_verification() -> None:
    doc = fields_of(generate(APP, KEY, USER))
    mac = bytearray(base64.b64decode(str(doc["TLS.sig"])))
    mac[0] ^= 1
    doc["TLS.sig"] = base64.b64encode(bytes(mac)).decode()
    tampered = usersig_from(doc)
    assert not verify(tampered, KEY)
    with pytest.raises(UserSigBadSignature):
        check(tampered, APP, USER, secret_key=KEY)


MALFORMED = {
    "placeholder": "sig-for-tests",
    "not_base64": "eJw!!!",
    "not_zlib": tls_b64(b"plain bytes, not compressed"),
    "not_json": tls_b64(zlib.compress(b"TLS.identifier:bot1")),
    "json_list": tls_b64(zlib.compress(b"[1, 2]")),
    "no_signature": usersig_from({"TLS.identifier": USER, "TLS.sdkappid": APP, "TLS.time": 1,
                                  "TLS.expire": 1}),
    "sdkappid_not_a_number": usersig_from({"TLS.identifier": USER, "TLS.sdkappid": "app",
                                           "TLS.time": 1, "TLS.expire": 1, "TLS.sig": "x"}),
    "inflates_too_far": tls_b64(zlib.compress(b" " * 1_000_000)),
}  # fmt: skip


@pytest.mark.parametrize("sig", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_usersig_is_a_typed_error_and_never_verifies(sig: str) -> None:
    with pytest.raises(MalformedUserSig):
        decode(sig)
    assert not verify(sig, KEY)


def test_usersig_check_names_what_is_wrong() -> None:
    now = 1_700_000_000
    sig = generate(APP, KEY, USER, expire=3600, now=now)
    assert check(sig, APP, USER, secret_key=KEY, min_validity=300, now=now).identifier == USER
    with pytest.raises(UserSigMismatch, match="another UserId"):
        check(sig, APP, "bot2", now=now)
    with pytest.raises(UserSigMismatch, match="another SdkAppId"):
        check(sig, APP + 1, USER, now=now)
    with pytest.raises(UserSigExpired, match="expired"):
        check(sig, APP, USER, now=now + 3601)
    with pytest.raises(UserSigExpired, match="expires in 200 s"):
        check(sig, APP, USER, min_validity=300, now=now + 3400)
    with pytest.raises(UserSigBadSignature):
        check(sig, APP, USER, secret_key="another key", now=now)


def test_secret_keys_setting_parses_and_never_echoes_a_key() -> None:
    assert usersig.parse_keys(" 1400000001:k1 , 1400000002:k2 ,") == {
        1400000001: "k1",
        1400000002: "k2",
    }
    with pytest.raises(ValueError) as error:
        usersig.parse_keys("1400000001:k1,secret-without-app")
    assert "secret-without-app" not in str(error.value) and "entry 2" in str(error.value)


# --- the local room's publish check, without nginx ------------------------------------------


def on_publish(auth: PublishAuth, room: str, query: str, client: str = "1") -> tuple[int, str]:
    """What nginx-rtmp POSTs before a publish (ngx_rtmp_notify_module.c), and the answer."""
    body = (
        "app=push&flashver=FMLE/3.0&swfurl=&tcurl=rtmp://127.0.0.1/push&pageurl="
        f"&addr=127.0.0.1&clientid={client}&call=publish&name={room}&type=live&{query}"
    )
    status, location = auth.handle("/on_publish", body)
    return status, location or ""


def test_room_check_refuses_unknown_app_missing_sig_and_a_cut_off_url() -> None:
    auth = PublishAuth({APP: KEY})
    good = generate(APP, KEY, USER)
    assert on_publish(auth, "r1", f"sdkappid={APP}&userid={USER}&usersig={good}") == (200, "")
    assert on_publish(auth, "r2", f"sdkappid=1400009999&userid={USER}&usersig={good}")[0] == 403
    assert on_publish(auth, "r3", f"sdkappid={APP}&userid={USER}")[0] == 403
    # nginx-rtmp keeps 255 bytes of "<room>?<query>": a long room cuts the UserSig off.
    long_room = "r" * 64
    query = f"sdkappid={APP}&userid={USER}&usersig={good}"[: 255 - len(long_room) - 1]
    assert on_publish(auth, long_room, query)[0] == 403
    reasons = [d.reason for d in auth.decisions if not d.accepted]
    assert "not known to this room" in reasons[0]
    assert "required" in reasons[1]
    assert "255-byte limit" in reasons[2]


# --- the stack: APIs, a worker, a room with keys, a fake TRTC API ----------------------------


@dataclass
class TrtcStack:
    """The services these tests push through."""

    verify_api: Api  # ROOMCAST_USERSIG_CHECK=verify, key for APP
    decode_api: Api  # ROOMCAST_USERSIG_CHECK=decode, key for APP only
    room: LocalRoom  # keys for APP and OTHER_APP
    auth: PublishAuth  # the room's publish check
    trtc: FakeTrtc
    logs: list[Path]


@pytest.fixture(scope="module")
def trtc_stack(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrtcStack]:
    work = tmp_path_factory.mktemp("trtc")
    fake = FakeTrtc({SECRET_ID: SECRET_KEY}).start()
    with (
        RedisServer(work / "redis") as redis_server,
        LocalRoom(work / "room", secret_keys={APP: KEY, OTHER_APP: OTHER_KEY}) as room,
    ):
        env = dict(
            service_env,
            ROOMCAST_REDIS_URL=redis_server.url,
            ROOMCAST_RTMP_BASE=room.rtmp_base,
            ROOMCAST_USERSIG_CHECK="verify",
            ROOMCAST_SDK_SECRET_KEYS=f"{APP}:{KEY}",
            ROOMCAST_TRTC_REMOVE_USER_ON_STOP="true",
            ROOMCAST_TRTC_ENDPOINT=fake.endpoint,
            ROOMCAST_TRTC_REGION="ap-guangzhou",
            TENCENTCLOUD_SECRET_ID=SECRET_ID,
            TENCENTCLOUD_SECRET_KEY=SECRET_KEY,
        )
        logs = [work / "worker.log", work / "verify-api.log", work / "decode-api.log"]
        worker = start_worker(env, logs[0], "trtc")
        verify_api, verify_base = start_api(env, logs[1])
        decode_api, decode_base = start_api(dict(env, ROOMCAST_USERSIG_CHECK="decode"), logs[2])
        try:
            assert room.auth is not None
            yield TrtcStack(Api(verify_base), Api(decode_base), room, room.auth, fake, logs)
        finally:
            for proc in (decode_api, verify_api, worker):
                stop(proc)
            fake.stop()


@pytest.fixture
def trtc_room() -> str:
    """A fresh, short room name (the local room keeps 255 bytes of room + query)."""
    return f"trtc_{next(_rooms)}"


def body(room: LocalRoom, clip: str, room_name: str, **changes: object) -> dict[str, object]:
    """A job for the TRTC stack; the source is served by the session's room."""
    job = job_for(room, clip, room_name, UserId=USER, UserSig=generate(APP, KEY, USER))
    job.update(changes)
    return {k: v for k, v in job.items() if v is not None}


def assert_usersig_refused(answer: Answer, field: str = "UserSig") -> str:
    """A 400 blaming ``field``; returns its message."""
    assert answer.status == 400, answer.body
    error = answer.body["Error"]
    assert (error["Code"], error.get("Field")) == ("InvalidParameter", field), error
    return str(error["Message"])


# --- 400 at submit ---------------------------------------------------------------------------


CASES = {
    "malformed": (lambda: "sig-for-tests", "not TLS base64"),
    "for_another_user": (lambda: generate(APP, KEY, "bot2"), "another UserId"),
    "for_another_app": (lambda: generate(OTHER_APP, KEY, USER), "another SdkAppId"),
    "expired": (lambda: generate(APP, KEY, USER, expire=60, now=int(time.time()) - 120), "expired"),
    "expiring_within_the_margin": (lambda: generate(APP, KEY, USER, expire=200), "expires in"),
    "signed_with_another_key": (lambda: generate(APP, "not the key", USER), "signature"),
}  # fmt: skip


@pytest.mark.parametrize("make, why", CASES.values(), ids=CASES.keys())
def test_submit_refuses_a_usersig_that_trtc_would_refuse(
    trtc_stack: TrtcStack, room: LocalRoom, make, why: str
) -> None:
    sig = make()
    answer = trtc_stack.verify_api.call(
        "POST", "/v1/pushes", body(room, "missing.mp4", "r", UserSig=sig)
    )
    message = assert_usersig_refused(answer)
    assert why in message
    assert sig not in message


def test_verify_mode_refuses_an_app_without_a_key_naming_sdkappid(
    trtc_stack: TrtcStack, room: LocalRoom
) -> None:
    job = body(room, "missing.mp4", "r", SdkAppId=OTHER_APP, UserSig=generate(OTHER_APP, "k", USER))
    assert_usersig_refused(trtc_stack.verify_api.call("POST", "/v1/pushes", job), "SdkAppId")


def test_decode_mode_accepts_an_app_without_a_key_after_decoding_its_usersig(
    trtc_stack: TrtcStack, room: LocalRoom
) -> None:
    unsigned = generate(OTHER_APP, "a key roomcast does not have", USER)
    job = body(room, "missing.mp4", "r", SdkAppId=OTHER_APP, UserSig=unsigned)
    assert trtc_stack.decode_api.call("POST", "/v1/pushes", job).status == 202
    job["UserSig"] = generate(OTHER_APP, "k", "bot2")
    assert_usersig_refused(trtc_stack.decode_api.call("POST", "/v1/pushes", job))


def test_usersig_may_be_omitted_only_for_an_app_whose_key_is_configured(
    trtc_stack: TrtcStack, room: LocalRoom
) -> None:
    job = body(room, "missing.mp4", "r", UserSig=None)
    assert trtc_stack.verify_api.call("POST", "/v1/pushes", job).status == 202
    job["SdkAppId"] = OTHER_APP
    assert_usersig_refused(trtc_stack.decode_api.call("POST", "/v1/pushes", job))


# --- the room checks the UserSig, end to end -------------------------------------------------


def watch(url: str) -> Viewer:
    viewer = Viewer(url)
    viewer.start()
    time.sleep(0.3)  # let the play session exist before the publish starts
    return viewer


def test_a_valid_usersig_is_accepted_by_the_room_and_the_stream_reaches_a_viewer(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    viewer = watch(trtc_stack.room.play_url(trtc_room))
    rid = trtc_stack.verify_api.submit(**body(room, long_clip, trtc_room, MaxDuration=2))
    final = trtc_stack.verify_api.wait_state(rid, ENDED, timeout=30)
    viewer.join(15)
    assert final["State"] == "stopped", final
    assert viewer.capture.of("video"), viewer.capture.error
    decision = [d for d in trtc_stack.auth.decisions if d.room == trtc_room]
    assert [(d.user, d.accepted) for d in decision] == [(USER, True)]


def test_a_usersig_generated_by_roomcast_is_accepted_by_the_room(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    viewer = watch(trtc_stack.room.play_url(trtc_room))
    job = body(room, long_clip, trtc_room, UserSig=None, MaxDuration=2)
    rid = trtc_stack.verify_api.submit(**job)
    final = trtc_stack.verify_api.wait_state(rid, ENDED, timeout=30)
    viewer.join(15)
    assert final["State"] == "stopped", final
    assert viewer.capture.of("video"), viewer.capture.error


def test_a_tampered_usersig_is_refused_by_the_room_and_the_push_fails_readably(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    # The decode-mode API has no key for OTHER_APP, so only the room can catch this one.
    doc = fields_of(generate(OTHER_APP, OTHER_KEY, USER))
    doc["TLS.expire"] = int(str(doc["TLS.expire"])) * 2  # stretched validity, old signature
    tampered = usersig_from(doc)
    job = body(room, long_clip, trtc_room, SdkAppId=OTHER_APP, UserSig=tampered)
    rid = trtc_stack.decode_api.submit(**job)
    final = trtc_stack.decode_api.wait_state(rid, ENDED, timeout=30)
    assert final["State"] == "failed", final
    assert final["Error"]["Code"] == "RoomUnreachable"
    assert "could not publish to the room" in final["Error"]["Message"]
    assert tampered not in json.dumps(final)
    refused = [d for d in trtc_stack.auth.decisions if d.room == trtc_room]
    assert [(d.accepted, d.reason) for d in refused] == [
        (False, "the UserSig's signature does not match the SdkAppId's key")
    ]
    assert final["Trtc"] is None, "only a stopped push removes its user"


def test_two_users_pushing_into_one_room_both_appear_apart(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    api, local, auth = trtc_stack.verify_api, trtc_stack.room, trtc_stack.auth
    first = api.submit(**body(room, long_clip, trtc_room, MaxDuration=8))
    api.wait_state(first, {"running"}, timeout=15)
    deadline = time.monotonic() + 10
    while auth.stream_of(trtc_room, USER) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = api.submit(
        **body(room, long_clip, trtc_room, UserId="bot2", UserSig=generate(APP, KEY, "bot2"),
               MaxDuration=6)
    )  # fmt: skip
    api.wait_state(second, {"running"}, timeout=15)
    while auth.stream_of(trtc_room, "bot2") is None and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    assert auth.users_in(trtc_room) == {USER: trtc_room, "bot2": f"{trtc_room}__bot2"}
    # The preview page learns the same from the room's web server.
    with urllib.request.urlopen(f"{local.http_base}/publishers.json", timeout=5) as resp:
        listed = {(p["Room"], p["User"], p["Stream"]) for p in json.load(resp)}
    assert {(trtc_room, USER, trtc_room), (trtc_room, "bot2", f"{trtc_room}__bot2")} <= listed
    viewers = [Viewer(local.play_url(trtc_room)), Viewer(local.play_url(trtc_room, "bot2"))]
    for v in viewers:
        v.start()
    for v in viewers:
        v.join(20)
        assert v.capture.of("video"), v.capture.error
    for rid in (first, second):
        assert api.wait_state(rid, ENDED, timeout=20)["State"] == "stopped"


# --- TRTC's API on stop ----------------------------------------------------------------------


def test_a_stopped_push_removes_its_user_through_trtcs_signed_api(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    api = trtc_stack.verify_api
    rid = api.submit(**body(room, long_clip, trtc_room))
    api.wait_state(rid, {"running"}, timeout=15)
    time.sleep(1)
    answer = api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status in (200, 202), answer.body
    final = api.wait_state(rid, ENDED, timeout=15)
    assert final["State"] == "stopped"
    removal = final["Trtc"]["RemoveUser"]
    assert removal["Result"] == "ok", removal
    call = next(c for c in trtc_stack.trtc.calls if c.request_id == removal["RequestId"])
    assert call.action == "RemoveUserByStrRoomId"
    assert call.params == {"SdkAppId": APP, "RoomId": trtc_room, "UserIds": [USER]}
    assert call.region == "ap-guangzhou"


def test_a_trtc_error_is_shown_in_the_record_and_the_push_still_ends_stopped(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    trtc_stack.trtc.fail_next = ("FailedOperation.RoomNotExist", "the room does not exist")
    rid = trtc_stack.verify_api.submit(**body(room, long_clip, trtc_room, MaxDuration=1))
    final = trtc_stack.verify_api.wait_state(rid, ENDED, timeout=20)
    assert final["State"] == "stopped" and final["Error"] is None
    assert final["Trtc"]["RemoveUser"]["Result"] == "failed"
    assert final["Trtc"]["RemoveUser"]["Error"] == {
        "Code": "FailedOperation.RoomNotExist",
        "Message": "the room does not exist",
    }


def test_a_wrong_trtc_secret_key_fails_the_signature_check_not_the_push(
    trtc_stack: TrtcStack, room: LocalRoom, long_clip: str, trtc_room: str
) -> None:
    fake = trtc_stack.trtc
    fake.credentials[SECRET_ID] = "the key was rotated"  # the worker still signs with the old
    try:
        rid = trtc_stack.verify_api.submit(**body(room, long_clip, trtc_room, MaxDuration=1))
        final = trtc_stack.verify_api.wait_state(rid, ENDED, timeout=20)
    finally:
        fake.credentials[SECRET_ID] = SECRET_KEY
    assert final["State"] == "stopped"
    removal = final["Trtc"]["RemoveUser"]
    assert removal["Result"] == "failed"
    assert removal["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert removal["RequestId"], "TRTC's request id is kept for support requests"


def test_no_key_or_credential_is_ever_logged(trtc_stack: TrtcStack) -> None:
    text = "".join(p.read_text(errors="replace") for p in trtc_stack.logs)
    assert "TRTC removed" in text, "the logs must have been written, or this proves nothing"
    for secret in (KEY, OTHER_KEY, SECRET_KEY):
        assert secret not in text
