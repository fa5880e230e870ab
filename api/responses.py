"""The API's own answers, as pydantic models: errors, the submit's 202, a command's 202,
health. The status and list answers are jobs/records.py's (``PushStatus``, ``PushList``),
which build them; all of them are the OpenAPI document's response schemas, and
tests/e2e/test_openapi.py validates real answers against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from jobs.records import PushList, PushStatus


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
    RetryAfter: int | None = Field(
        None, description="QuotaExceeded: seconds to wait (also the Retry-After header)."
    )
    Trtc: dict[str, Any] | None = Field(
        None,
        description=(
            "TrtcApiError: TRTC's answer, {Result, Error: {Code, Message}, RequestId}, as "
            "kept in the push's Trtc.Cloud."
        ),
    )


class ErrorAnswer(_Answer):
    """Every error answer: ``{"Error": {"Code", "Message"[, "Field"]}}``."""

    Error: ErrorDetail


class Accepted(_Answer):
    """A push was recorded and queued (202); the template's answer."""

    RequestId: str = Field(description="The push's id (also in X-Request-Id and x-scf-reqid).")
    Message: Literal["Async run task submitted"]


class PrepareAccepted(_Answer):
    """Clips were recorded for preparation and queued (202)."""

    RequestId: str = Field(description="The preparation's id (GET /v1/renditions/<id>).")
    Message: Literal["Renditions are being prepared"]


class CommandSent(_Answer):
    """A player command reached the running push (202)."""

    RequestId: str
    Command: str
    Message: Literal["command sent"]


class CommandApplied(_Answer):
    """An Engine=cloud push's command, done by TRTC (UpdateStreamIngest) (200)."""

    RequestId: str
    Command: str
    Message: Literal["applied by TRTC's UpdateStreamIngest"]
    Trtc: dict[str, Any] = Field(
        description="TRTC's answer, {Result, Command, RequestId}, as kept in Trtc.Cloud.Update."
    )


class TargetSent(_Answer):
    """A room was added to or removed from a running fan-out push (202)."""

    RequestId: str
    TargetId: str = Field(description="The room's id: the one given, or t1, t2… by default.")


class Replayed(_Answer):
    """A push's events are being sent to its callback URL again (202)."""

    RequestId: str
    From: int = Field(description="The first Seq sent again.")
    Events: int = Field(description="The push's last Seq: the events sent are From..Events.")


class Health(_Answer):
    """The API is up and Redis answers."""

    Status: Literal["ok"]


__all__ = [
    "Accepted",
    "CommandApplied",
    "CommandSent",
    "ErrorAnswer",
    "ErrorDetail",
    "Health",
    "PushList",
    "PushStatus",
    "Replayed",
    "TargetSent",
]
