"""Where a push's rooms are published: TRTC's RTMP ingest, or its WHIP ingest for a push
with ``Whip: "trtc"`` (jobs/rooms.py has both URL shapes)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.records import JobRecord
from jobs.rooms import TRTC_WHIP, push_url, trtc_whip_endpoint
from jobs.settings import Settings
from pipeline.whip import whip_url


@dataclass(frozen=True)
class Ingest:
    """The service's ingest URLs (``ROOMCAST_RTMP_BASE``, ``ROOMCAST_TRTC_WHIP_URL``)."""

    rtmp_base: str
    trtc_whip_url: str = Settings.model_fields["trtc_whip_url"].default

    @classmethod
    def of(cls, settings: Settings) -> Ingest:
        """The ingest URLs ``settings`` name."""
        return cls(settings.rtmp_base, settings.trtc_whip_url)

    def room_url(self, record: JobRecord, room: str, user_id: str, user_sig: str) -> str:
        """Where ``user_id`` publishes into ``room`` for the push ``record``: the same
        ingest for every room of a push, its own and its fan-out's, added later or not."""
        if record.Whip == TRTC_WHIP:
            endpoint = trtc_whip_endpoint(self.trtc_whip_url, room, record.SdkAppId, user_id)
            return whip_url(endpoint, user_sig)
        return push_url(self.rtmp_base, room, record.SdkAppId, user_id, user_sig)
