"""A push's record, its secrets, and the answers built from them: one model each.

The same definitions store a job in Redis (:class:`JobRecord`, :class:`JobSecrets`), answer
the status API (:class:`PushStatus`, :class:`PushList`, from the record and its progress),
and describe those answers in ``GET /openapi.json``; tests/e2e/test_openapi.py validates
real answers against them. The answers forbid unknown fields, so a field added to an answer
without being described here fails that test; the progress, which the pipeline grows over
time, allows them.

The record never holds a secret: URLs are stored with their passwords and signature values
masked, and the UserSig, the Redis password and the full URLs wait apart in
:class:`JobSecrets`, deleted when the push ends.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from .errors import FieldError
from .states import State as JobState


def iso(ts: float | None) -> str | None:
    """An epoch time as the API's ISO 8601 UTC string."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def epoch(stamp: str | None) -> float | None:
    """:func:`iso`'s inverse: a record's ISO 8601 time (``…Z``) as epoch seconds."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


class _Answer(BaseModel):
    """Strict: every field of an answer is described."""

    model_config = ConfigDict(extra="forbid")


class PushRoom(_Answer):
    """The room pushed into; ``RtmpRoom`` is the string room the RTMP ingest receives."""

    StrRoomId: str | None = None
    RoomId: int | None = None
    RtmpRoom: str
    Note: str | None = Field(
        None, description="With a numeric RoomId: which string room it was pushed into, and why."
    )


#: The TargetId of a fan-out push's own room (its RoomId/StrRoomId, UserId and UserSig).
MAIN_TARGET = "main"


class PushTarget(_Answer):
    """One room a fan-out push publishes to: the caller's id for it, the room and the user
    publishing there. Its UserSig is a secret, kept in :attr:`JobSecrets.TargetSigs`."""

    TargetId: str
    Room: PushRoom
    UserId: str


class PushError(_Answer):
    """Why a push failed."""

    Code: str = Field(
        description="SourceNotFound, SourceNotMedia, RoomUnreachable, WorkerLost… (jobs/errors.py)."
    )
    Message: str


class JobRecord(BaseModel):
    """What Redis keeps of a push (``roomcast:job:<id>``'s ``doc``), secrets masked.

    Written at submit; runs, stops and the end add their fields (``JobStore.transition``).
    Unknown fields are ignored, so a record written by a newer version still reads.
    """

    model_config = ConfigDict(extra="ignore")

    Mode: Literal["vod", "live"] = "vod"
    SdkAppId: int
    Room: PushRoom
    UserId: str
    VideoSrc: str = Field(description="The source, passwords and signature values masked.")
    Redis: bool = False
    RedisHost: str | None = None
    RedisPort: int | None = None
    RedisTls: bool = False
    MaxDuration: float | None = None
    Switchable: bool = False
    Playlist: list[str] = Field(default_factory=list, description="Masked like VideoSrc.")
    ClipIds: list[str | None] = Field(
        default_factory=list, description="The caller's id of each clip, VideoSrc first."
    )
    ClipEndingSeconds: float | None = None
    StartSeconds: float | None = None
    IdleTimeoutSeconds: int | None = None
    Volume: int = 100
    Tempo: float = 1.0
    RepeatNum: int = 1
    EnableProgress: bool = False
    #: The push's own output profile as asked (api/models.py OutputRequest), if any.
    Output: dict[str, Any] | None = None
    Loop: str = "none"
    CallbackUrl: str | None = Field(None, description="Masked like VideoSrc.")
    Engine: Literal["worker", "cloud"] = "worker"
    CreatedAt: float
    StartedAt: float | None = None
    FinishedAt: float | None = None
    #: The worker running (or that ran) the push, and the run that owns the record now.
    Worker: str | None = None
    RunId: str | None = None
    #: Runs so far: a push whose worker was lost or shut down is handed back.
    Attempts: int = 1
    #: Where a handed-back push continues (seconds into the source).
    ResumeFrom: float | None = None
    Reason: str | None = None
    Error: PushError | None = None
    #: The cause of the stop that ended the push (``jobs.stops.StopCause``).
    StopCause: str | None = None
    #: The outcome of TRTC server API calls (RemoveUser on stop, the cloud ingest's calls).
    Trtc: dict[str, Any] | None = None
    #: A fan-out push (started with Targets): its rooms besides its own (``MAIN_TARGET``),
    #: as added and removed while it runs. None: not a fan-out push.
    Targets: list[PushTarget] | None = None
    #: A fan-out push whose own room (``MAIN_TARGET``) was removed while it ran.
    MainRemoved: bool = False
    #: A fan-out push into more rooms than ``ROOMCAST_FANOUT_SHARD_ROOMS``: the request ids
    #: of its other shards, pushes of their own into the rest of its rooms (jobs/shards.py).
    Shards: list[str] | None = None
    #: A shard: the request id of the push it is a part of, the one its caller knows.
    ShardOf: str | None = None
    #: The WHIP endpoint published to instead of the room's RTMP ingest (its scheme and host),
    #: or ``trtc``: every room through TRTC's WHIP ingest (jobs/rooms.py).
    Whip: str | None = None

    @field_validator("Playlist", "ClipIds", "Targets", "Shards", mode="before")
    @classmethod
    def _empty_list(cls, value: Any) -> Any:
        # Redis's Lua cjson, which merges fields into the record, writes [] back as {}.
        return [] if value == {} else value

    def targets(self) -> list[PushTarget] | None:
        """A fan-out push's rooms now, its own first (unless removed); None: not fan-out."""
        if self.Targets is None:
            return None
        main = PushTarget(TargetId=MAIN_TARGET, Room=self.Room, UserId=self.UserId)
        return ([] if self.MainRemoved else [main]) + self.Targets


class JobSecrets(BaseModel):
    """What a push needs and nobody may see (``roomcast:job:<id>:secrets``)."""

    UserSig: str
    RedisPassword: str | None = None
    VideoSrc: str
    Playlist: list[str] = Field(default_factory=list)
    CallbackUrl: str | None = None
    #: TRTC's room permission ticket (Engine=cloud's StartStreamIngest).
    PrivateMapKey: str | None = None
    #: A fan-out push's UserSig for each of its other rooms, by TargetId.
    TargetSigs: dict[str, str] = Field(default_factory=dict)
    #: The WHIP endpoint the push publishes to (``Whip``), in full, and its bearer token.
    WhipUrl: str | None = None
    WhipToken: str | None = None

    @field_validator("Playlist", mode="before")
    @classmethod
    def _empty_list(cls, value: Any) -> Any:
        # A target added or removed rewrites these secrets through Lua's cjson ([] → {}).
        return [] if value == {} else value

    def values(self) -> tuple[str, ...]:
        """Every secret string, to be masked wherever text is written."""
        found = [
            self.UserSig,
            self.RedisPassword,
            self.VideoSrc,
            *self.Playlist,
            self.CallbackUrl,
            self.PrivateMapKey,
            *self.TargetSigs.values(),
            self.WhipUrl,
            self.WhipToken,
        ]
        return tuple(v for v in found if v)


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
    RtmpFallback: str | None = Field(
        None,
        description="Why FFmpeg's RTMP client publishes this push instead of roomcast's.",
    )
    ProgressSaving: str | None = Field(
        None, description="Redis=true: 'ok', or why saving the progress fails."
    )
    Source: SourceState | None = Field(None, description="Live pushes only.")
    Player: dict[str, Any] | None = Field(
        None,
        description=(
            "Switchable pushes only: Clip {Index, VideoSrc, ClipId}, Queue [{VideoSrc, ClipId}], "
            "Loop, Paused, Volume, Tempo, History."
        ),
    )
    Targets: dict[str, dict[str, Any]] | None = Field(
        None,
        description=(
            "Fan-out pushes only: each room's publish by its TargetId: State (connecting, "
            "waiting, live, behind, reconnecting, failed, removed), Bytes, Drops, "
            "Reconnects, and Error when failed."
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
    Player: dict[str, Any] | None = Field(
        None,
        description=(
            "What the player commands (UpdateStreamIngest) made of the task: Clip {Index, "
            "VideoSrc, ClipId}, Paused, Volume, Tempo."
        ),
    )


class CallbackStatus(_Answer):
    """Where the delivery of a push's events to its ``CallbackUrl`` stands."""

    State: Literal["delivering", "delivered", "retrying", "gave-up"] = Field(
        description=(
            "gave-up: retrying stopped after ROOMCAST_CALLBACK_GIVE_UP_SECONDS of failures; "
            "POST /v1/pushes/{RequestId}/events/replay sends the events again."
        )
    )
    Events: int = Field(description="The push's events so far (the last Seq).")
    Delivered: int = Field(description="The last Seq the receiver acknowledged (2xx).")
    Failures: int = Field(description="Failed attempts in a row.")
    LastError: str | None = Field(description="Why the last attempt failed.")
    NextAttemptAt: str | None = Field(description="When the next attempt is due, ISO 8601 UTC.")


class ShardStatus(_Answer):
    """One shard of a fan-out push split over several (``PushStatus.Shards``)."""

    RequestId: str
    State: str = Field(description="The shard's state; unknown once its record is gone.")
    Worker: str | None = Field(None, description="The worker running (or that ran) it.")
    Rooms: int = Field(description="The rooms it publishes to now.")


class PushStatus(_Answer):
    """One push: ``GET /v1/pushes/{RequestId}``, and the answer of a stop."""

    RequestId: str
    State: JobState
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
    Callbacks: CallbackStatus | None = Field(
        None, description="Pushes with a CallbackUrl: the delivery of their events."
    )
    ClipIds: list[str | None] | None = Field(
        None, description="Pushes given clip ids: the id of each clip, VideoSrc first."
    )
    Targets: list[PushTarget] | None = Field(
        None,
        description=(
            "Fan-out pushes (started with Targets): the rooms the push publishes to now, its "
            "own first (TargetId main) unless removed. Never their UserSigs."
        ),
    )
    Shards: list[ShardStatus] | None = Field(
        None,
        description=(
            "Fan-out pushes into more rooms than ROOMCAST_FANOUT_SHARD_ROOMS: the shards, "
            "this push first, each a push of its own (RequestId <id>.2…) that Celery runs "
            "wherever a worker is free. Targets and Progress.Targets list every shard's rooms."
        ),
    )
    ShardOf: str | None = Field(
        None, description="A shard: the request id of the push it is a part of."
    )
    Whip: str | None = Field(
        None,
        description=(
            "Pushes over WHIP: the endpoint's scheme and host (its path may be a key), or "
            "trtc (every room through TRTC's WHIP ingest)."
        ),
    )

    @classmethod
    def of(
        cls,
        request_id: str,
        state: JobState,
        record: JobRecord,
        progress: dict[str, Any] | None,
        callbacks: CallbackStatus | None = None,
    ) -> PushStatus:
        """The status of a push from its record, its latest progress and its callbacks."""
        extra: dict[str, Any] = {} if callbacks is None else {"Callbacks": callbacks}
        if record.ClipIds:
            extra["ClipIds"] = record.ClipIds
        if (targets := record.targets()) is not None:
            extra["Targets"] = targets
        if record.ShardOf:
            extra["ShardOf"] = record.ShardOf
        if record.Whip:
            extra["Whip"] = record.Whip
        return cls(
            RequestId=request_id,
            State=state,
            Mode=record.Mode,
            SdkAppId=record.SdkAppId,
            Room=record.Room,
            UserId=record.UserId,
            VideoSrc=record.VideoSrc,
            Redis=record.Redis,
            Progress=progress,  # type: ignore[arg-type]
            Reason=record.Reason,
            Error=record.Error,
            Trtc=record.Trtc,
            CreatedAt=iso(record.CreatedAt),
            StartedAt=iso(record.StartedAt),
            FinishedAt=iso(record.FinishedAt),
            Worker=record.Worker,
            Attempts=record.Attempts,
            **extra,
        )

    def answer(self) -> dict[str, Any]:
        """The JSON object the API answers with: every field, and of the room and the
        progress only what they hold."""
        return self.model_dump(mode="json", exclude_unset=True)


#: How many live records are in each state (one field per state, so the two never differ).
Stats = create_model(  # type: ignore[call-overload]
    "Stats",
    __config__=ConfigDict(extra="forbid"),
    **{state.value: (int, ...) for state in JobState},
)


class ListQuery(BaseModel):
    """``GET /v1/pushes``'s query: which pushes to list, newest first."""

    # Query strings carry text: pydantic reads "20" as 20 for an int field. An unknown
    # parameter (a misspelt "state") is refused: ignored, it would list every push.
    model_config = ConfigDict(extra="forbid")

    State: JobState | None = Field(None, description="Only this state.")
    Limit: int = Field(50, ge=1, le=1000, description="At most this many pushes.")
    SdkAppId: int = Field(0, ge=0, le=4_294_967_295, description="Required with UserId or Room.")
    UserId: str | None = Field(None, description="Only this user's pushes.")
    Room: str | None = Field(None, description="Only pushes into this RTMP room (RtmpRoom).")
    Since: float | None = Field(None, description="Created at or after (Unix seconds).")
    Until: float | None = Field(None, description="Created at or before (Unix seconds).")

    @model_validator(mode="after")
    def _app_with_user_or_room(self) -> ListQuery:
        if (self.UserId is not None or self.Room is not None) and not self.SdkAppId:
            raise FieldError("SdkAppId", "SdkAppId is required with UserId or Room")
        return self

    @property
    def user(self) -> tuple[int, str] | None:
        """(SdkAppId, UserId) when filtering by user."""
        return None if self.UserId is None else (self.SdkAppId, self.UserId)

    @property
    def room(self) -> tuple[int, str] | None:
        """(SdkAppId, RTMP room) when filtering by room."""
        return None if self.Room is None else (self.SdkAppId, self.Room)


class PushList(_Answer):
    """``GET /v1/pushes``: pushes newest first, and the count in each state."""

    Pushes: list[PushStatus]
    Stats: Stats  # type: ignore[valid-type]
