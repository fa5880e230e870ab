"""TRTC's server APIs (tencentcloud-sdk-python) around a push, each optional.

None of these is why a push fails (``Engine=cloud``, in ``worker/cloud.py``, is the one use of
the API that a push depends on):

* On a stopped push, ``RemoveUserByStrRoomId`` removes the pushing user from the room, so the
  room sees it leave at once (``ROOMCAST_TRTC_REMOVE_USER_ON_STOP``). Pushes enter string
  rooms (TRTC's RTMP ingest knows no others), so the string-room variant is the right one for
  numeric ``RoomId`` jobs too.
* While a push runs, :class:`PresenceWatch` asks TRTC every ``ROOMCAST_TRTC_PRESENCE_SECONDS``
  whether it sees the pushing user in the room (``DescribeRoomInfo`` + ``DescribeUserInfo``,
  see :func:`user_in_room` for why both).

The outcomes go into the job record's ``Trtc`` field (``RemoveUser``, ``Presence``).

Credentials are the standard ``TENCENTCLOUD_SECRET_ID``/``TENCENTCLOUD_SECRET_KEY``; the SDK
signs every call with TC3-HMAC-SHA256. Nothing here logs a credential.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.trtc.v20190722 import models
from tencentcloud.trtc.v20190722.trtc_client import TrtcClient

from jobs.keys import job_key
from jobs.records import JobRecord, iso
from jobs.settings import Settings
from jobs.store import JobStore, now

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
        return failure(exc)
    return {"Result": "ok", "RequestId": response.RequestId}


def error_of(exc: TencentCloudSDKException) -> dict[str, str]:
    """TRTC's error as shown in a record: ``{"Code", "Message"}``, the message cut at 500."""
    message = exc.get_message()
    # A non-200 answer (a proxy's error page...) comes back as the raw body, in bytes.
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return {"Code": str(exc.get_code()), "Message": str(message)[:500]}


def failure(exc: TencentCloudSDKException) -> dict[str, Any]:
    """A failed call's outcome: ``{"Result": "failed", "Error", "RequestId"}``."""
    return {"Result": "failed", "Error": error_of(exc), "RequestId": exc.get_request_id() or None}


def on_stop(
    settings: Settings, record: JobRecord, presence: PresenceWatch | None = None
) -> dict[str, Any]:
    """What TRTC is told when a push ends ``stopped``: the record fields to add (maybe none).

    Called before the job is marked stopped, while it still holds its publisher lease, so
    a push that replaces it (same user, same room) is never removed by mistake. Any failure
    is logged and recorded; it never changes the push's outcome. The ``Trtc`` field returned
    replaces the record's, so it carries ``presence``'s last answer along.
    """
    if not settings.trtc_remove_user_on_stop or record.ShardOf:
        return {}  # a shard publishes as its push's targets, not as the push's own UserId
    room, user = record.Room.RtmpRoom, record.UserId
    try:
        api = client(settings)
        if api is None:
            outcome: dict[str, Any] = {
                "Result": "skipped",
                "Reason": "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY are not set",
            }
        else:
            outcome = remove_user(api, record.SdkAppId, room, user)
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
    return {"Trtc": {**(presence.fields() if presence else {}), "RemoveUser": outcome}}


# Merge one entry (ARGV[1] = name, ARGV[2] = JSON value) into the ``Trtc`` object of a job's
# record (KEYS[1], its hash), only while the job runs: a late write never touches an ended
# record. In one script, so that it cannot lose a field another writer set meanwhile.
_RECORD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local doc = cjson.decode(redis.call('HGET', KEYS[1], 'doc'))
local trtc = doc['Trtc']
if type(trtc) ~= 'table' then trtc = {} end
trtc[ARGV[1]] = cjson.decode(ARGV[2])
doc['Trtc'] = trtc
redis.call('HSET', KEYS[1], 'doc', cjson.encode(doc))
return 1
"""


def record(client: redis.Redis, request_id: str, name: str, value: dict[str, Any]) -> bool:
    """Set ``Trtc.<name>`` in a running job's record; False when the job no longer runs."""
    done = client.eval(_RECORD, 1, job_key(request_id), name, json.dumps(value))
    return bool(cast(int, done))


#: DescribeRoomInfo's longest time range (its documentation: EndTime - StartTime ≤ 24 h).
ROOM_QUERY_SPAN = 24 * 3600
#: DescribeUserInfo's longest time range (≤ 4 h).
USER_QUERY_SPAN = 4 * 3600


def user_in_room(
    api: TrtcClient,
    sdk_app_id: int,
    room: str,
    user_id: str,
    since: float,
    at: float | None = None,
) -> dict[str, Any]:
    """Whether TRTC's room data shows ``user_id`` in ``room`` now: ``{"InRoom", "CommId"}``.

    Two calls, because no single one answers "is this user in this room": DescribeUserInfo
    lists a call's users with ``Finished`` (left or not), but it takes the call's ``CommId``,
    which only DescribeRoomInfo gives (the room's unfinished session, ``IsFinished`` false).
    DescribeCallDetailInfo and DescribeUserEvent need the CommId too, and the real-time
    "scale" APIs count users without naming them. ``since`` is when the push started: the
    user joined after it, so the user query starts there (within its 4 h limit).

    TRTC documents these APIs as monitoring data, for statistics and reconciliation rather
    than real-time decisions, and sells them with its monitoring packages: the answer may lag
    behind the room, which is why it is only shown, never acted on. Raises
    ``TencentCloudSDKException`` when TRTC answers an error.
    """
    end = int(at if at is not None else time.time())
    rooms = models.DescribeRoomInfoRequest()
    rooms.SdkAppId = sdk_app_id
    rooms.RoomId = room
    # The widest range allowed: the room's session may have begun long before this push.
    rooms.StartTime = end - ROOM_QUERY_SPAN
    rooms.EndTime = end
    rooms.PageNumber = 0
    rooms.PageSize = 100
    sessions = [r for r in api.DescribeRoomInfo(rooms).RoomList or [] if not r.IsFinished]
    if not sessions:
        return {"InRoom": False, "CommId": None}
    session = max(sessions, key=lambda r: r.CreateTime or 0)
    users = models.DescribeUserInfoRequest()
    users.CommId = session.CommId
    users.SdkAppId = sdk_app_id
    users.StartTime = max(end - USER_QUERY_SPAN, int(since) - 60)
    users.EndTime = end
    users.UserIds = [user_id]
    users.PageNumber = 0
    users.PageSize = 100
    listed = api.DescribeUserInfo(users).UserList or []
    # A user who left and came back is listed once per stay: any stay not finished counts.
    in_room = any(u.UserId == user_id and not u.Finished for u in listed)
    return {"InRoom": in_room, "CommId": session.CommId}


class PresenceWatch(threading.Thread):
    """Asks TRTC now and then whether it sees a running push's user in its room.

    A thread of its own, so that the media loop never waits on HTTP. Every ``interval``
    seconds it writes ``Trtc.Presence`` = ``{"InRoom": bool | null, "CheckedAt", "CommId"
    [, "Error"]}`` into the job's record (``InRoom`` null when TRTC could not be asked). The
    answer is information only: whatever it says, the push goes on.
    """

    def __init__(
        self, store: JobStore, settings: Settings, request_id: str, record: JobRecord
    ) -> None:
        super().__init__(name=f"presence-{request_id[:8]}", daemon=True)
        self._store = store
        self._settings = settings
        self._request_id = request_id
        self._app = record.SdkAppId
        # The room the user is in: the string room for RTMP pushes; for Engine=cloud with a
        # numeric RoomId, its digits, which is also how TRTC's room APIs take a numeric room.
        self._room = record.Room.RtmpRoom
        self._user = record.UserId
        self._since = now()
        self._interval = settings.trtc_presence_seconds
        self._done = threading.Event()
        self.last: dict[str, Any] | None = None

    def run(self) -> None:
        """Check, record, wait; until :meth:`stop`."""
        api: TrtcClient | None = None
        while not self._done.wait(self._interval):
            try:
                api = api or client(self._settings)
                self.last = self.check(api)
                if not record(self._store.redis, self._request_id, "Presence", self.last):
                    return  # the push has ended
            except Exception as exc:  # noqa: BLE001 - an information thread must never die
                log.warning("presence check failed: %s", exc)

    def check(self, api: TrtcClient | None) -> dict[str, Any]:
        """One check, as recorded."""
        checked = iso(now())
        if api is None:
            error = {
                "Code": "NotConfigured",
                "Message": "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY are not set",
            }
            return {"InRoom": None, "CheckedAt": checked, "Error": error}
        try:
            found = user_in_room(api, self._app, self._room, self._user, self._since)
        except TencentCloudSDKException as exc:
            return {"InRoom": None, "CheckedAt": checked, "Error": error_of(exc)}
        return {**found, "CheckedAt": checked}

    def fields(self) -> dict[str, Any]:
        """The last answer as ``Trtc`` entries (``{"Presence": ...}``), or none yet."""
        return {"Presence": self.last} if self.last is not None else {}

    def stop(self) -> None:
        """End the checks (the push is over); a check in flight is not waited for long."""
        self._done.set()
        self.join(timeout=1.0)


def watch_presence(
    store: JobStore, settings: Settings, request_id: str, record: JobRecord
) -> PresenceWatch | None:
    """Start a :class:`PresenceWatch` for a push, or None when presence is off (the default)."""
    if settings.trtc_presence_seconds <= 0 or record.ShardOf:
        return None  # a shard publishes as its push's targets, not as the push's own UserId
    watch = PresenceWatch(store, settings, request_id, record)
    watch.start()
    return watch
