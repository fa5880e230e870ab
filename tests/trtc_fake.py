"""A local stand-in for TRTC's API endpoint that checks TC3-HMAC-SHA256 signatures for real.

It recomputes each request's signature from what arrived (method, path, the Host and
Content-Type headers as sent, the body) with its own implementation of Tencent Cloud's
documented algorithm, not the SDK's, and answers in TRTC's JSON shape: ``{"Response":
{"RequestId": ...}}`` or ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``,
always with HTTP 200 as the real endpoint does.
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
class FakeTrtc:
    """The fake endpoint: ``credentials`` maps SecretId → SecretKey."""

    credentials: dict[str, str]
    calls: list[Call] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    #: Error code to answer the next valid call with (then cleared), e.g. a missing room.
    fail_next: tuple[str, str] | None = None
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
        if action != "RemoveUserByStrRoomId":
            return _error("InvalidAction", f"the action {action} is not supported", request_id)
        bad = _check_remove_user(params)
        if bad is not None:
            return _error("InvalidParameter", bad, request_id)
        self.calls.append(Call(action, params, h.get("x-tc-region"), request_id))
        return {"RequestId": request_id}

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


def _check_remove_user(params: dict[str, Any]) -> str | None:
    """RemoveUserByStrRoomId's documented parameters and types."""
    if not isinstance(params.get("SdkAppId"), int):
        return "SdkAppId must be an integer"
    if not isinstance(params.get("RoomId"), str) or not params["RoomId"]:
        return "RoomId must be a non-empty string"
    users = params.get("UserIds")
    if not isinstance(users, list) or not 1 <= len(users) <= 10:
        return "UserIds must list 1 to 10 users"
    if not all(isinstance(u, str) and u for u in users):
        return "UserIds must be strings"
    return None
