"""The errors roomcast reports, one tree for the whole service.

Every error carries a stable ``code`` (shown to API clients in ``Error.Code``) and a
message a user can act on. The API maps them to HTTP answers in one place
(``api/errors.py``); the worker maps them to a job's ``Error``.

::

    RoomcastError
    ├── InvalidJob                 the request itself is wrong (HTTP 400)
    ├── SourceError                the VideoSrc cannot be pushed
    │   ├── SourceNotFound         404 / no such file
    │   ├── SourceUnreachable      refused, timed out, DNS
    │   ├── SourceNotMedia         not a container FFmpeg can read, or empty
    │   ├── SourceHasNoMedia       readable, but no decodable audio or video stream
    │   └── SourceEndedEarly       truncated in the middle
    ├── RoomError                  the room's ingest
    │   ├── RoomUnreachable        could not connect to the RTMP ingest
    │   └── RoomDisconnected       the connection broke during the push
    └── ProgressStoreError         the Redis named for progress cannot be used
"""

from __future__ import annotations


class RoomcastError(Exception):
    """Base of every error roomcast raises on purpose."""

    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The error as the API's ``{"Code", "Message"}`` object."""
        return {"Code": self.code, "Message": self.message}


class InvalidJob(RoomcastError):
    """A job field is missing or wrong; ``field`` names it."""

    code = "InvalidParameter"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
