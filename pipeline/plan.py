"""Per-stream decisions: remux what the room accepts as it is, re-encode the rest.

Remuxing costs about 1% of a core; re-encoding 720p30 about 30%. So each stream is
re-encoded only for a reason the room would otherwise reject (../shared/TRTC.md) or the
output profile forbids, and the reason is reported in the status and the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import av.stream

from .probe import VideoProbe
from .spec import OutputProfile

REMUX_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})


class Action(StrEnum):
    """What happens to one source stream."""

    REMUX = "remux"
    TRANSCODE = "transcode"


@dataclass(frozen=True)
class Decision:
    """The action for one stream and the reason a person can read."""

    action: Action
    reason: str


def decide_video(
    stream: av.stream.Stream, profile: OutputProfile, probe: VideoProbe | None = None
) -> Decision:
    """Remux H.264 without B-frames within the profile's limits; re-encode anything else.

    ``probe`` (what the first seconds showed) adds the rotation and keyframe-spacing rules.
    """
    ctx: Any = stream.codec_context
    name = ctx.name
    if name != "h264":
        return Decision(Action.TRANSCODE, f"codec {name} is not accepted (H.264 only)")
    if ctx.has_b_frames:
        return Decision(Action.TRANSCODE, "H.264 with B-frames (the room rejects B-frames)")
    pix = ctx.format.name if ctx.format is not None else None
    if pix is not None and pix not in REMUX_PIXEL_FORMATS:
        return Decision(Action.TRANSCODE, f"pixel format {pix} is not 8-bit 4:2:0")
    if pix is None and any(tag in (ctx.profile or "") for tag in ("10", "4:2:2", "4:4:4")):
        return Decision(Action.TRANSCODE, f"H.264 profile {ctx.profile} is not 8-bit 4:2:0")
    if profile.h264_profile == "baseline" and ctx.profile != "Constrained Baseline":
        return Decision(
            Action.TRANSCODE,
            f"H.264 profile {ctx.profile}: a WebRTC room takes constrained baseline",
        )
    if ctx.width > profile.max_width or ctx.height > profile.max_height:
        return Decision(
            Action.TRANSCODE,
            f"{ctx.width}x{ctx.height} is above the maximum "
            f"{profile.max_width}x{profile.max_height}",
        )
    rate = stream.average_rate
    if rate is not None and float(rate) > profile.max_fps + 0.5:
        return Decision(
            Action.TRANSCODE, f"{float(rate):.0f} fps is above the maximum {profile.max_fps:g}"
        )
    if probe is not None and probe.rotation:
        return Decision(
            Action.TRANSCODE, f"rotated {probe.rotation}° by its display matrix: turned upright"
        )
    gop = probe.max_keyframe_interval if probe is not None else None
    if gop is not None and gop > profile.max_remux_gop_seconds:
        return Decision(
            Action.TRANSCODE,
            f"keyframes {gop:.1f} s apart (the room wants ≤ {profile.max_remux_gop_seconds:g} s)",
        )
    over = _over_bitrate(stream, profile.max_remux_video_bitrate)
    if over is not None:
        return over
    return Decision(Action.REMUX, "H.264 without B-frames: accepted as it is")


def decide_audio(stream: av.stream.Stream, profile: OutputProfile) -> Decision:
    """Remux AAC at an accepted sample rate with at most two channels; re-encode the rest."""
    ctx: Any = stream.codec_context
    name = ctx.name
    if name != "aac":
        return Decision(Action.TRANSCODE, f"codec {name} is not accepted (AAC only)")
    if ctx.sample_rate not in profile.accepted_sample_rates:
        return Decision(Action.TRANSCODE, f"sample rate {ctx.sample_rate} Hz is not accepted")
    if ctx.channels > 2:
        return Decision(Action.TRANSCODE, f"{ctx.channels} channels are downmixed to stereo")
    over = _over_bitrate(stream, profile.max_remux_audio_bitrate)
    if over is not None:
        return over
    return Decision(Action.REMUX, "AAC: accepted as it is")


#: How far above a push's asked bitrate a source may be and still be remuxed: bitrates
#: are averages, and an encoder asked for a rate lands within about this much of it.
BITRATE_SLACK = 1.2


def _over_bitrate(stream: av.stream.Stream, ceiling: int | None) -> Decision | None:
    """Re-encode a stream whose announced bitrate is well above the push's ``Output``."""
    rate = stream.codec_context.bit_rate or getattr(stream, "bit_rate", 0)
    if ceiling is None or not rate or rate <= ceiling * BITRATE_SLACK:
        return None
    return Decision(
        Action.TRANSCODE,
        f"{rate / 1000:.0f} kbit/s is above the push's Output ({ceiling / 1000:.0f} kbit/s)",
    )
