"""Preparing renditions ahead of class: the request's record, and where it is kept.

``POST /v1/renditions`` records a :class:`Preparation` and its clip URLs (the secrets: a
signed URL is a credential) and enqueues ``roomcast.prepare``; a worker encodes each clip
once into the rendition cache (pipeline/renditions.py) and updates the record as it goes.

Redis keys (``ROOMCAST_JOB_TTL_SECONDS`` each):

    roomcast:prepare:<id>            str   the Preparation as JSON (URLs redacted)
    roomcast:prepare:<id>:secrets    str   JSON list of the clip URLs as given
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

import redis
from pydantic import BaseModel, Field

from .keys import PREFIX

ClipState = Literal["queued", "preparing", "ready", "failed"]


class ClipPreparation(BaseModel):
    """One clip of a preparation."""

    VideoSrc: str = Field(description="The clip's URL, its secrets masked.")
    State: ClipState = "queued"
    Cached: bool | None = Field(None, description="true: its rendition was there already.")
    Seconds: float | None = Field(None, description="Length of the rendition.")
    Progress: float | None = Field(None, description="Seconds encoded so far.")
    Error: str | None = Field(None, description="Why it could not be prepared.")


class Preparation(BaseModel):
    """``GET /v1/renditions/<id>``: clips being encoded into renditions."""

    RequestId: str
    SdkAppId: int
    State: Literal["queued", "running", "succeeded", "failed"] = "queued"
    Format: dict[str, Any] | None = Field(
        None,
        description=(
            "Width, Height, Fps of the renditions: as asked, else those of a push that starts "
            "with the first clip."
        ),
    )
    Clips: list[ClipPreparation]
    CreatedAt: str = Field(description="ISO 8601 UTC.")
    EndedAt: str | None = Field(None, description="ISO 8601 UTC.")


def preparation_key(request_id: str) -> str:
    """The Redis key of a preparation's record."""
    return f"{PREFIX}prepare:{request_id}"


class PreparationStore:
    """Preparation records and their clip URLs in the service's Redis."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.redis = client
        self.ttl = ttl

    def create(self, preparation: Preparation, urls: list[str]) -> None:
        """Record a new preparation and its clip URLs."""
        key = preparation_key(preparation.RequestId)
        with self.redis.pipeline() as pipe:
            pipe.set(key, preparation.model_dump_json(), ex=self.ttl)
            pipe.set(f"{key}:secrets", json.dumps(urls), ex=self.ttl)
            pipe.execute()

    def save(self, preparation: Preparation) -> None:
        """Write the record as it stands now."""
        key = preparation_key(preparation.RequestId)
        self.redis.set(key, preparation.model_dump_json(), ex=self.ttl)

    def get(self, request_id: str) -> Preparation | None:
        """The record, or None if there is none (never was, or expired)."""
        raw = cast("bytes | None", self.redis.get(preparation_key(request_id)))
        return None if raw is None else Preparation.model_validate_json(raw)

    def urls(self, request_id: str) -> list[str] | None:
        """The clip URLs as given (None once expired)."""
        raw = cast("bytes | None", self.redis.get(f"{preparation_key(request_id)}:secrets"))
        return None if raw is None else list(json.loads(raw))

    def discard(self, request_id: str) -> None:
        """Remove a preparation that could not be enqueued."""
        key = preparation_key(request_id)
        self.redis.delete(key, f"{key}:secrets")
