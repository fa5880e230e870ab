"""Player commands: what a caller may ask of a running switchable push, one definition from
the API to the player.

``POST /v1/pushes/<id>/<name>`` validates its body into the command's model
(:func:`parse`); the command travels on the push's control channel as
``{"Command": name, ...fields}`` (:func:`to_message`); the worker's hub reads it back
(:func:`from_message`) and hands the value to the pipeline's player, which acts on its type.
The same models describe the request bodies in ``GET /openapi.json``.

An ``Engine=cloud`` push has no player: its worker turns the commands TRTC's
``UpdateStreamIngest`` can do (:data:`CLOUD_COMMANDS`) into that call, and answers the API on
the command's reply key (:attr:`Command.reply_to`), which the message carries as ``ReplyTo``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

#: Source URL schemes when the caller names none (``ROOMCAST_ALLOWED_SCHEMES``' default).
DEFAULT_SCHEMES = frozenset({"http", "https", "rtmp", "rtmps"})


def check_source_url(value: str, info: ValidationInfo) -> str:
    """A source URL: absolute, with a host, in a scheme the service allows (the
    validation context's ``schemes``)."""
    if value != value.strip():
        raise ValueError("must not have leading or trailing whitespace")
    parts = urlsplit(value)
    # None: checked already (the API did, with the service's schemes).
    schemes: frozenset[str] | None = (info.context or {}).get("schemes", DEFAULT_SCHEMES)
    if schemes is not None and parts.scheme.lower() not in schemes:
        allowed = ", ".join(sorted(schemes))
        raise ValueError(f"must be a URL with one of the schemes {allowed}")
    if not parts.hostname:
        raise ValueError("must be an absolute URL with a host")
    return value


#: The caller's own name for a clip, repeated in the clip's events (clip-started…).
ClipIdField = Annotated[
    StrictStr,
    Field(min_length=1, max_length=128, description="Your id for the clip, echoed in its events."),
]


class ClipSource(BaseModel):
    """A clip with its id: ``{"VideoSrc": url, "ClipId": id}`` where a bare URL also does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    VideoSrc: StrictStr
    ClipId: ClipIdField | None = None

    @field_validator("VideoSrc")
    @classmethod
    def _check(cls, value: str, info: ValidationInfo) -> str:
        return check_source_url(value, info)


#: A clip in a list: a URL, or a URL with its id.
ClipItem = ClipSource | StrictStr


def clip_source(item: ClipItem) -> ClipSource:
    """A list item as a :class:`ClipSource` (a bare URL has no id)."""
    return item if isinstance(item, ClipSource) else ClipSource(VideoSrc=item)


def check_clip_items(items: list[ClipItem], info: ValidationInfo) -> list[ClipItem]:
    """Each bare URL of a clip list checked like a VideoSrc (a ClipSource checks its own)."""
    for item in items:
        if isinstance(item, str):
            check_source_url(item, info)
    return items


class Command(BaseModel):
    """A player command: its fields; ``name`` is what the URL and the message call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    # Not a field: the API's body never has it, the control message carries it (ReplyTo).
    _reply_to: str | None = PrivateAttr(None)

    @property
    def reply_to(self) -> str | None:
        """Where the push answers with the command's outcome (Engine=cloud); None: nowhere."""
        return self._reply_to

    def replying_to(self, token: str | None) -> Self:
        """This command, answered on ``token`` (``jobs.keys.reply_key``)."""
        command = self.model_copy()
        command._reply_to = token
        return command

    def urls(self) -> list[tuple[str, str]]:
        """The (field, URL) pairs the push will open (for the address guard)."""
        return []


class Switch(Command):
    """Play another clip, now or when the current one ends."""

    name = "switch"
    VideoSrc: StrictStr
    ClipId: ClipIdField | None = None
    When: Literal["now", "end"] = "now"

    @field_validator("VideoSrc")
    @classmethod
    def _check(cls, value: str, info: ValidationInfo) -> str:
        return check_source_url(value, info)

    def urls(self) -> list[tuple[str, str]]:
        return [("VideoSrc", self.VideoSrc)]


class Queue(Command):
    """Append to, replace or clear the clips waiting after the current one."""

    name = "queue"
    Action: Literal["append", "replace", "clear"] = "append"
    Sources: Annotated[
        list[ClipItem],
        Field(max_length=100, description="URLs, or {VideoSrc, ClipId} objects."),
    ] = []

    @field_validator("Sources")
    @classmethod
    def _check(cls, value: list[ClipItem], info: ValidationInfo) -> list[ClipItem]:
        return check_clip_items(value, info)

    def clips(self) -> list[ClipSource]:
        """The sources, each with its id (if given)."""
        return [clip_source(item) for item in self.Sources]

    def urls(self) -> list[tuple[str, str]]:
        return [("Sources", clip.VideoSrc) for clip in self.clips()]


class Seek(Command):
    """Jump to a position (seconds) in the current clip."""

    name = "seek"
    Position: Annotated[StrictInt | StrictFloat, Field(ge=0)]


class Pause(Command):
    """Hold the picture (with silence) until resume, switch or seek; the publisher stays."""

    name = "pause"


class Resume(Command):
    """Continue a paused clip where it paused."""

    name = "resume"


class Loop(Command):
    """clip: repeat the current clip; last: repeat the last one; all: the whole list."""

    name = "loop"
    Loop: Literal["none", "clip", "last", "all"]


class Volume(Command):
    """Audio volume in percent of the recording (0–200)."""

    name = "volume"
    Volume: Annotated[StrictInt | StrictFloat, Field(ge=0, le=200)]


class Tempo(Command):
    """Playback speed (0.5–2.0), pitch kept; the change is seamless, like a switch."""

    name = "tempo"
    Tempo: Annotated[StrictInt | StrictFloat, Field(ge=0.5, le=2.0)]


#: Every command by its name.
COMMANDS: dict[str, type[Command]] = {
    cls.name: cls for cls in (Switch, Queue, Seek, Pause, Resume, Loop, Volume, Tempo)
}
#: What an ``Engine=cloud`` push takes: what TRTC's UpdateStreamIngest does (StreamUrl,
#: IsPause, Volume, Tempo). TRTC's task has no queue, no position to seek to and no loop to
#: change.
CLOUD_COMMANDS = frozenset({"switch", "pause", "resume", "volume", "tempo"})
#: The speeds TRTC's cloud ingest takes (StartStreamIngest's and UpdateStreamIngest's Tempo);
#: the worker engine takes any speed from 0.5 to 2.0.
TRTC_TEMPOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def cloud_tempo_refusal(value: float) -> str | None:
    """Why ``Engine=cloud`` cannot play at speed ``value``; None when TRTC takes it."""
    if value in TRTC_TEMPOS:
        return None
    steps = ", ".join(f"{step:g}" for step in TRTC_TEMPOS)
    return f"Engine=cloud takes TRTC's Tempo steps only: one of {steps}"


def parse(name: str, body: dict[str, Any], schemes: frozenset[str] = DEFAULT_SCHEMES) -> Command:
    """Validate a request body as command ``name`` (pydantic's ValidationError if wrong;
    KeyError for an unknown name)."""
    return COMMANDS[name].model_validate(body, context={"schemes": schemes})


def to_message(command: Command) -> dict[str, Any]:
    """The control-channel message carrying ``command`` (and its reply key, if any)."""
    reply = {} if command.reply_to is None else {"ReplyTo": command.reply_to}
    return {"Command": command.name, **command.model_dump(), **reply}


def from_message(message: dict[str, Any]) -> Command | None:
    """The command a control-channel message carries; None if it carries none (or one this
    version does not know, or fields it does not accept)."""
    fields = dict(message)
    model = COMMANDS.get(str(fields.pop("Command", "")))
    reply_to = fields.pop("ReplyTo", None)
    if model is None:
        return None
    try:
        command = model.model_validate(fields, context={"schemes": None})
    except ValueError:
        return None
    return command.replying_to(reply_to if isinstance(reply_to, str) else None)


#: Control messages that change a fan-out push's rooms (api/targets.py → worker/hub.py). They
#: carry the TargetId only, never a UserSig: the worker reads the room and its UserSig from
#: the job's record and secrets, where the API wrote them first.
ADD_TARGET = "add-target"
REMOVE_TARGET = "remove-target"


def target_message(change: str, target_id: str) -> dict[str, Any]:
    """The control-channel message adding (:data:`ADD_TARGET`) or removing
    (:data:`REMOVE_TARGET`) target ``target_id``."""
    return {"Command": change, "TargetId": target_id}


def target_change(message: dict[str, Any]) -> tuple[str, str] | None:
    """(change, TargetId) of a target message; None for any other message."""
    change, target_id = message.get("Command"), message.get("TargetId")
    if change in (ADD_TARGET, REMOVE_TARGET) and isinstance(target_id, str) and target_id:
        return str(change), target_id
    return None
