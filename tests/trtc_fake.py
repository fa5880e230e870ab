"""A local stand-in for TRTC's API endpoint that checks TC3-HMAC-SHA256 signatures for real.

It recomputes each request's signature from what arrived (method, path, the Host and
Content-Type headers as sent, the body) with its own implementation of Tencent Cloud's
documented algorithm, not the SDK's, and answers in TRTC's JSON shape: ``{"Response":
{"RequestId": ...}}`` or ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``,
always with HTTP 200 as the real endpoint does.

Actions, with the parameter types of TRTC's API reference (product/647) checked:

* ``RemoveUserByStrRoomId``.
* The cloud ingest: ``StartStreamIngest`` answers a ``TaskId`` and the task runs until
  ``StopStreamIngest`` or :meth:`FakeTrtc.end_task`; ``DescribeStreamIngest`` answers
  ``Status`` ``InProgress`` while it runs and ``NotExist`` after (the two documented values);
  stopping a task that no longer runs answers ``FailedOperation.TaskNotExist``.
  ``UpdateStreamIngest`` changes a running task's ``StreamUrl``, ``Volume``, pause
  (``IsPause``), ``EnableProgress`` or ``Tempo`` (:attr:`Task.params` shows the task as it is
  now, :attr:`Task.updates` each update), and answers ``Status``.
* Room data: ``DescribeRoomInfo`` lists a room's unfinished session (``CommId``
  ``<app>_<room>_<created>``) while anyone is in it, ``DescribeUserInfo`` lists that
  session's users. Who is in a room: the running ingest tasks' robots, plus whoever
  ``members`` (e.g. the local room's publishers) names, less ``hidden`` users.

Faults: ``fail_next`` answers the next valid call with an error, ``fail`` every call of an
action; a wrong key fails the signature check as TRTC would.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SERVICE = "trtc"
VERSION = "2019-07-22"
_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<headers>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_signature(
    secret_key: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    signed_headers: list[str],
    payload: bytes,
    timestamp: str,
    date: str,
    service: str,
) -> str:
    """Tencent Cloud's TC3-HMAC-SHA256 signature (API 3.0 docs, "Signature v3")."""
    canonical_headers = "".join(f"{h}:{headers[h].strip().lower()}\n" for h in signed_headers)
    canonical_request = "\n".join(
        [
            method,
            path,
            query,
            canonical_headers,
            ";".join(signed_headers),
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    key = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    key = _hmac(key, service)
    key = _hmac(key, "tc3_request")
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class Call:
    """One request that passed the signature check."""

    action: str
    params: dict[str, Any]
    region: str | None
    request_id: str


@dataclass
class Task:
    """One cloud ingest task."""

    task_id: str
    params: dict[str, Any]
    running: bool = True
    #: The UpdateStreamIngest parameters, in order (without SdkAppId and TaskId).
    updates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeTrtc:
    """The fake endpoint: ``credentials`` maps SecretId → SecretKey."""

    credentials: dict[str, str]
    calls: list[Call] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    #: Error code to answer the next valid call with (then cleared), e.g. a missing room.
    fail_next: tuple[str, str] | None = None
    #: Error code to answer every valid call of an action with, until removed.
    fail: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Users in a room besides the ingest robots: (SdkAppId, room) → user ids.
    members: Callable[[int, str], set[str]] | None = None
    #: Users TRTC does not see, wherever they push.
    hidden: set[str] = field(default_factory=set)
    tasks: dict[str, Task] = field(default_factory=dict)
    _sessions: dict[tuple[int, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``, for ``ROOMCAST_TRTC_ENDPOINT``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeTrtc:
        """Serve on a free loopback port in a daemon thread."""
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = fake.handle("POST", self.path, dict(self.headers.items()), body)
                data = json.dumps({"Response": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's output clean

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        """Check one request; return the ``Response`` object to send."""
        request_id = str(uuid.uuid4())
        h = {k.lower(): v for k, v in headers.items()}
        problem = self._authenticate(method, path, h, body)
        if problem is not None:
            self.refused.append(problem[0])
            return {"Error": {"Code": problem[0], "Message": problem[1]}, "RequestId": request_id}
        action = h.get("x-tc-action", "")
        params = json.loads(body or b"{}")
        if self.fail_next is not None:
            code, message = self.fail_next
            self.fail_next = None
            return {"Error": {"Code": code, "Message": message}, "RequestId": request_id}
        if action in self.fail:
            return _error(*self.fail[action], request_id)
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any] | str]] = {
            "RemoveUserByStrRoomId": _check_remove_user,
            "StartStreamIngest": self._start_ingest,
            "DescribeStreamIngest": self._describe_ingest,
            "StopStreamIngest": self._stop_ingest,
            "UpdateStreamIngest": self._update_ingest,
            "DescribeRoomInfo": self._describe_room,
            "DescribeUserInfo": self._describe_users,
        }
        handler = handlers.get(action)
        if handler is None:
            return _error("InvalidAction", f"the action {action} is not supported", request_id)
        with self._lock:
            answer = handler(params)
        if isinstance(answer, str):
            code, _, message = answer.partition(": ")
            return _error(code, message, request_id)
        self.calls.append(Call(action, params, h.get("x-tc-region"), request_id))
        return {**answer, "RequestId": request_id}

    def of(self, action: str) -> list[Call]:
        """The valid calls of one action, in order."""
        return [c for c in self.calls if c.action == action]

    def end_task(self, task_id: str) -> None:
        """End an ingest task on TRTC's side (its source played out, TRTC stopped it)."""
        with self._lock:
            self.tasks[task_id].running = False

    # --- cloud ingest ---------------------------------------------------------------------

    def _start_ingest(self, params: dict[str, Any]) -> dict[str, Any] | str:
        bad = _check_start_ingest(params)
        if bad is not None:
            return f"InvalidParameter: {bad}"
        task = Task(f"task-{uuid.uuid4().hex[:12]}", params)
        self.tasks[task.task_id] = task
        return {"TaskId": task.task_id}

    def _task_of(self, params: dict[str, Any]) -> Task | str:
        if not isinstance(params.get("SdkAppId"), int):
            return "InvalidParameter: SdkAppId must be an integer"
        if not isinstance(params.get("TaskId"), str) or not params["TaskId"]:
            return "MissingParameter.TaskId: TaskId must be a non-empty string"
        task = self.tasks.get(params["TaskId"])
        if task is None or task.params["SdkAppId"] != params["SdkAppId"]:
            return "InvalidParameter.TaskId: no such task"
        return task

    def _describe_ingest(self, params: dict[str, Any]) -> dict[str, Any] | str:
        task = self._task_of(params)
        if isinstance(task, str):
            return task
        return {"Status": "InProgress" if task.running else "NotExist"}

    def _stop_ingest(self, params: dict[str, Any]) -> dict[str, Any] | str:
        task = self._task_of(params)
        if isinstance(task, str):
            return task
        if not task.running:
            return "FailedOperation.TaskNotExist: the task does not exist"
        task.running = False
        return {}

    def _update_ingest(self, params: dict[str, Any]) -> dict[str, Any] | str:
        bad = _check_update_ingest(params)
        if bad is not None:
            return f"InvalidParameter: {bad}"
        task = self._task_of(params)
        if isinstance(task, str):
            return task
        if not task.running:
            return "FailedOperation.TaskNotExist: the task does not exist"
        update = {k: v for k, v in params.items() if k not in ("SdkAppId", "TaskId")}
        task.updates.append(update)
        task.params = {**task.params, **update}
        return {"Status": "InProgress"}

    # --- room data ------------------------------------------------------------------------

    def _users_in(self, app: int, room: str) -> set[str]:
        users = set(self.members(app, room)) if self.members is not None else set()
        for task in self.tasks.values():
            if task.running and (task.params["SdkAppId"], task.params["RoomId"]) == (app, room):
                users.add(task.params["UserId"])
        return users - self.hidden

    def _describe_room(self, params: dict[str, Any]) -> dict[str, Any] | str:
        bad = _check_range(params, 24 * 3600)
        if bad is not None:
            return f"InvalidParameter: {bad}"
        app, room = params["SdkAppId"], params.get("RoomId")
        if not isinstance(room, str) or not room:
            return "InvalidParameter: RoomId must be a non-empty string"
        rooms = []
        if self._users_in(app, room):
            created = self._sessions.setdefault((app, room), int(time.time()))
            rooms.append(
                {
                    "CommId": f"{app}_{room}_{created}",
                    "RoomString": room,
                    "CreateTime": created,
                    "DestroyTime": 0,
                    "IsFinished": False,
                    "UserId": "",
                }
            )
        else:
            self._sessions.pop((app, room), None)  # the session ended with its last user
        return {"Total": len(rooms), "RoomList": rooms}

    def _describe_users(self, params: dict[str, Any]) -> dict[str, Any] | str:
        bad = _check_range(params, 4 * 3600)
        if bad is not None:
            return f"InvalidParameter: {bad}"
        comm_id = params.get("CommId")
        if not isinstance(comm_id, str) or comm_id.count("_") < 2:
            return "InvalidParameter: CommId must be <SdkAppId>_<room>_<created>"
        app, _, rest = comm_id.partition("_")
        room, _, created = rest.rpartition("_")
        wanted = params.get("UserIds")
        if wanted is not None and (not isinstance(wanted, list) or not 1 <= len(wanted) <= 100):
            return "InvalidParameter: UserIds must list 1 to 100 users"
        users = sorted(self._users_in(int(app), room))
        listed = [
            {
                "RoomStr": room,
                "UserId": user,
                "JoinTs": int(created),
                "LeaveTs": int(time.time()),
                "DeviceType": "RTMP",
                "SdkVersion": "",
                "ClientIp": "127.0.0.1",
                "Finished": False,
            }
            for user in users
            if wanted is None or user in wanted
        ]
        return {"Total": len(listed), "UserList": listed}

    def _authenticate(
        self, method: str, path: str, h: dict[str, str], body: bytes
    ) -> tuple[str, str] | None:
        match = _AUTH.match(h.get("authorization", ""))
        if match is None:
            return "AuthFailure.InvalidAuthorization", "Authorization is not TC3-HMAC-SHA256"
        secret_key = self.credentials.get(match["id"])
        if secret_key is None:
            return "AuthFailure.SecretIdNotFound", "the SecretId is not found"
        timestamp = h.get("x-tc-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return "AuthFailure.SignatureExpire", "the signature expired (X-TC-Timestamp)"
        # The credential's date must be the UTC date of the timestamp.
        if datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d") != match["date"]:
            return "AuthFailure.SignatureFailure", "the credential date is not the request's"
        if match["service"] != SERVICE or h.get("x-tc-version") != VERSION:
            return "AuthFailure.SignatureFailure", "wrong service or version"
        signed = match["headers"].split(";")
        if "host" not in signed or any(name not in h for name in signed):
            return "AuthFailure.SignatureFailure", "a signed header is missing"
        route, _, query = path.partition("?")
        expected = tc3_signature(
            secret_key,
            method,
            route,
            query,
            h,
            signed,
            body,
            timestamp,
            match["date"],
            match["service"],
        )
        if not hmac.compare_digest(expected, match["sig"]):
            return "AuthFailure.SignatureFailure", "the request signature does not match"
        return None


def _error(code: str, message: str, request_id: str) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": message}, "RequestId": request_id}


def _check_remove_user(params: dict[str, Any]) -> dict[str, Any] | str:
    """RemoveUserByStrRoomId's documented parameters and types."""
    if not isinstance(params.get("SdkAppId"), int):
        return "InvalidParameter: SdkAppId must be an integer"
    if not isinstance(params.get("RoomId"), str) or not params["RoomId"]:
        return "InvalidParameter: RoomId must be a non-empty string"
    users = params.get("UserIds")
    if not isinstance(users, list) or not 1 <= len(users) <= 10:
        return "InvalidParameter: UserIds must list 1 to 10 users"
    if not all(isinstance(u, str) and u for u in users):
        return "InvalidParameter: UserIds must be strings"
    return {}


#: StartStreamIngest's parameters (SDK models.py) and their JSON types.
_START_TYPES: dict[str, type | tuple[type, ...]] = {
    "SdkAppId": int,
    "RoomId": str,
    "RoomIdType": int,
    "UserId": str,
    "UserSig": str,
    "StreamUrl": str,
    "PrivateMapKey": str,
    "SeekSecond": int,
    "AutoPush": bool,
    "RepeatNum": int,
    "MaxDuration": int,
    "Volume": int,
    "EnableProgress": bool,
    "Tempo": (int, float),
    "IdleTimeout": int,
}


def _check_start_ingest(params: dict[str, Any]) -> str | None:
    """StartStreamIngest's documented parameters, types and ranges."""
    for name in ("SdkAppId", "RoomId", "RoomIdType", "UserId", "UserSig", "StreamUrl"):
        if name not in params:
            return f"{name} is required"
    if (wrong := _wrong_type(params, _START_TYPES)) is not None:
        return wrong
    if params["RoomIdType"] not in (0, 1):
        return "RoomIdType must be 0 (string room) or 1 (numeric room)"
    if params["RoomIdType"] == 1 and not params["RoomId"].isdigit():
        return "RoomIdType 1 needs the digits of a numeric room"
    bad = _check_ranges(params)
    if bad is not None:
        return bad
    repeat = params.get("RepeatNum")
    if repeat is not None and (repeat == 0 or not -1 <= repeat <= 1000):
        return "RepeatNum must be -1 or 1 to 1000"
    if "MaxDuration" in params and (repeat != -1 or not 1 <= params["MaxDuration"] <= 10080):
        return "MaxDuration (1 to 10080 minutes) applies to RepeatNum -1 only"
    return None


#: UpdateStreamIngest's parameters (SDK models.py) and their JSON types.
_UPDATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "SdkAppId": int,
    "TaskId": str,
    "StreamUrl": str,
    "Volume": int,
    "IsPause": bool,
    "EnableProgress": bool,
    "Tempo": (int, float),
}
#: Tempo's documented values.
_TEMPOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def _wrong_type(params: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The first parameter the action does not know, or of the wrong type (None: all fine)."""
    for name, value in params.items():
        kind = types.get(name)
        if kind is None:
            return f"unknown parameter {name}"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{name} has the wrong type"
    return None


def _check_update_ingest(params: dict[str, Any]) -> str | None:
    """UpdateStreamIngest's documented parameters, types and ranges."""
    if (wrong := _wrong_type(params, _UPDATE_TYPES)) is not None:
        return wrong
    if len(params.keys() - {"SdkAppId", "TaskId"}) == 0:
        return "nothing to update"
    if "StreamUrl" in params and not params["StreamUrl"]:
        return "StreamUrl must not be empty"
    return _check_ranges(params)


def _check_ranges(params: dict[str, Any]) -> str | None:
    """The ranges StartStreamIngest and UpdateStreamIngest share (the SDK's models.py)."""
    if "Volume" in params and not 0 <= params["Volume"] <= 200:
        return "Volume must be 0 to 200"
    if "Tempo" in params and params["Tempo"] not in _TEMPOS:
        return f"Tempo must be one of {_TEMPOS}"
    if "IdleTimeout" in params and not 0 <= params["IdleTimeout"] <= 600:
        return "IdleTimeout must be 0 to 600"
    if "SeekSecond" in params and params["SeekSecond"] < 0:
        return "SeekSecond must not be negative"
    return None


def _check_range(params: dict[str, Any], span: int) -> str | None:
    """The monitoring APIs' SdkAppId and time range: at most ``span`` s, within 14 days."""
    if not isinstance(params.get("SdkAppId"), int):
        return "SdkAppId must be an integer"
    start, end = params.get("StartTime"), params.get("EndTime")
    if not isinstance(start, int) or not isinstance(end, int) or not start < end:
        return "StartTime and EndTime must be integers, StartTime first"
    if end - start > span:
        return f"EndTime - StartTime must not exceed {span} s"
    if start < time.time() - 14 * 24 * 3600:
        return "only the last 14 days can be queried"
    return None
