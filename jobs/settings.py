"""Every setting of roomcast, read from ``ROOMCAST_*`` environment variables in one place.

The defaults work on a developer's machine (a Redis on 127.0.0.1:6379, pushes to real
TRTC's ingest); the dev stack and the tests set ``ROOMCAST_REDIS_URL`` and
``ROOMCAST_RTMP_BASE`` to their own servers. README.md's configuration table lists them.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .redact import redact_url
from .urlguard import IPNetwork, parse_networks
from .usersig import parse_keys


class Settings(BaseSettings):
    """roomcast's configuration; field ``x`` is read from ``ROOMCAST_X``."""

    # Inputs stay out of validation errors: a malformed value may hold a secret (a key in
    # ROOMCAST_RENDITIONS_S3's URL); the validators' messages show what can be shown.
    model_config = SettingsConfigDict(
        env_prefix="ROOMCAST_", extra="ignore", hide_input_in_errors=True
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Broker, result store, job records and default progress store.",
    )
    rtmp_base: str = Field(
        "rtmp://rtmp.rtc.qq.com/push",
        description="Room ingest base: pushes go to <base>/<room>?sdkappid=…",
    )
    trtc_whip_url: str = Field(
        "https://signaling.rtc.tencentcloud.com/v2/pub",
        description=(
            'TRTC\'s WHIP ingest, for pushes with Whip "trtc": they publish to '
            "<url>/<SdkAppId>/<room>?SessionID=<UserId>, the UserSig as bearer token."
        ),
    )
    queue: str = Field(
        "roomcast",
        description=(
            "Celery queue of the push tasks (API and workers must agree); callback "
            "deliveries use <queue>.events."
        ),
    )
    worker_pool: Literal["threads", "prefork"] = Field(
        "threads",
        description=(
            "Celery pool of a worker process: threads (many pushes per process, a few MiB "
            "each) or prefork (a process per push, about 60 MiB each)."
        ),
    )
    worker_concurrency: int = Field(25, ge=1, description="Pushes one worker process runs at once.")
    fanout_shard_rooms: int = Field(
        250,
        ge=1,
        le=500,
        description=(
            "A fan-out push into more rooms than this is split into pushes of at most this "
            "many rooms (shards), which Celery spreads over worker processes; each reads the "
            "source once."
        ),
    )
    job_ttl_seconds: int = Field(3 * 24 * 3600, description="How long job records are kept.")
    progress_ttl_seconds: int = Field(
        7 * 24 * 3600, description="How long an unfinished bookmark is kept."
    )
    max_duration_seconds: float = Field(
        24 * 3600, description="Service default execution limit of one push (0: none)."
    )
    redis_tls_ca_file: str | None = Field(
        None,
        description=(
            "CA bundle (PEM) trusted, besides the system CAs, for RedisTls=true progress Redis."
        ),
    )
    max_attempts: int = Field(
        3, description="Runs of one push at most: a lost worker's push is handed back until then."
    )
    heartbeat_seconds: float = Field(
        2.0,
        description="How often a running push proves it lives, and each worker beats its metrics.",
    )
    worker_lost_seconds: float = Field(
        15.0,
        description=(
            "A running push silent for this long is reported 'worker lost'; a worker whose "
            "metrics beat is, roomcast_worker_up 0."
        ),
    )
    allowed_schemes: str = Field(
        "http,https,rtmp,rtmps", description="URL schemes VideoSrc may use (comma-separated)."
    )
    api_keys: str = Field(
        "",
        description=(
            "Bearer keys, comma-separated; KEY:SdkAppId|SdkAppId scopes one to those apps "
            "(docs/operations.md). Empty, and no keys file: no auth."
        ),
    )
    api_keys_file: str | None = Field(
        None,
        description=(
            "A file of more keys in the same form, one per line; re-read when it changes, so "
            "keys rotate without a restart."
        ),
    )
    guard_allow_networks: str = Field(
        "",
        description=(
            "CIDR networks the SSRF guard lets through although private (comma-separated), "
            "e.g. the VPC of the RedisHost callers name."
        ),
    )
    template_resume_keys: bool = Field(
        False,
        description=(
            "With Redis=true, also read and write the template's trtc:play:position:<room> "
            "(milliseconds), so progress moves both ways between the template and roomcast."
        ),
    )
    scf_secret_id: str = Field(
        "",
        description=(
            "SecretId that SCF async-event API calls (GetAsyncEventStatus, "
            "TerminateAsyncEvent, ListAsyncEvents) are signed with (TC3); empty: refused."
        ),
    )
    scf_secret_key: SecretStr = Field(
        SecretStr(""), description="The SecretKey of scf_secret_id (TC3-HMAC-SHA256)."
    )
    quota_concurrent_pushes: int = Field(
        0, ge=0, description="Pushes one SdkAppId may have queued or running at once (0: any)."
    )
    quota_submissions_per_minute: int = Field(
        0, ge=0, description="Pushes one SdkAppId may submit a minute (0: any)."
    )
    quotas: str = Field(
        "",
        description=(
            "Per-SdkAppId quotas overriding the two above: SdkAppId=CONCURRENT/PER_MINUTE, "
            "comma-separated (e.g. 1400000001=20/120)."
        ),
    )
    block_private_addresses: bool = Field(
        True,
        description=(
            "Refuse every address a caller's URL leads to (sources, playlist, switch and "
            "queue URLs, callbacks, RedisHost) that is loopback, private, link-local, "
            "multicast or reserved (SSRF guard). The dev stack and the tests turn it off: "
            "they serve media on loopback."
        ),
    )
    callback_secret: str = Field(
        "",
        description=(
            "Key that signs event callbacks (Standard Webhooks; a whsec_ key is used as such); "
            "required for them."
        ),
    )
    callback_timeout_seconds: float = Field(
        5.0, gt=0, description="A callback receiver must answer within this long."
    )
    callback_retry_max_seconds: float = Field(
        60.0,
        gt=0,
        description="Failed callbacks are retried after 1, 2, 4… seconds, at most this long.",
    )
    callback_give_up_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description=(
            "A receiver failing for this long is given up on (Callbacks.State gave-up; "
            "the replay API sends the events again)."
        ),
    )
    metrics_public: bool = Field(
        True,
        description=(
            "GET /metrics answers without an API key (Prometheus scrapers usually carry none; "
            "the metrics hold counts only, never a secret). false: it needs one like any call."
        ),
    )
    log_level: str = Field("INFO", description="Log level of the API and workers.")
    log_json: bool = Field(False, description="One JSON object per log line.")

    # The pipeline's own defaults (OutputProfile, Timeouts), written again here so that this
    # module loads no media code: tests/unit/test_layers.py checks that they agree.
    # The descriptions feed docs/configuration.md's table (tests/unit/test_docs.py checks it).
    max_width: int = Field(1920, description="Wider video is re-encoded and scaled down.")
    max_height: int = Field(1080, description="Taller video is re-encoded and scaled down.")
    max_fps: float = Field(
        60.0, description="Faster video is re-encoded at this rate (frames dropped)."
    )
    video_bitrate: int = Field(2_500_000, description="bit/s of re-encoded video.")
    audio_bitrate: int = Field(128_000, description="bit/s of re-encoded audio.")
    gop_seconds: float = Field(2.0, description="Keyframe interval of re-encoded video.")
    max_remux_gop_seconds: float = Field(
        4.0,
        description="Video whose keyframes are further apart than this is re-encoded.",
    )
    x264_preset: str = Field("veryfast", description="x264 preset for re-encoding.")
    pace_lead_seconds: float = Field(0.0, description="Send this far ahead of real time.")
    pace_batch_seconds: float = Field(
        0.02,
        ge=0,
        le=0.5,
        description=(
            "Video due within this window of a wake-up is sent with it (audio within 0.1 s): "
            "fewer wake-ups, less CPU per push; the picture leaves at most this much early."
        ),
    )
    shared_sender: bool = Field(
        True,
        description=(
            "Paced pushes queue about a second ahead and one thread per worker process "
            "sends for all of them (pipeline/sender.py); off: each push paces itself."
        ),
    )
    rtmp_chunk_size: int = Field(
        1360,
        ge=128,
        le=65536,
        description="Chunk size roomcast's RTMP client announces and sends (TRTC's: 1360).",
    )
    fanout_pictures_per_send: int = Field(
        1,
        ge=1,
        le=8,
        description=(
            "Pictures a fan-out push sends each room at once: 2 halves the sends per room "
            "(most of what a room costs) but every other picture arrives a frame late."
        ),
    )
    rtmp_client: Literal["roomcast", "ffmpeg"] = Field(
        "roomcast",
        description=(
            "Which RTMP client publishes to the room: roomcast's own (pipeline/rtmp.py, one "
            "send per write) or FFmpeg's (pipeline/rtmpio.py), for an ingest that takes "
            "only FFmpeg's."
        ),
    )
    task_state_seconds: float = Field(
        5.0,
        ge=0,
        description=(
            "How often a running push's progress is copied into its Celery task state (what "
            "Flower and AsyncResult show); the status API's progress is updated every second."
        ),
    )
    source_timeout_seconds: float = Field(
        10.0, description="Time limit to open and to read the source."
    )
    room_timeout_seconds: float = Field(
        10.0, description="Time limit to connect to the room's ingest."
    )
    room_reconnect_seconds: float = Field(
        10.0,
        description="How long a broken room connection is retried before the push fails.",
    )
    live_read_timeout_seconds: float = Field(
        3.0, description="A live source silent this long has dropped."
    )
    live_grace_seconds: float = Field(
        30.0, description="How long a dropped live source is waited for before the push ends."
    )
    clip_ending_seconds: float = Field(
        3.0,
        ge=0,
        description=(
            "Default lead of a clip's clip-ending event: seconds before the clip ends (0: none)."
        ),
    )

    renditions: bool = Field(
        True,
        description=(
            "Switchable pushes remux clips already encoded in their format (renditions) and "
            "keep the first play of each clip as its rendition (docs/renditions.md)."
        ),
    )
    renditions_dir: str = Field(
        "",
        description=(
            "Directory of the rendition cache, shared by the worker processes of a machine "
            "(empty: $XDG_CACHE_HOME/roomcast/renditions, else ~/.cache/roomcast/renditions)."
        ),
    )
    renditions_max_bytes: int = Field(
        20 * 2**30, ge=0, description="Size of the rendition cache; least recently used go first."
    )
    renditions_s3: str = Field(
        "",
        description=(
            "s3://bucket/prefix of an S3-compatible store that the worker machines share "
            "renditions through, besides each one's directory (needs roomcast[s3]; "
            "credentials: boto3's own chain, e.g. AWS_ACCESS_KEY_ID). Empty: none."
        ),
    )
    renditions_s3_endpoint: str = Field(
        "",
        description=(
            "Endpoint URL of that store when it is not AWS S3 (MinIO, Ceph, R2…; e.g. "
            "http://minio:9000). Empty: AWS."
        ),
    )
    renditions_s3_region: str = Field(
        "", description="Region of that store (empty: boto3's default, e.g. AWS_REGION)."
    )
    renditions_s3_fetch_wait_seconds: float = Field(
        0.25,
        ge=0,
        description=(
            "Longest a push waits for a rendition to come down from that store; a longer "
            "download goes on for the next push while this one encodes the clip."
        ),
    )
    renditions_s3_max_bytes: int = Field(
        200 * 2**30,
        ge=0,
        description=(
            "Size of the shared store's renditions; those last used longest ago go first."
        ),
    )

    # TRTC (README "TRTC"). Keys and credentials are SecretStr so they never show in a repr.
    usersig_check: Literal["off", "decode", "verify"] = Field(
        "decode",
        description=(
            "UserSig check at submit: off; decode (user, app, expiry; the HMAC too when the "
            "SdkAppId has a key); verify (as decode, and every SdkAppId needs a key)."
        ),
    )
    usersig_min_validity_seconds: float = Field(
        300.0, description="A UserSig must stay valid this much longer at submit."
    )
    sdk_secret_keys: SecretStr = Field(
        SecretStr(""), description="TRTC secret keys per SdkAppId: 'appid:key,appid:key'."
    )
    trtc_remove_user_on_stop: bool = Field(
        False, description="On a stopped push, remove its user from the room (TRTC API)."
    )
    trtc_endpoint: str = Field("trtc.tencentcloudapi.com", description="TRTC API endpoint.")
    trtc_region: str = Field("", description="TRTC API region (empty: not sent).")
    trtc_timeout_seconds: int = Field(5, description="Time limit of one TRTC API call.")
    trtc_ingest_poll_seconds: float = Field(
        5.0,
        description=(
            "Engine=cloud: how often the ingest task's status is read (DescribeStreamIngest; "
            "TRTC allows 20 calls/s per account)."
        ),
    )
    trtc_presence_seconds: float = Field(
        0.0,
        description=(
            "How often a running push asks TRTC whether its user is in the room "
            "(Trtc.Presence; TRTC's paid monitoring APIs). 0: never."
        ),
    )
    tencentcloud_secret_id: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("TENCENTCLOUD_SECRET_ID"),
        description="Tencent Cloud API credentials (the SDK's standard name), for the TRTC API.",
    )
    tencentcloud_secret_key: SecretStr = Field(
        SecretStr(""),
        validation_alias=AliasChoices("TENCENTCLOUD_SECRET_KEY"),
        description="The secret key of TENCENTCLOUD_SECRET_ID.",
    )

    # The web console (GET /console, api/console.py).
    console_preview_url: str = Field(
        "",
        description=(
            "Base URL of the room's HTTP preview server, whose HLS the console plays "
            "(<url>/hls/<stream>.m3u8: the local room's preview_url). Empty: no player."
        ),
    )
    console_whip_preview_url: str = Field(
        "",
        description=(
            'Base URL of a WHEP server playing what pushes with Whip "trtc" publish '
            "(<url>v2/sub/<SdkAppId>/<room>?SessionID=<UserId>: the dev stack's WHIP ingest, "
            "devstack/whip.py). Empty: the console does not play such pushes."
        ),
    )

    def cloud_missing(self) -> list[str]:
        """What Engine=cloud needs and these settings lack (the API refuses such jobs).

        The region is required: TRTC's cloud ingest APIs exist in some regions only, and the
        SDK sends no region when none is set.
        """
        needed = {
            "TENCENTCLOUD_SECRET_ID": self.tencentcloud_secret_id.get_secret_value(),
            "TENCENTCLOUD_SECRET_KEY": self.tencentcloud_secret_key.get_secret_value(),
            "ROOMCAST_TRTC_REGION": self.trtc_region,
        }
        return [name for name, value in needed.items() if not value]

    @property
    def renditions_path(self) -> Path:
        """Where the rendition cache lives."""
        if self.renditions_dir:
            return Path(self.renditions_dir)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "roomcast" / "renditions"

    @property
    def renditions_s3_location(self) -> tuple[str, str] | None:
        """(bucket, prefix) of ``renditions_s3``; None when there is no shared store."""
        return parse_s3_url(self.renditions_s3) if self.renditions_s3 else None

    @property
    def events_queue(self) -> str:
        """The Celery queue of callback deliveries, apart from the long push tasks."""
        return f"{self.queue}.events"

    @property
    def schemes(self) -> frozenset[str]:
        """The allowed VideoSrc schemes as a set."""
        return frozenset(s.strip().lower() for s in self.allowed_schemes.split(",") if s.strip())

    @field_validator("quotas")
    @classmethod
    def _check_quotas(cls, value: str) -> str:
        for entry in filter(None, (e.strip() for e in value.split(","))):
            if not re.fullmatch(r"\d+=\d*/\d*", entry):
                raise ValueError(f"{entry!r} is not SdkAppId=CONCURRENT/PER_MINUTE")
        return value

    @field_validator("renditions_s3")
    @classmethod
    def _check_renditions_s3(cls, value: str) -> str:
        if value:
            parse_s3_url(value)  # a malformed URL stops the process at start
        return value

    @field_validator("guard_allow_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        parse_networks(value)  # a malformed network stops the process at start
        return value

    @property
    def guard_networks(self) -> tuple[IPNetwork, ...]:
        """``guard_allow_networks`` parsed."""
        return parse_networks(self.guard_allow_networks)

    def quota_for(self, sdk_app_id: int) -> tuple[int, int]:
        """(concurrent pushes, submissions a minute) for ``sdk_app_id``; 0 is no limit."""
        for entry in self.quotas.split(","):
            app, _, limits = entry.strip().partition("=")
            if app.strip() == str(sdk_app_id):
                concurrent, _, per_minute = limits.partition("/")
                return int(concurrent or 0), int(per_minute or 0)
        return self.quota_concurrent_pushes, self.quota_submissions_per_minute

    @property
    def secret_keys(self) -> dict[int, str]:
        """The TRTC secret key of each SdkAppId (``ROOMCAST_SDK_SECRET_KEYS``)."""
        return parse_keys(self.sdk_secret_keys.get_secret_value())


#: An S3 bucket's name: 3 to 63 lowercase letters, digits, dots and hyphens.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/optional/prefix``; the prefix without its outer
    slashes. Raises ValueError, saying what is wrong (the URL's secrets masked)."""
    shape = "is not s3://bucket or s3://bucket/prefix"
    parts = urlsplit(url)
    if "@" in parts.netloc or parts.query or parts.fragment:
        # Credentials come from boto3's chain (AWS_ACCESS_KEY_ID…), never from the URL.
        raise ValueError(f"{redact_url(url)!r} {shape}, without credentials or a query")
    if parts.scheme != "s3":
        raise ValueError(f"{url!r} {shape}")
    if not BUCKET.fullmatch(parts.netloc):
        raise ValueError(
            f"{url!r} {shape}: {parts.netloc!r} is not a bucket name "
            "(3 to 63 lowercase letters, digits, dots and hyphens)"
        )
    return parts.netloc, parts.path.strip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
