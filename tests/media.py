"""Test media, generated on the fly with Debian's ffmpeg (nothing binary is committed)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_clip(
    path: Path,
    seconds: float = 10.0,
    size: str = "1280x720",
    fps: int = 30,
    bframes: int = 0,
    h264_profile: str = "main",
    audio_rate: int | None = 48_000,
    gop: int | None = None,
    video: bool = True,
) -> Path:
    """An MP4 of testsrc2 video (H.264) and a 440 Hz tone (AAC), moov at the front."""
    if path.exists():
        return path
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio_rate:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={audio_rate}:"
                 f"duration={seconds}"]
    if video:
        args += ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", h264_profile,
                 "-bf", str(bframes), "-g", str(gop or 2 * fps), "-pix_fmt", "yuv420p"]
    if audio_rate:
        args += ["-c:a", "aac", "-b:a", "96k"]
    args += ["-movflags", "+faststart", str(path)]
    subprocess.run(args, check=True)
    return path


def make_text_file(path: Path, text: str = "this is not a video\n") -> Path:
    """A file that is not media at all."""
    path.write_text(text)
    return path
