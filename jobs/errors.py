"""The errors roomcast reports, one tree for the whole service.

Every error carries a stable ``code`` (``Error.Code`` in answers and job records), an HTTP
``status`` (for the API's answer, when one is raised while answering) and a message a user
can act on. The API turns any of them into ``{"Error": {"Code", "Message", ...}}`` in one
handler (``api/errors.py``); the worker records a failed push's as its ``Error``
(``worker/runner.py``). Nothing else defines an error class a user can see.

::

    RoomcastError                  500 InternalError
    ├── InvalidJob                 400 InvalidParameter: a request field is wrong (Field)
    ├── Unauthorized               401 no valid API key
    ├── InvalidJob
    │   └── Forbidden              403 the API key may not act for this SdkAppId (Field)
    ├── NotFound                   404 no such push (or command), or another app's push
    ├── RequestTooLarge            413 the body is over the limit
    ├── UnsupportedMediaType       415 the body is not sent as JSON
    ├── Conflict                   409 the push's state does not allow it
    │   ├── AlreadyFinished        the push has ended (State)
    │   ├── NotRunning             a player command for a push that is not running
    │   ├── NotSwitchable          a player command for a push not started switchable
    │   ├── NotListening           a player command no worker heard
    │   ├── CommandNotSupported    a player command the push's engine cannot do
    │   ├── NotFanout              a target change for a push not started with Targets
    │   ├── LastTarget             removing the only room a fan-out push has left
    │   └── PublisherBusy          this UserId already publishes in this room (RequestId)
    ├── QuotaExceeded              429 the SdkAppId's quota is used up (Retry-After)
    ├── ServiceUnavailable         503 Redis or the task queue is away
    ├── SourceError                the VideoSrc cannot be pushed
    │   ├── SourceNotFound         404 / no such file
    │   ├── SourceUnreachable      refused, timed out, DNS
    │   ├── SourceAddressBlocked   resolves to an internal address (SSRF guard)
    │   ├── SourceNotMedia         not a container FFmpeg can read, or empty
    │   ├── SourceHasNoMedia       readable, but no decodable audio or video stream
    │   └── SourceEndedEarly       truncated in the middle
    ├── RoomError                  the room's ingest
    │   ├── RoomUnreachable        could not connect to the RTMP ingest
    │   └── RoomDisconnected       the connection broke during the push
    ├── ProgressStoreError         the Redis named for progress cannot be used
    ├── TrtcError                  TRTC's server API (Engine=cloud, RemoveUser)
    │   ├── TrtcApiError           502 TRTC refused a call (Trtc: its answer)
    │   └── TrtcNotConfigured      no credentials or region on the worker
    ├── WorkerLost                 the push's worker went silent too many times
    └── InternalError              a bug: the worker log has the traceback
"""

from __future__ import annotations

from typing import Any


class RoomcastError(Exception):
    """Base of every error roomcast raises on purpose."""

    code = "InternalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The error as a job record's ``Error``: ``{"Code", "Message"}``."""
        return {"Code": self.code, "Message": self.message}

    def details(self) -> dict[str, Any]:
        """What an API answer adds to ``Code`` and ``Message`` (``Field``, ``RequestId``…)."""
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers of the API's answer (``Retry-After``…)."""
        return {}


class InvalidJob(RoomcastError):
    """A job field is missing or wrong; ``field`` names it."""

    code = "InvalidParameter"
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {"Field": self.field} if self.field else {}


class Unauthorized(RoomcastError):
    """The call needs a valid ``Authorization: Bearer <key>``."""

    code = "Unauthorized"
    status = 401


class Forbidden(InvalidJob):
    """The API key is scoped to other SdkAppIds than the one asked for."""

    code = "Forbidden"
    status = 403


class QuotaExceeded(RoomcastError):
    """An SdkAppId's quota (concurrent pushes, submissions a minute) is used up."""

    code = "QuotaExceeded"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"RetryAfter": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(RoomcastError):
    """No push (or player command) by that name."""

    code = "NotFound"
    status = 404


class RequestTooLarge(RoomcastError):
    """The request body is larger than the API takes."""

    code = "RequestTooLarge"
    status = 413


class UnsupportedMediaType(RoomcastError):
    """The body is not sent as JSON."""

    code = "UnsupportedMediaType"
    status = 415


class ServiceUnavailable(RoomcastError):
    """Redis or the task queue is away; the call may be retried shortly."""

    code = "ServiceUnavailable"
    status = 503


class Conflict(RoomcastError):
    """The push's state does not allow what was asked."""

    code = "Conflict"
    status = 409


class AlreadyFinished(Conflict):
    """The push (or preparation: ``what``) has ended; ``state`` says how."""

    code = "AlreadyFinished"

    def __init__(self, state: str, what: str = "push") -> None:
        super().__init__(f"the {what} already ended in state {state}")
        self.state = state

    def details(self) -> dict[str, Any]:
        return {"State": self.state}


class NotRunning(Conflict):
    """A player command for a push that is not running."""

    code = "NotRunning"


class NotSwitchable(Conflict):
    """A player command for a push that was not started switchable."""

    code = "NotSwitchable"


class NotListening(Conflict):
    """A player command that no worker heard."""

    code = "NotListening"


class CommandNotSupported(Conflict):
    """A player command the push's engine cannot do (Engine=cloud: queue, seek, loop)."""

    code = "CommandNotSupported"


class NotFanout(Conflict):
    """A target added to or removed from a push that was not started with ``Targets``."""

    code = "NotFanout"

    def __init__(
        self,
        message: str = (
            "this push was not started with Targets: give Targets (it may be []) to fan out"
        ),
    ) -> None:
        super().__init__(message)


class LastTarget(Conflict):
    """Removing the only room a fan-out push still publishes to."""

    code = "LastTarget"


class NoCallback(Conflict):
    """The push has no ``CallbackUrl``: there is nothing to deliver its events to."""

    code = "NoCallback"


class PublisherBusy(Conflict):
    """Another queued or running job already publishes as this (SdkAppId, room, UserId)."""

    code = "PublisherBusy"

    def __init__(self, holder: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"this UserId already publishes into this room (request {holder}); stop that "
            "push first, or send Replace=true to stop it and start this one"
        )
        self.holder = holder

    def details(self) -> dict[str, Any]:
        return {"RequestId": self.holder}


class SourceError(RoomcastError):
    """The source (``VideoSrc``) cannot be read as media."""

    code = "SourceError"


class SourceNotFound(SourceError):
    """The server or file system says the source does not exist."""

    code = "SourceNotFound"


class SourceUnreachable(SourceError):
    """The source's server could not be reached in time."""

    code = "SourceUnreachable"


class SourceNotMedia(SourceError):
    """The source is not a media container FFmpeg can read (or is empty)."""

    code = "SourceNotMedia"


class SourceHasNoMedia(SourceError):
    """The container opened but holds no decodable audio or video stream."""

    code = "SourceHasNoMedia"


class SourceAddressBlocked(SourceError):
    """The source's host resolves to an address the service refuses to read from."""

    code = "SourceAddressBlocked"


class SourceEndedEarly(SourceError):
    """The source stopped before its announced end (a truncated file)."""

    code = "SourceEndedEarly"


class RoomError(RoomcastError):
    """The room's RTMP ingest refused or dropped the push."""

    code = "RoomError"


class RoomUnreachable(RoomError):
    """The RTMP ingest could not be connected to, or refused the publish."""

    code = "RoomUnreachable"


class RoomDisconnected(RoomError):
    """The RTMP connection broke while pushing."""

    code = "RoomDisconnected"


class ProgressStoreError(RoomcastError):
    """The Redis named for the progress store cannot be used."""

    code = "ProgressStoreError"


class TrtcError(RoomcastError):
    """TRTC's server API (cloud ingest, RemoveUser) could not do what was asked."""

    code = "TrtcError"


class TrtcApiError(TrtcError):
    """TRTC refused a call; ``outcome`` is the record's ``{"Result", "Error", "RequestId"}``,
    ``hint`` what the caller can do about the error code."""

    code = "TrtcApiError"
    #: Answered by the API when TRTC refuses a call it makes for a request (a player
    #: command of an Engine=cloud push): the upstream refused.
    status = 502

    def __init__(self, action: str, outcome: dict[str, Any], hint: str | None = None) -> None:
        error, request_id = outcome["Error"], outcome.get("RequestId")
        message = f"TRTC {action} failed: {error['Code']}: {error['Message']}"
        if hint:
            message += f" ({hint})"
        if request_id:
            message += f" [TRTC RequestId {request_id}]"
        super().__init__(message)
        self.action = action
        self.outcome = outcome

    def details(self) -> dict[str, Any]:
        return {"Trtc": self.outcome}


class TrtcNotConfigured(TrtcError):
    """Engine=cloud on a worker without Tencent Cloud API credentials or region."""

    code = "TrtcNotConfigured"


class WorkerLost(RoomcastError):
    """The push's worker went silent (killed, machine lost) once too often."""

    code = "WorkerLost"


class InternalError(RoomcastError):
    """A bug: the message says where to look, the worker log has the traceback."""

    code = "InternalError"


class FieldError(ValueError):
    """A validation rule across fields failed, inside a pydantic model; ``field`` is the one
    to blame (the API answers ``InvalidJob`` naming it). Not a RoomcastError: pydantic
    wraps it, and the API unwraps it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
