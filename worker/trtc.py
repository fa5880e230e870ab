"""TRTC's server APIs (tencentcloud-sdk-python), each optional and never why a push fails.

Today: on a stopped push, ``RemoveUserByStrRoomId`` removes the pushing user from the room,
so the room sees it leave at once (``ROOMCAST_TRTC_REMOVE_USER_ON_STOP``). Pushes enter
string rooms (TRTC's RTMP ingest knows no others), so the string-room variant is the right
one for numeric ``RoomId`` jobs too. The outcome goes into the job record's ``Trtc`` field.

Credentials are the standard ``TENCENTCLOUD_SECRET_ID``/``TENCENTCLOUD_SECRET_KEY``; the SDK
signs every call with TC3-HMAC-SHA256. Nothing here logs a credential.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.trtc.v20190722 import models
from tencentcloud.trtc.v20190722.trtc_client import TrtcClient

from .settings import Settings

log = logging.getLogger(__name__)


def client(settings: Settings) -> TrtcClient | None:
    """A TRTC API client, or None when no credentials are configured.

    ``ROOMCAST_TRTC_ENDPOINT`` is a host (``trtc.tencentcloudapi.com``, HTTPS) or a URL whose
    scheme picks HTTP or HTTPS (``http://host:port``, e.g. a proxy).
    """
    secret_id = settings.tencentcloud_secret_id.get_secret_value()
    secret_key = settings.tencentcloud_secret_key.get_secret_value()
    if not secret_id or not secret_key:
        return None
    endpoint, scheme = settings.trtc_endpoint, "https"
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        endpoint, scheme = parts.netloc, parts.scheme
    http = HttpProfile(protocol=scheme, endpoint=endpoint, reqTimeout=settings.trtc_timeout_seconds)
    return TrtcClient(
        credential.Credential(secret_id, secret_key),
        settings.trtc_region,
        ClientProfile(httpProfile=http),
    )


def remove_user(api: TrtcClient, sdk_app_id: int, room: str, user_id: str) -> dict[str, Any]:
    """``RemoveUserByStrRoomId``; returns the outcome as shown in the job record.

    ``{"Result": "ok", "RequestId"}`` or ``{"Result": "failed", "Error": {"Code",
    "Message"}, "RequestId"}`` (TRTC's error code, e.g. ``AuthFailure.SignatureFailure``).
    """
    request = models.RemoveUserByStrRoomIdRequest()
    request.SdkAppId = sdk_app_id
    request.RoomId = room
    request.UserIds = [user_id]
    try:
        response = api.RemoveUserByStrRoomId(request)
    except TencentCloudSDKException as exc:
        message = exc.get_message()
        # A non-200 answer (a proxy's error page...) comes back as the raw body, in bytes.
        if isinstance(message, bytes):
            message = message.decode("utf-8", errors="replace")
        return {
            "Result": "failed",
            "Error": {"Code": exc.get_code(), "Message": str(message)[:500]},
            "RequestId": exc.get_request_id() or None,
        }
    return {"Result": "ok", "RequestId": response.RequestId}


def on_stop(settings: Settings, doc: dict[str, Any]) -> dict[str, Any]:
    """What TRTC is told when a push ends ``stopped``: the record fields to add (maybe none).

    Called before the job is marked stopped, while it still holds its publisher lease, so
    a push that replaces it (same user, same room) is never removed by mistake. Any failure
    is logged and recorded; it never changes the push's outcome.
    """
    if not settings.trtc_remove_user_on_stop:
        return {}
    room, user = doc["Room"]["RtmpRoom"], doc["UserId"]
    try:
        api = client(settings)
        if api is None:
            outcome: dict[str, Any] = {
                "Result": "skipped",
                "Reason": "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY are not set",
            }
        else:
            outcome = remove_user(api, int(doc["SdkAppId"]), room, user)
    except Exception as exc:  # noqa: BLE001 - the push is over; this must not change it
        log.exception("TRTC RemoveUserByStrRoomId raised")
        outcome = {
            "Result": "failed",
            "Error": {"Code": "InternalError", "Message": f"{type(exc).__name__}: {exc}"},
        }
    if outcome["Result"] == "ok":
        log.info("TRTC removed %s from room %s (request %s)", user, room, outcome["RequestId"])
    else:
        log.warning("TRTC did not remove %s from room %s: %s", user, room, outcome)
    return {"Trtc": {"RemoveUser": outcome}}
