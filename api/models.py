"""The request body of a push: the template's fields, exactly as the template names them.

One pydantic model validates the request, produces the field-level 400 and documents the
API. Limits follow TRTC (../shared/TRTC.md): RoomId is a uint32 ≥ 1; a StrRoomId pushed
over RTMP is at most 64 letters, digits and underscores; a UserId at most 32 letters,
digits, underscores and hyphens. As the template did, SdkAppId, RoomId, RedisPort and Redis
may come as JSON strings ("1400000000", "true").
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from jobs.commands import (
    ClipIdField,
    ClipItem,
    ClipSource,
    check_clip_items,
    check_source_url,
    clip_source,
    cloud_tempo_refusal,
)
from jobs.errors import FieldError
from jobs.records import MAIN_TARGET
from jobs.rooms import rtmp_room
from jobs.shards import MAX_ROOMS

RTMP_ID_PATTERN = r"^[A-Za-z0-9_]+$"
UINT32_MAX = 4_294_967_295
#: TRTC's UserId: letters, digits, underscore and hyphen.
USER_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
#: StartStreamIngest's IdleTimeout: 0 to 600 s (the SDK's models.py).
CLOUD_IDLE_MAX = 600
#: A fan-out target's id: the caller's name for one room of the push.
TARGET_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: The most rooms a fan-out push is started with, besides its own (split into shards past
#: ROOMCAST_FANOUT_SHARD_ROOMS: jobs/shards.py).
MAX_TARGETS = MAX_ROOMS - 1


def _int_from_text(value: Any) -> Any:
    # Web forms and API Gateway mappings send numbers as JSON strings, and the template took
    # them: digits only, nothing a number could be mistaken for.
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value):
        return int(value)
    return value


def _bool_from_text(value: Any) -> Any:
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    return value


def _text_int(low: int, high: int) -> tuple[Any, ...]:
    """What makes a strict integer field also take its digits as a JSON string."""
    return (
        Field(ge=low, le=high),
        BeforeValidator(_int_from_text),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": low, "maximum": high},
                    {"type": "string", "pattern": "^[0-9]{1,10}$"},
                ]
            }
        ),
    )


#: Integers that may come as their digits in a JSON string ("1400000000").
AppId = Annotated[StrictInt, *_text_int(1, UINT32_MAX)]
RoomNumber = Annotated[StrictInt, *_text_int(1, UINT32_MAX)]
Port = Annotated[StrictInt, *_text_int(1, 65535)]
#: A boolean, or "true"/"false".
TextBool = Annotated[
    StrictBool,
    BeforeValidator(_bool_from_text),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}]}),
]


def check_callback_url(value: str | None) -> str | None:
    """A ``CallbackUrl``: absolute http(s), with a host."""
    if value is not None and urlsplit(value).scheme.lower() not in ("http", "https"):
        raise ValueError("must be an http(s) URL")
    if value is not None and not urlsplit(value).hostname:
        raise ValueError("must be an absolute URL with a host")
    return value


def _no_fragment(value: str) -> str:
    if "#" in value:
        raise ValueError("must have no fragment (#…): the endpoint never sees one")
    return value


class WhipRequest(BaseModel):
    """A WHIP endpoint to publish to instead of TRTC's RTMP ingest (docs/api.md, WHIP)."""

    model_config = ConfigDict(extra="forbid")

    Url: Annotated[
        StrictStr,
        Field(
            max_length=4096,
            description="The endpoint, http(s): the push POSTs its SDP offer here.",
        ),
        AfterValidator(check_callback_url),
        AfterValidator(_no_fragment),
    ]
    Token: Annotated[StrictStr, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="Sent as Authorization: Bearer <Token> (a secret: never shown)."
    )


class OutputRequest(BaseModel):
    """A push's own output profile: ceilings on what reaches the room. A source within them
    is remuxed as it is; a stream above any of them is re-encoded to fit."""

    model_config = ConfigDict(extra="forbid")

    Width: Annotated[StrictInt, Field(ge=16, le=1920, multiple_of=2)] | None = Field(
        None, description="Widest picture (even, ≤ 1920); wider is scaled down, never up."
    )
    Height: Annotated[StrictInt, Field(ge=16, le=1080, multiple_of=2)] | None = Field(
        None, description="Tallest picture (even, ≤ 1080); taller is scaled down."
    )
    Fps: Annotated[float, Field(ge=1, le=60)] | None = Field(
        None, description="Most pictures a second (1–60); a faster source drops pictures."
    )
    VideoBitrate: Annotated[StrictInt, Field(ge=100_000, le=10_000_000)] | None = Field(
        None,
        description=(
            "bit/s of re-encoded video (100 000 – 10 000 000); a source video announcing "
            "over 1.2× this is re-encoded."
        ),
    )
    AudioBitrate: Annotated[StrictInt, Field(ge=32_000, le=320_000)] | None = Field(
        None,
        description="bit/s of re-encoded sound (32 000 – 320 000); over 1.2× is re-encoded.",
    )
    GopSeconds: Annotated[float, Field(ge=0.5, le=4)] | None = Field(
        None,
        description=(
            "Seconds between keyframes of re-encoded video (0.5–4; TRTC recommends 1–2); a "
            "source whose keyframes are further apart is re-encoded."
        ),
    )


def str_room_id(description: str) -> Any:
    """A string room id's rules (TRTC's RTMP room names), described for its place."""
    return Field(min_length=1, max_length=64, pattern=RTMP_ID_PATTERN, description=description)


def user_id(description: str) -> Any:
    """A UserId's rules, described for its place."""
    return Field(min_length=1, max_length=32, pattern=USER_ID_PATTERN, description=description)


def user_sig(description: str) -> Any:
    """A UserSig's rules (a secret), described for its place."""
    return Field(min_length=1, max_length=4096, description=description)


class TargetRequest(BaseModel):
    """One more room for a fan-out push: an item of ``Targets``, and the body of
    ``POST /v1/pushes/{RequestId}/targets``. Room, UserId and UserSig follow the push's own
    rules."""

    model_config = ConfigDict(extra="forbid")

    TargetId: Annotated[
        StrictStr | None,
        Field(
            pattern=TARGET_ID_PATTERN,
            description=(
                "Your id for this room, in the status, its events and DELETE …/targets/{id}: "
                "1–64 letters, digits, _ and -. Default: t1, t2… by position. main is the "
                "push's own room."
            ),
        ),
    ] = None
    RoomId: Annotated[
        RoomNumber | None,
        Field(description="Numeric room id, pushed as the string room of its digits."),
    ] = None
    StrRoomId: Annotated[
        StrictStr | None,
        str_room_id("String room id: letters, digits, underscore. Give one of the two."),
    ] = None
    UserId: Annotated[
        StrictStr,
        user_id("The user publishing into this room: letters, digits, _ and -."),
    ]
    UserSig: Annotated[
        StrictStr | None,
        user_sig(
            "This user's signature (secret); generated when the service holds the SdkAppId's key."
        ),
    ] = None

    @model_validator(mode="after")
    def _check_room(self) -> TargetRequest:
        if self.TargetId == MAIN_TARGET:
            raise FieldError(
                "TargetId", f"TargetId {MAIN_TARGET} is the push's own room: give another"
            )
        if self.RoomId is None and self.StrRoomId is None:
            raise FieldError("RoomId", "one of RoomId or StrRoomId is required")
        if self.RoomId is not None and self.StrRoomId is not None:
            raise FieldError("StrRoomId", "give one of RoomId or StrRoomId, not both")
        return self

    @property
    def rtmp_room(self) -> str:
        """The string room the RTMP ingest receives."""
        return rtmp_room(self.RoomId, self.StrRoomId)


class PushRequest(BaseModel):
    """``POST /`` and ``POST /v1/pushes``: start an asynchronous push into a room."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    VideoSrc: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=4096,
            description=(
                "The source: an http(s) media file or HLS playlist (vod), an rtmp(s) stream (live)."
            ),
        ),
    ]
    SdkAppId: Annotated[AppId, Field(description="TRTC application id.")]
    RoomId: Annotated[
        RoomNumber | None,
        Field(
            description=(
                "Numeric room id; pushed over RTMP as the string room of its digits. Wins over "
                "StrRoomId."
            ),
        ),
    ] = None
    StrRoomId: Annotated[
        StrictStr | None,
        str_room_id("String room id: letters, digits, underscore (TRTC's RTMP rule)."),
    ] = None
    Mode: Literal["vod", "live"] = Field("vod", description="vod: a file; live: a live stream.")
    UserId: Annotated[
        StrictStr, user_id("The pushing user's id in the room: letters, digits, _ and -.")
    ]
    # Optional here only because roomcast can generate it when the SdkAppId's secret key is
    # configured; the view requires it otherwise (api/views.py user_sig_for).
    UserSig: Annotated[StrictStr | None, user_sig("The pushing user's signature (secret).")] = None
    Redis: TextBool = Field(False, description="Save progress to Redis and resume from it.")
    RedisHost: Annotated[StrictStr | None, Field(min_length=1, max_length=253)] = None
    RedisPort: Port | None = None
    RedisPassword: Annotated[StrictStr | None, Field(max_length=512)] = None
    RedisTls: StrictBool = Field(
        False,
        description=(
            "roomcast extension: connect to RedisHost over TLS (certificate and host name "
            "verified)."
        ),
    )
    MaxDuration: Annotated[
        StrictInt | StrictFloat | None,
        Field(
            gt=0,
            le=7 * 24 * 3600,
            description=(
                "Execution limit in seconds of output; the service default applies otherwise."
            ),
        ),
    ] = None

    StartSeconds: Annotated[
        StrictInt | StrictFloat | None,
        Field(
            ge=0,
            le=7 * 24 * 3600,
            description=(
                "roomcast extension: start this many seconds into the source (vod; TRTC's "
                "SeekSecond with Engine=cloud). With Redis=true a saved position wins."
            ),
        ),
    ] = None
    IdleTimeoutSeconds: Annotated[
        StrictInt | None,
        Field(
            ge=1,
            le=86400,
            description=(
                "roomcast extension, Mode=live: end the push after this many seconds without "
                "media from the source (default ROOMCAST_LIVE_GRACE_SECONDS; TRTC's "
                "IdleTimeout with Engine=cloud)."
            ),
        ),
    ] = None
    Volume: Annotated[
        StrictInt,
        Field(
            ge=0,
            le=200,
            description=(
                "roomcast extension: the initial volume, percent of the recording (0–200; "
                "TRTC's Volume with Engine=cloud). On Engine=worker the push plays through "
                "the player (as a switchable one: commands work) and re-encodes its sound."
            ),
        ),
    ] = 100
    Tempo: Annotated[
        StrictInt | StrictFloat,
        Field(
            ge=0.5,
            le=2.0,
            description=(
                "roomcast extension: playback speed, 0.5–2.0, pitch kept; TRTC's Tempo with "
                "Engine=cloud. On Engine=worker the push plays through the player (commands "
                "work) and re-encodes its picture and sound."
            ),
        ),
    ] = 1.0
    RepeatNum: Annotated[
        StrictInt,
        Field(
            ge=-1,
            le=1000,
            description=(
                "roomcast extension, Mode=vod: how many times the source plays, 1–1000, or -1 "
                "for ever (TRTC's RepeatNum, bounded by MaxDuration). Not with Loop or "
                "Playlist. On Engine=worker the push plays through the player, seamlessly."
            ),
        ),
    ] = 1
    Output: OutputRequest | None = Field(
        None,
        description=(
            "roomcast extension, Engine=worker: this push's output profile (Width, Height, "
            "Fps, VideoBitrate, AudioBitrate, GopSeconds), within the service's own limits."
        ),
    )
    EnableProgress: StrictBool = Field(
        False,
        description=(
            "roomcast extension: the position in the clip (with Duration and the caller's "
            "ClipId) carried in the video as SEI once a second, payload type 242, which "
            'TRTC\'s SDKs deliver to onRecvSEIMsg (docs/api.md, "Progress for viewers"). '
            "Engine=cloud: TRTC's EnableProgress."
        ),
    )
    PrivateMapKey: Annotated[
        StrictStr | None,
        Field(
            min_length=1,
            max_length=4096,
            description=(
                "roomcast extension, Engine=cloud: TRTC's room permission ticket (advanced "
                "permission control), passed to StartStreamIngest. Secret, like UserSig."
            ),
        ),
    ] = None
    Playlist: Annotated[
        list[ClipItem] | None,
        Field(
            max_length=100,
            description=(
                "Clips played after VideoSrc, in order (makes the push switchable): URLs, or "
                "{VideoSrc, ClipId} objects."
            ),
        ),
    ] = None
    ClipId: Annotated[
        ClipIdField | None,
        Field(description="Your id for VideoSrc, echoed in its clip events (makes it switchable)."),
    ] = None
    ClipEndingSeconds: Annotated[
        StrictInt | StrictFloat | None,
        Field(
            ge=0,
            le=600,
            description=(
                "Seconds before each clip's end that its clip-ending event fires (0: never); "
                "the service default (3) otherwise."
            ),
        ),
    ] = None
    Loop: Literal["none", "last", "all"] = Field(
        "none", description="At the end of the clips: stop, repeat the last, or start over."
    )
    Switchable: StrictBool = Field(
        False,
        description=(
            "Accept player commands (switch, queue, seek, pause, loop, volume, tempo); every "
            "clip is then re-encoded to one format. Implied by Playlist or Loop."
        ),
    )

    Targets: Annotated[
        list[TargetRequest] | None,
        Field(
            max_length=MAX_TARGETS,
            description=(
                "roomcast extension, Engine=worker: more rooms to publish the same source "
                "into (fan-out), each {TargetId, RoomId | StrRoomId, UserId, UserSig}; the "
                "push's own room is target main. The source is read once. Give [] to start "
                "with the push's own room alone and add rooms while it runs "
                "(POST /v1/pushes/{RequestId}/targets). Not with Redis=true."
            ),
        ),
    ] = None

    Replace: StrictBool = Field(
        False,
        description=(
            "roomcast extension: when this UserId already publishes into this room (a queued "
            "or running push), stop that push and start this one instead of answering 409."
        ),
    )

    Engine: Literal["worker", "cloud"] = Field(
        "worker",
        description=(
            "roomcast extension: who pushes the media. worker: roomcast's own workers, over "
            "RTMP; cloud: TRTC's cloud ingest (StartStreamIngest), followed and stopped by "
            "roomcast, which takes switch, pause, resume, volume and tempo "
            "(UpdateStreamIngest). cloud needs Tencent Cloud API credentials on the service, "
            "and takes no Playlist, Switchable or Redis."
        ),
    )

    CallbackUrl: Annotated[
        StrictStr | None,
        Field(
            max_length=4096,
            description="http(s) URL that receives every event of the push, signed, in order.",
        ),
        AfterValidator(check_callback_url),
    ] = None

    Whip: WhipRequest | Literal["trtc"] | None = Field(
        None,
        description=(
            "roomcast extension, Engine=worker: publish over WebRTC (sub-second delay) "
            'instead of RTMP; H.264 constrained baseline and Opus. "trtc": into the room '
            "(and every room of Targets) through TRTC's WHIP ingest, as each room's UserId "
            "with its UserSig; {Url, Token}: to that WHIP endpoint (not with Targets)."
        ),
    )

    @field_validator("VideoSrc")
    @classmethod
    def _check_source(cls, value: str, info: ValidationInfo) -> str:
        return check_source_url(value, info)

    @field_validator("RepeatNum")
    @classmethod
    def _check_repeat(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (for ever) or 1 to 1000")
        return value

    @field_validator("Playlist")
    @classmethod
    def _check_playlist(
        cls, value: list[ClipItem] | None, info: ValidationInfo
    ) -> list[ClipItem] | None:
        return None if value is None else check_clip_items(value, info)

    @property
    def switchable(self) -> bool:
        """Whether the push takes player commands (and reports clip events)."""
        return (
            self.Switchable
            or bool(self.Playlist)
            or self.Loop != "none"
            or self.ClipId is not None
            or self.ClipEndingSeconds is not None
            # roomcast's player repeats a clip and sets its volume and speed; TRTC's ingest
            # does all three.
            or (
                self.Engine == "worker"
                and (self.Volume != 100 or self.Tempo != 1 or self.RepeatNum != 1)
            )
        )

    def target_ids(self) -> list[str]:
        """Each target's TargetId: the one given, else t1, t2… by its position."""
        return [t.TargetId or f"t{i}" for i, t in enumerate(self.Targets or [], 1)]

    def playlist(self) -> list[ClipSource]:
        """The clips after VideoSrc, each with its id (if given)."""
        return [clip_source(item) for item in self.Playlist or []]

    def clip_ids(self) -> list[str | None]:
        """The id of each clip (VideoSrc first); empty when no clip has one."""
        ids = [self.ClipId, *(clip.ClipId for clip in self.playlist())]
        return ids if any(ids) else []

    @model_validator(mode="after")
    def _check_room_and_redis(self) -> PushRequest:
        if self.Engine == "cloud":
            # TRTC's cloud ingest plays one StreamUrl (repeated at most, switched, paused),
            # keeps no queue of clips and reports no position to resume from.
            for name in ("Playlist", "Switchable", "Redis"):
                if getattr(self, name):
                    raise FieldError(
                        name,
                        f"{name} needs Engine=worker: TRTC's cloud ingest plays one VideoSrc "
                        "(switch, pause, resume, volume and tempo work without Switchable), "
                        "keeps no queue of clips and reports no position",
                    )
            if self.IdleTimeoutSeconds is not None and self.IdleTimeoutSeconds > CLOUD_IDLE_MAX:
                raise FieldError(
                    "IdleTimeoutSeconds",
                    f"Engine=cloud takes at most {CLOUD_IDLE_MAX} s (TRTC's IdleTimeout)",
                )
            if (refusal := cloud_tempo_refusal(self.Tempo)) is not None:
                raise FieldError("Tempo", refusal)
            if self.Output is not None:
                raise FieldError(
                    "Output",
                    "Output needs Engine=worker: TRTC's cloud ingest takes no output profile "
                    "(its VideoEncodeParams are deprecated)",
                )
        elif self.PrivateMapKey is not None:
            # TRTC documents its RTMP push URL with sdkappid, userid and usersig only.
            raise FieldError(
                "PrivateMapKey",
                "PrivateMapKey is not supported with Engine=worker: TRTC documents no way to "
                "give it to its RTMP ingest; it is passed with Engine=cloud",
            )
        if self.Whip is not None and self.Engine == "cloud":
            raise FieldError("Whip", "Whip needs Engine=worker: TRTC's cloud ingest pulls")
        if isinstance(self.Whip, WhipRequest) and self.Targets is not None:
            raise FieldError(
                "Whip",
                'a WHIP endpoint is one room: with Targets, give Whip "trtc" (every room '
                "through TRTC's WHIP ingest) or publish over RTMP",
            )
        if self.RepeatNum != 1 and self.Loop != "none":
            raise FieldError("RepeatNum", "RepeatNum and Loop both repeat the source: give one")
        if self.RepeatNum != 1 and self.Mode == "live":
            raise FieldError("RepeatNum", "RepeatNum needs Mode=vod: a live source plays once")
        if self.Tempo != 1 and self.Mode == "live":
            raise FieldError("Tempo", "Tempo needs Mode=vod: a live source plays at its own pace")
        if self.Mode == "live" and self.StartSeconds:
            raise FieldError(
                "StartSeconds", "StartSeconds needs Mode=vod: a live source starts now"
            )
        if self.Mode != "live" and self.IdleTimeoutSeconds is not None:
            raise FieldError("IdleTimeoutSeconds", "IdleTimeoutSeconds is for Mode=live sources")
        if self.Mode == "live" and self.switchable:
            raise FieldError("Mode", "Playlist, Loop, Switchable and clip ids need Mode=vod")
        if self.Redis and self.switchable:
            raise FieldError(
                "Redis",
                "resume (Redis=true) is not supported for switchable pushes (Switchable, "
                "Playlist, Loop, clip ids, and Volume, Tempo or RepeatNum on Engine=worker)",
            )
        if self.RepeatNum != 1 and self.Playlist:
            raise FieldError(
                "RepeatNum", "RepeatNum repeats VideoSrc alone: a Playlist repeats with Loop=all"
            )
        if self.RoomId is None and self.StrRoomId is None:
            raise FieldError("RoomId", "one of RoomId or StrRoomId is required")
        if not self.Redis:
            for name in ("RedisHost", "RedisPort", "RedisPassword"):
                if getattr(self, name) is not None:
                    raise FieldError(name, f"{name} is only used with Redis=true")
            # RedisTls=false is the default spelled out: harmless, so only true is refused.
            if self.RedisTls:
                raise FieldError("RedisTls", "RedisTls is only used with Redis=true")
        elif (
            self.RedisPort is not None or self.RedisPassword is not None
        ) and self.RedisHost is None:
            raise FieldError("RedisHost", "RedisHost is required with RedisPort/RedisPassword")
        elif self.RedisTls and self.RedisHost is None:
            # The service's own Redis takes its TLS from ROOMCAST_REDIS_URL (rediss://).
            raise FieldError("RedisTls", "RedisTls is only used with RedisHost")
        self._check_targets()
        return self

    def _check_targets(self) -> None:
        """A fan-out push: on roomcast's workers, each target's id once and
        each (room, UserId) once, the push's own (target main) included."""
        if self.Targets is None:
            return
        if self.Engine == "cloud":
            raise FieldError(
                "Targets",
                "Targets needs Engine=worker: TRTC's cloud ingest publishes into one room",
            )
        ids = {MAIN_TARGET}
        publishers = {(rtmp_room(self.RoomId, self.StrRoomId), self.UserId): MAIN_TARGET}
        for i, (target_id, target) in enumerate(zip(self.target_ids(), self.Targets, strict=True)):
            if target_id in ids:
                given = "" if target.TargetId else " (its default, from its position)"
                raise FieldError(
                    "Targets", f"Targets[{i}].TargetId: {target_id!r}{given} is used twice"
                )
            ids.add(target_id)
            publisher = (target.rtmp_room, target.UserId)
            if (other := publishers.get(publisher)) is not None:
                raise FieldError(
                    "Targets",
                    f"Targets[{i}].UserId: target {other!r} already publishes as "
                    f"{target.UserId!r} into room {target.rtmp_room!r}: TRTC lets one user "
                    "publish once per room",
                )
            publishers[publisher] = target_id


#: A rendition's picture size: even, within what any room takes.
EvenSide = Annotated[StrictInt, Field(ge=16, le=4096, multiple_of=2)]


class PrepareRequest(BaseModel):
    """``POST /v1/renditions``: encode clips once, ahead of class, so that switchable pushes
    of them remux instead of re-encoding (docs/renditions.md)."""

    model_config = ConfigDict(extra="forbid")

    SdkAppId: Annotated[AppId, Field(description="TRTC application id the clips are for.")]
    Clips: Annotated[
        list[Annotated[StrictStr, Field(min_length=1, max_length=4096)]],
        Field(
            min_length=1,
            max_length=100,
            description=(
                "http(s) URLs of media files. The renditions are in the format of a push that "
                "starts with the first clip, unless Width, Height and Fps say otherwise."
            ),
        ),
    ]
    Width: EvenSide | None = Field(None, description="Picture width (with Height and Fps).")
    Height: EvenSide | None = Field(None, description="Picture height (with Width and Fps).")
    Fps: Annotated[float, Field(gt=0, le=60)] | None = Field(
        None, description="Pictures a second (with Width and Height)."
    )
    CallbackUrl: Annotated[
        StrictStr | None,
        Field(
            max_length=4096,
            description=(
                "http(s) URL that receives every event of the preparation (clip-ready, "
                "clip-failed, then succeeded, failed or stopped), signed, in order."
            ),
        ),
        AfterValidator(check_callback_url),
    ] = None

    @field_validator("Clips")
    @classmethod
    def _check_clips(cls, value: list[str]) -> list[str]:
        for url in value:
            if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError("each clip must be an absolute http(s) URL of a media file")
        return value

    @model_validator(mode="after")
    def _all_or_none(self) -> PrepareRequest:
        given = {"Width": self.Width, "Height": self.Height, "Fps": self.Fps}
        missing = [name for name, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise FieldError(
                missing[0], "Width, Height and Fps go together: give all three or none"
            )
        return self

    def asked_format(self) -> dict[str, Any] | None:
        """The format named by the request (None: the first clip's)."""
        if self.Width is None:
            return None
        return {"Width": self.Width, "Height": self.Height, "Fps": self.Fps}
