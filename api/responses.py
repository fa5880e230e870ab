"""The shapes the API answers with, as pydantic models: the OpenAPI document's response schemas.

The answers themselves are built elsewhere (``jobs.store.Job.as_status`` writes the status
object, the views the rest); these models describe them for ``GET /openapi.json``. They stay
true because tests/e2e/test_openapi.py validates real answers against them, and the top-level
models forbid unknown fields: a field added to an answer without being described here fails
that test. Nested objects that the pipeline grows over time (``Progress``) allow extra fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from jobs.store import State as PushState


class _Answer(BaseModel):
    """Strict: every field of the answer is described."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Answer):
    """What went wrong."""

    Code: str = Field(description="Machine-readable code, e.g. InvalidParameter, NotFound.")
    Message: str = Field(description="What went wrong, for a person.")
    Field_: str | None = Field(
        None, alias="Field", description="The request field to blame, when one is."
    )
    RequestId: str | None = Field(
        None, description="PublisherBusy: the push that already publishes as this user."
    )
    State: str | None = Field(None, description="AlreadyFinished: the state the push ended in.")


class ErrorAnswer(_Answer):
    """Every error answer: ``{"Error": {"Code", "Message"[, "Field"]}}``."""

    Error: ErrorDetail


class Accepted(_Answer):
    """A push was recorded and queued (202); the template's answer."""

    RequestId: str = Field(description="The push's id (also in X-Request-Id and x-scf-reqid).")
    Message: Literal["Async run task submitted"]


class PushRoom(_Answer):
    """The room pushed into; ``RtmpRoom`` is the string room the RTMP ingest receives."""

    StrRoomId: str | None = None
    RoomId: int | None = None
    RtmpRoom: str
    Note: str | None = Field(
        None, description="With a numeric RoomId: which string room it was pushed into, and why."
    )


class PushError(_Answer):
    """Why a push failed."""

    Code: str = Field(
        description="SourceNotFound, SourceNotMedia, RoomUnreachable, WorkerLost… (jobs/errors.py)."
    )
    Message: str


class StreamDecision(BaseModel):
    """What is done with one source stream, and why."""

    Type: str = Field(description="video or audio.")
    Codec: str
    Action: str = Field(description="remux (copied) or transcode (re-encoded).")
    Reason: str


class SourceState(BaseModel):
    """A live source's connection."""

    State: str = Field(description="connected, reconnecting or ended.")
    Reconnects: int


class PushProgress(BaseModel):
    """The latest snapshot a running push reported (about once a second)."""

    # The pipeline adds fields over time; a new one must not make the status invalid.
    model_config = ConfigDict(extra="allow")

    Position: float = Field(description="Seconds into the source.")
    OutputTime: float = Field(description="Seconds sent to the room (differs after a resume).")
    Duration: float | None = Field(description="The source's length; null for live.")
    Frames: int = Field(description="Video frames sent.")
    Packets: int
    Bytes: int = Field(description="Bytes sent to the room.")
    Bitrate: int = Field(description="Output bit rate, bit/s.")
    Lag: float = Field(description="How late the pacer runs behind the wall clock, seconds.")
    Streams: list[StreamDecision]
    RtmpRoom: str | None = None
    RoomReconnects: int | None = None
    ProgressSaving: str | None = Field(
        None, description="Redis=true: 'ok', or why saving the progress fails."
    )
    Source: SourceState | None = Field(None, description="Live pushes only.")
    Player: dict[str, Any] | None = Field(
        None,
        description=(
            "Switchable pushes only: Clip {Index, VideoSrc}, Queue, Loop, Paused, Volume, History."
        ),
    )


class CloudTask(BaseModel):
    """Engine=cloud: TRTC's ingest task, as DescribeStreamIngest last reported it."""

    model_config = ConfigDict(extra="allow")

    TaskId: str | None = Field(description="TRTC's TaskId (StartStreamIngest).")
    Status: str | None = Field(description="InProgress, or NotExist once TRTC ended the task.")
    StartedAt: str | None = Field(description="ISO 8601 UTC.")
    CheckedAt: str | None = Field(description="When TRTC was last asked, ISO 8601 UTC.")
    Error: PushError | None = Field(
        None, description="Why the last status query failed (retried at the next poll)."
    )


class CloudProgress(BaseModel):
    """Engine=cloud: TRTC pushes, so there is no position or byte count, only the task."""

    model_config = ConfigDict(extra="allow")

    Elapsed: float = Field(description="Seconds since the task started.")
    RtmpRoom: str | None = None
    Cloud: CloudTask


class PushStatus(_Answer):
    """One push: ``GET /v1/pushes/{RequestId}``, and the answer of a stop."""

    RequestId: str
    State: PushState
    Mode: Literal["vod", "live"]
    SdkAppId: int
    Room: PushRoom
    UserId: str
    VideoSrc: str = Field(description="The source, passwords and signature values masked.")
    Redis: bool
    Progress: PushProgress | CloudProgress | None = Field(
        description="null until the push first reports."
    )
    Reason: str | None = Field(description="Why the push ended.")
    Error: PushError | None = Field(description="Why the push failed.")
    Trtc: dict[str, Any] | None = Field(
        description="The outcome of TRTC server API calls, e.g. RemoveUser on stop."
    )
    CreatedAt: str | None = Field(description="ISO 8601 UTC.")
    StartedAt: str | None
    FinishedAt: str | None
    Worker: str | None = Field(None, description="The worker running (or that ran) the push.")
    Attempts: int | None = Field(
        None, description="Runs so far: a push whose worker was lost is handed back and rerun."
    )


#: How many live records are in each state (one field per state, so the two never differ).
Stats = create_model(  # type: ignore[call-overload]
    "Stats",
    __config__=ConfigDict(extra="forbid"),
    **{state.value: (int, ...) for state in PushState},
)


class PushList(_Answer):
    """``GET /v1/pushes``: pushes newest first, and the count in each state."""

    Pushes: list[PushStatus]
    Stats: Stats  # type: ignore[valid-type]


class CommandSent(_Answer):
    """A player command reached the running push (202)."""

    RequestId: str
    Command: str
    Message: Literal["command sent"]


class Health(_Answer):
    """The API is up and Redis answers."""

    Status: Literal["ok"]
