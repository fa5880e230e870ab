"""What a push needs to know: the source, the target and the output settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .rendition_cache import RenditionCache


@dataclass(frozen=True)
class OutputProfile:
    """What the room accepts and how roomcast encodes what it must re-encode.

    Defaults follow TRTC's RTMP ingest (../shared/TRTC.md): H.264 without B-frames with a
    1–2 s keyframe interval, AAC audio, FLV over RTMP.
    """

    max_width: int = 1920
    max_height: int = 1080
    max_fps: float = 60.0
    video_bitrate: int = 2_500_000
    audio_bitrate: int = 128_000
    audio_sample_rate: int = 48_000
    accepted_sample_rates: frozenset[int] = frozenset({44_100, 48_000})
    gop_seconds: float = 2.0
    max_remux_gop_seconds: float = 4.0
    x264_preset: str = "veryfast"
    x264_tune: str = "zerolatency"
    #: A push's own ceilings on remuxed streams (its ``Output``): a source above them is
    #: re-encoded at ``video_bitrate`` / ``audio_bitrate``. None: any bitrate is remuxed.
    max_remux_video_bitrate: int | None = None
    max_remux_audio_bitrate: int | None = None
    #: Only this H.264 profile reaches the room ("baseline": constrained baseline, what
    #: WebRTC receivers take, for a WHIP room): a source of another is re-encoded to it.
    #: None: any 8-bit 4:2:0 profile.
    h264_profile: str | None = None


@dataclass(frozen=True)
class Timeouts:
    """Network time limits for the source and the room, in seconds."""

    source_open: float = 10.0
    source_read: float = 10.0
    room_open: float = 10.0
    live_read: float = 3.0
    room_reconnect: float = 10.0


@dataclass(frozen=True)
class Clip:
    """A clip of a switchable push: its URL and the caller's id for it (in its events)."""

    url: str
    id: str | None = None


@dataclass(frozen=True)
class Target:
    """One room of a fan-out push: the caller's id for it and its push URL (a secret)."""

    id: str
    url: str


def as_clip(item: Clip | str) -> Clip:
    """A playlist item as a :class:`Clip` (a bare URL has no id)."""
    return item if isinstance(item, Clip) else Clip(item)


@dataclass(frozen=True)
class PushSpec:
    """One push: read ``source``, write to ``target`` (an ``rtmp://`` URL), in real time.

    ``start_position`` (seconds in the source) resumes a push; ``max_duration`` (seconds of
    output) is the job's execution limit; a live source that stays away ``live_grace``
    seconds has ended. Video due within ``pace_batch`` seconds goes out together (see
    :class:`~pipeline.pacer.Pacer`); a paced push is sent by its process's ``shared_sender``
    (:mod:`pipeline.sender`) unless that is off. A
    ``switchable`` push plays ``source`` (its id ``clip_id``) then ``playlist`` (``loop``:
    none, last, all) and obeys player commands; every clip is re-encoded to one format, and
    ``clip_ending`` seconds before a clip's end its ``clip-ending`` event fires (0: never).
    ``secrets`` lists values to mask in messages. ``rtmp_client`` publishes: ``roomcast``
    (:mod:`pipeline.rtmp`) or ``ffmpeg`` (:mod:`pipeline.rtmpio`).
    """

    source: str
    target: str
    live: bool = False
    start_position: float = 0.0
    max_duration: float | None = None
    profile: OutputProfile = field(default_factory=OutputProfile)
    timeouts: Timeouts = field(default_factory=Timeouts)
    pace_lead: float = 0.0
    pace_batch: float = 0.02
    shared_sender: bool = True
    live_grace: float = 30.0
    switchable: bool = False
    clip_id: str | None = None
    playlist: tuple[Clip | str, ...] = ()
    #: A fan-out push: every room it publishes to (``target`` is then the first's URL); the
    #: source is read and muxed once (pipeline/fanout.py). Empty: ``target`` alone.
    targets: tuple[Target, ...] = ()
    loop: str = "none"
    #: How many times ``source`` plays (-1: until stopped), played again whenever it
    #: ends with nothing queued after it; and the volume the push starts at (percent).
    repeat: int = 1
    volume: int = 100
    #: Playback speed, 0.5–2.0, pitch kept (switchable pushes: the player retimes).
    tempo: float = 1.0
    #: Carry the position in the clip to viewers as SEI, once a second (pipeline/sei.py).
    progress_sei: bool = False
    clip_ending: float = 3.0
    secrets: tuple[str, ...] = ()
    rtmp_client: str = "roomcast"
    #: The chunk size roomcast's RTMP client announces and sends (TRTC's guidance: 1360).
    rtmp_chunk_size: int = 1360
    #: A fan-out push's pictures per send to each room (:data:`pipeline.fanout.PICTURES_PER_SEND`).
    fanout_pictures_per_send: int = 1
    #: Raises a SourceError for a clip URL that must not be opened (the SSRF guard, run
    #: again as each clip opens: a switch's URL, and DNS, may have changed since submit).
    url_guard: Callable[[str], None] | None = None
    #: An HTTP proxy every http(s) connection of a source goes through (the worker's
    #: egress guard, worker/egress.py): redirects and HLS segments included.
    http_proxy: str | None = None
    #: Where a switchable push finds its clips already encoded in its format
    #: (:mod:`pipeline.renditions`); None: every clip is re-encoded as it plays.
    rendition_cache: RenditionCache | None = None

    def clips(self) -> tuple[Clip, ...]:
        """The clips in playing order: the source, then the playlist."""
        return (Clip(self.source, self.clip_id), *map(as_clip, self.playlist))
