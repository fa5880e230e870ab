"""A caller of the SCF template moves to roomcast by changing one URL: its template POST
starts the push, and tencentcloud-sdk-python's own ScfClient, its endpoint pointed at
roomcast, tracks and terminates it with SCF's async-event API (api/scf.py).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models, scf_client

from api.scf import signature
from devstack.room import LocalRoom

from ..stack import Api, start_api, stop

SECRET_ID, SECRET_KEY = "AKIDroomcastScfTest0001", "scf-secret-key-for-tests"
FINAL = {"succeeded", "failed", "stopped"}


@pytest.fixture(scope="module")
def scf_api(
    service_env: dict[str, str], worker: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The suite's stack with SCF credentials: the suite's workers run its pushes."""
    env = dict(service_env, ROOMCAST_SCF_SECRET_ID=SECRET_ID, ROOMCAST_SCF_SECRET_KEY=SECRET_KEY)
    proc, base = start_api(env, tmp_path_factory.mktemp("scf") / "api.log")
    yield Api(base)
    stop(proc)


def client(api: Api, secret_key: str = SECRET_KEY) -> scf_client.ScfClient:
    """SCF's own client, as the template's callers use it, pointed at roomcast."""
    http = HttpProfile(endpoint=api.base.removeprefix("http://"), protocol="http")
    return scf_client.ScfClient(
        credential.Credential(SECRET_ID, secret_key),
        "ap-guangzhou",
        ClientProfile(httpProfile=http),
    )


def template_post(api: Api, body: dict[str, Any]) -> str:
    """POST / as API Gateway did for the template; the run's id from ``x-scf-reqid``."""
    request = urllib.request.Request(
        f"{api.base}/",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["Message"] == "Async run task submitted"
        return str(answer.headers["x-scf-reqid"])


def seed_body(room: LocalRoom, clip: str, room_name: str) -> dict[str, Any]:
    """The template's own example body (../shared/SEED.md), numbers sent as the web form
    of a caller would send them, pointed at the local room."""
    return {
        "SdkAppId": "1400000001",
        "StrRoomId": room_name,
        "UserId": "user-55952144",
        "Mode": "vod",
        "UserSig": "eJwtzN0K-for-tests",
        "Redis": "false",
        "VideoSrc": room.media_url(clip),
    }


def status_of(scf: scf_client.ScfClient, rid: str) -> str:
    req = models.GetAsyncEventStatusRequest()
    req.InvokeRequestId = rid
    result = scf.GetAsyncEventStatus(req).Result
    assert result.InvokeRequestId == rid
    return str(result.Status)


def test_a_template_push_is_tracked_and_terminated_with_scfs_own_client(
    scf_api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = template_post(scf_api, seed_body(room, long_clip, room_name))
    scf = client(scf_api)
    scf_api.wait_state(rid, {"running"}, timeout=15)
    assert status_of(scf, rid) == "RUNNING"

    listed = models.ListAsyncEventsRequest()
    listed.FunctionName = "trtc-push"
    listed.InvokeRequestId = rid
    events = scf.ListAsyncEvents(listed)
    assert events.TotalCount == 1 and events.EventList[0].Status == "RUNNING"

    stop_it = models.TerminateAsyncEventRequest()
    stop_it.FunctionName, stop_it.InvokeRequestId, stop_it.GraceShutdown = "trtc-push", rid, True
    scf.TerminateAsyncEvent(stop_it)
    final = scf_api.wait_state(rid, FINAL, timeout=10)
    assert final["State"] == "stopped" and "TerminateAsyncEvent" in final["Reason"]
    assert status_of(scf, rid) == "ABORTED"

    with pytest.raises(TencentCloudSDKException) as again:
        scf.TerminateAsyncEvent(stop_it)
    assert again.value.code == "FailedOperation.AsyncEventStatus"


def test_a_finished_push_reads_finished_and_a_failed_one_failed(
    scf_api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    scf = client(scf_api)
    done = template_post(scf_api, seed_body(room, short_clip, room_name))
    broken = template_post(scf_api, seed_body(room, "no_such.mp4", room_name + "_b"))
    for rid in (done, broken):
        scf_api.wait_state(rid, FINAL, timeout=30)
    assert (status_of(scf, done), status_of(scf, broken)) == ("FINISHED", "FAILED")
    listed = models.ListAsyncEventsRequest()
    listed.FunctionName, listed.Status, listed.Limit = "trtc-push", ["FAILED"], 100
    failed = {e.InvokeRequestId for e in scf.ListAsyncEvents(listed).EventList}
    assert broken in failed and done not in failed


def sdk_error(call: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as raised:
        call()
    return str(raised.value.code)


def test_a_wrong_key_an_old_request_and_an_unknown_id_get_scfs_errors(
    scf_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    req = models.GetAsyncEventStatusRequest()
    req.InvokeRequestId = "no-such-request"
    assert sdk_error(lambda: client(scf_api).GetAsyncEventStatus(req)) == (
        "ResourceNotFound.AsyncEvent"
    )
    wrong = client(scf_api, secret_key="not-the-key")
    assert sdk_error(lambda: wrong.GetAsyncEventStatus(req)) == "AuthFailure.SignatureFailure"
    # A request signed ten minutes ago (a captured one, replayed): the SDK's clock moved.
    real_time = abstract_client.time.time
    monkeypatch.setattr(abstract_client.time, "time", lambda: real_time() - 600)
    assert sdk_error(lambda: client(scf_api).GetAsyncEventStatus(req)) == (
        "AuthFailure.SignatureExpire"
    )


def test_template_posts_to_the_root_still_start_pushes_when_scf_is_on(
    scf_api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = template_post(scf_api, seed_body(room, short_clip, room_name))
    assert scf_api.wait_state(rid, FINAL, timeout=30)["State"] == "succeeded"


def signed(api: Api, params: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A body and the headers that sign it as the SDK signs (content-type and host only:
    not the action), as someone who saw one request in transit would have them."""
    body = json.dumps(params)
    stamp = int(time.time())
    date = time.strftime("%Y-%m-%d", time.gmtime(stamp))
    host = api.base.removeprefix("http://")
    canonical = "\n".join(
        ["POST", "/", "", f"content-type:application/json\nhost:{host}\n", "content-type;host",
         hashlib.sha256(body.encode()).hexdigest()]
    )  # fmt: skip
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(stamp), f"{date}/scf/tc3_request",
         hashlib.sha256(canonical.encode()).hexdigest()]
    )  # fmt: skip
    return body.encode(), {
        "Content-Type": "application/json",
        "X-TC-Version": "2018-04-16",
        "X-TC-Timestamp": str(stamp),
        "Authorization": (
            f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/scf/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature(SECRET_KEY, date, to_sign)}"
        ),
    }


def send(api: Api, body: bytes, headers: dict[str, str], action: str) -> dict[str, Any]:
    """Send a signed request as ``action``; SCF's ``Response`` object."""
    request = urllib.request.Request(
        f"{api.base}/", data=body, headers={**headers, "X-TC-Action": action}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read())["Response"])


def test_a_signed_status_call_cannot_be_replayed_as_a_terminate(
    scf_api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = template_post(scf_api, seed_body(room, long_clip, room_name))
    scf_api.wait_state(rid, {"running"}, timeout=15)
    body, headers = signed(scf_api, {"InvokeRequestId": rid})
    assert send(scf_api, body, headers, "GetAsyncEventStatus")["Result"]["Status"] == "RUNNING"
    assert send(scf_api, body, headers, "GetAsyncEventStatus")["Result"]  # a poll, again
    # The same signed request with only the unsigned action header changed.
    replayed = send(scf_api, body, headers, "TerminateAsyncEvent")
    assert replayed["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert scf_api.status(rid)["State"] == "running"
    scf_api.call("POST", f"/v1/pushes/{rid}/stop")
