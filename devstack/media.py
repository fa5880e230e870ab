"""Generate sample media with Debian's ffmpeg CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack.process import find_binary


def make_sample(path: Path, duration: float = 30.0, width: int = 1280, height: int = 720) -> None:
    """Write an MP4 test clip: testsrc2 video at 30 fps, 440 Hz tone at 48 kHz.

    testsrc2 draws its own clock and frame counter, so no font is needed. The video is H.264
    High *with B-frames*, which TRTC's RTMP ingest rejects, so pushing it exercises the
    re-encode path. The file appears atomically: an interrupted run leaves no half clip.

    Raises:
        subprocess.CalledProcessError: ffmpeg failed (its stderr is in the exception).
    """
    ffmpeg = find_binary("ffmpeg", "/usr/bin/ffmpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.mp4")
    # fmt: off
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=30:duration={duration}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}",
        "-c:v", "libx264", "-profile:v", "high", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-bf", "3", "-g", "60",
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
        "-movflags", "+faststart",
        str(partial),
    ]
    # fmt: on
    try:
        subprocess.run(cmd, check=True, capture_output=True)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
