"""SCF's async-event API, answered by roomcast: what the template's callers track and stop
pushes with.

The template ran as an asynchronous SCF function: its callers follow and stop a push with
Tencent Cloud's own API, ``GetAsyncEventStatus``, ``TerminateAsyncEvent`` and
``ListAsyncEvents`` (service ``scf``, version 2018-04-16), passing the ``x-scf-reqid`` of the
submission as ``InvokeRequestId``. A caller using tencentcloud-sdk-python's ``ScfClient``
points its ``HttpProfile.endpoint`` at roomcast and changes nothing else: requests to ``/``
carrying ``X-TC-Action`` are answered here, after their TC3-HMAC-SHA256 signature is
verified against ``ROOMCAST_SCF_SECRET_ID``/``_KEY``, in SCF's shapes, status names and
error codes (always HTTP 200, as Tencent Cloud API 3.0 answers).

Statuses: queued or running → ``RUNNING``; succeeded → ``FINISHED``; failed → ``FAILED``;
stopped → ``ABORTED``. Times are UTC, in SCF's ``%Y-%m-%d %H:%M:%S.%f`` format.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from flask import Flask, Request, Response, current_app, request

from jobs.settings import Settings
from jobs.states import State
from jobs.stops import Stop, StopCause
from jobs.store import Job, JobStore

SERVICE = "scf"
VERSION = "2018-04-16"
#: How old a signed request may be (Tencent Cloud's own limit).
MAX_AGE_SECONDS = 300
STATUS = {
    State.QUEUED: "RUNNING",
    State.RUNNING: "RUNNING",
    State.SUCCEEDED: "FINISHED",
    State.FAILED: "FAILED",
    State.STOPPED: "ABORTED",
}
#: SCF's invocation status code for each status (200: ran or runs; 430: the function
#: failed; 439: terminated).
STATUS_CODE = {"RUNNING": 200, "FINISHED": 200, "FAILED": 430, "ABORTED": 439}
_AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, ?SignedHeaders=(?P<headers>[a-z0-9;-]+), ?Signature=(?P<signature>[0-9a-f]+)"
)


class ScfError(Exception):
    """An SCF error answer: ``code`` as Tencent Cloud names it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def register(app: Flask) -> None:
    """Answer SCF API calls to ``/`` before anything else looks at them (the bearer-key
    check included: they carry their own signature)."""
    app.before_request(_dispatch)


def _dispatch() -> Response | None:
    if request.path != "/" or "X-TC-Action" not in request.headers:
        return None
    answer: dict[str, Any]
    try:
        verify(request, _settings())
        answer = _act(request.headers["X-TC-Action"], _params(request))
    except ScfError as exc:
        answer = {"Error": {"Code": exc.code, "Message": exc.message}}
    answer["RequestId"] = str(uuid.uuid4())
    return Response(json.dumps({"Response": answer}), mimetype="application/json")


# -- TC3-HMAC-SHA256 ----------------------------------------------------------------------


def signature(secret_key: str, date: str, string_to_sign: str) -> str:
    """TC3's signature of ``string_to_sign`` with the key derived for ``date`` and SCF."""

    def mac(key: bytes, text: str) -> bytes:
        return hmac.new(key, text.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(req: Request, settings: Settings, now: float | None = None) -> None:
    """Raise ScfError with Tencent Cloud's auth codes unless ``req`` is signed, recently,
    with the configured SecretId and SecretKey."""
    if not settings.scf_secret_id:
        raise ScfError(
            "AuthFailure.SecretIdNotFound",
            "this roomcast takes no SCF API calls (ROOMCAST_SCF_SECRET_ID is not set)",
        )
    found = _AUTHORIZATION.fullmatch(req.headers.get("Authorization", "").strip())
    if found is None or found["service"] != SERVICE:
        raise ScfError("AuthFailure.InvalidAuthorization", "Authorization is not a TC3 one")
    if not hmac.compare_digest(found["id"].encode(), settings.scf_secret_id.encode()):
        raise ScfError("AuthFailure.SecretIdNotFound", "the SecretId is not known here")
    try:
        stamp = int(req.headers.get("X-TC-Timestamp", ""))
    except ValueError:
        raise ScfError("AuthFailure.InvalidAuthorization", "X-TC-Timestamp is missing") from None
    if abs((time.time() if now is None else now) - stamp) > MAX_AGE_SECONDS:
        raise ScfError(
            "AuthFailure.SignatureExpire", "the request was signed over 5 minutes from now"
        )
    date = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")
    if found["date"] != date:
        raise ScfError("AuthFailure.SignatureFailure", "the credential's date is not its time")
    names = found["headers"].split(";")
    canonical_headers = "".join(f"{n}:{_header(req, n)}\n" for n in names)
    payload = req.query_string.decode() if req.method == "GET" else ""
    body = b"" if req.method == "GET" else req.get_data()
    canonical = "\n".join(
        [
            req.method,
            "/",
            payload,
            canonical_headers,
            found["headers"],
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{date}/{SERVICE}/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(stamp), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    expected = signature(settings.scf_secret_key.get_secret_value(), date, to_sign)
    if not hmac.compare_digest(expected, found["signature"]):
        raise ScfError("AuthFailure.SignatureFailure", "the request's signature does not match")
    _bind_to_action(found["signature"], req.headers.get("X-TC-Action", ""))


def _bind_to_action(signature_hex: str, action: str) -> None:
    """The SDK signs neither X-TC-Action nor a nonce: a signature seen once (a status poll)
    could otherwise be sent again as TerminateAsyncEvent. Each signature is bound to the
    first action it came with for as long as it is valid; the same call again is fine."""
    key = f"roomcast:scf:signature:{signature_hex}"
    redis = _store().redis
    if not redis.set(key, action, nx=True, ex=2 * MAX_AGE_SECONDS):
        first = cast("bytes | None", redis.get(key))
        if first is not None and first.decode() != action:
            raise ScfError(
                "AuthFailure.SignatureFailure", "this signature was made for another action"
            )


def _header(req: Request, name: str) -> str:
    value = req.host if name == "host" else req.headers.get(name, "")
    return value.strip().lower() if name == "x-tc-action" else value.strip()


# -- the three actions ---------------------------------------------------------------------


def _params(req: Request) -> dict[str, Any]:
    if req.headers.get("X-TC-Version") != VERSION:
        raise ScfError("InvalidParameterValue", f"X-TC-Version must be {VERSION}")
    if req.method == "GET":
        return dict(req.args)
    try:
        params = json.loads(req.get_data() or b"{}")
    except ValueError:
        raise ScfError("InvalidParameter", "the body is not JSON") from None
    if not isinstance(params, dict):
        raise ScfError("InvalidParameter", "the body is not a JSON object")
    return params


def _act(action: str, params: dict[str, Any]) -> dict[str, Any]:
    if action == "GetAsyncEventStatus":
        job = _job(params)
        return {"Result": {**_status(job), "InvokeRequestId": job.request_id}}
    if action == "TerminateAsyncEvent":
        return _terminate(_job(params), bool(params.get("GraceShutdown", False)))
    if action == "ListAsyncEvents":
        return _list(params)
    raise ScfError("InvalidAction", f"roomcast answers no SCF action {action!r}")


def _job(params: dict[str, Any]) -> Job:
    request_id = params.get("InvokeRequestId")
    if not isinstance(request_id, str) or not request_id:
        raise ScfError("MissingParameter", "InvokeRequestId is required")
    job = _store().get(request_id)
    if job is None:
        raise ScfError("ResourceNotFound.AsyncEvent", f"no async event {request_id!r}")
    return job


def _status(job: Job) -> dict[str, Any]:
    status = STATUS[job.state]
    return {"Status": status, "StatusCode": STATUS_CODE[status]}


def _terminate(job: Job, grace: bool) -> dict[str, Any]:
    from .views import stop_push  # noqa: PLC0415 - views imports the app this registers on

    if job.state.finished:
        raise ScfError(
            "FailedOperation.AsyncEventStatus",
            f"the async event has ended ({STATUS[job.state]})",
        )
    stop_push(job.request_id, Stop(StopCause.SCF, "true" if grace else "false"))
    return {}


def _list(params: dict[str, Any]) -> dict[str, Any]:
    limit = _int(params, "Limit", 20, 1, 100)
    offset = _int(params, "Offset", 0, 0, 10_000)
    wanted = params.get("Status") or []
    by_end = params.get("Orderby") == "EndTime"
    events = [
        event
        for event in (
            _event(job)
            for job in _store().list(limit=1000)
            if job.record.ShardOf is None  # a push's shards are part of it
        )
        if (not wanted or event["Status"] in wanted)
        and params.get("InvokeRequestId") in (None, "", event["InvokeRequestId"])
        and _within(event["StartTime"], params.get("StartTimeInterval"))
        and _within(event["EndTime"], params.get("EndTimeInterval"))
    ]
    events.sort(
        key=lambda e: (e["EndTime"] if by_end else e["StartTime"]) or "",
        reverse=params.get("Order", "DESC") != "ASC",
    )
    return {"TotalCount": len(events), "EventList": events[offset : offset + limit]}


def _event(job: Job) -> dict[str, Any]:
    record = job.record
    return {
        "InvokeRequestId": job.request_id,
        "InvokeType": "invoke",
        "Qualifier": "$LATEST",
        "Status": STATUS[job.state],
        "StartTime": _time(record.StartedAt or record.CreatedAt),
        "EndTime": _time(record.FinishedAt),
    }


def _time(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _within(value: str, interval: Any) -> bool:
    """SCF's half-open interval {Start, End} ("%Y-%m-%d %H:%M:%S"), either side optional."""
    if not isinstance(interval, dict):
        return True
    start, end = interval.get("Start"), interval.get("End")
    if value == "":
        return not start and not end
    return (not start or value >= start) and (not end or value < end)


def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ScfError("InvalidParameterValue", f"{name} must be an integer {low}–{high}")
    return value


def _store() -> JobStore:
    return cast(JobStore, current_app.extensions["roomcast.store"])


def _settings() -> Settings:
    return cast(Settings, current_app.extensions["roomcast.settings"])
