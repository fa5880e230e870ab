"""Test media, generated on the fly with Debian's ffmpeg (nothing binary is committed)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import av


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
        args += [
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=440:sample_rate={audio_rate}:duration={seconds}",
        ]
    if video:
        args += [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            h264_profile,
            "-bf",
            str(bframes),
            "-g",
            str(gop or 2 * fps),
            "-pix_fmt",
            "yuv420p",
        ]
    if audio_rate:
        args += ["-c:a", "aac", "-b:a", "96k"]
    args += ["-movflags", "+faststart", str(path)]
    subprocess.run(args, check=True)
    return path


def flv_of(clip: Path) -> bytes:
    """``clip``'s packets remuxed into one FLV byte stream, as the room connection gets it."""
    out = io.BytesIO()
    with av.open(str(clip)) as source, av.open(out, "w", format="flv") as flv:
        streams = {s.index: flv.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                flv.mux(packet)
    return out.getvalue()


def make_text_file(path: Path, text: str = "this is not a video\n") -> Path:
    """A file that is not media at all."""
    path.write_text(text)
    return path


BITS = 12
BLOCK_W, BLOCK_H = 20, 20


def make_numbered_clip(
    path: Path,
    seconds: float = 20.0,
    fps: int = 25,
    gop: int = 25,
    bframes: int = 0,
    clip_id: int = 0,
    size: tuple[int, int] = (320, 240),
    tone: float = 440.0,
    h264_profile: str | None = None,
) -> Path:
    """H.264 whose every frame shows its own number as a row of black/white blocks, and
    ``clip_id`` as a second row (320x240 by default; other sizes scale the blocks).

    With AAC 48 kHz audio (a ``tone`` Hz sine), so that without B-frames it is remuxed.
    ``h264_profile``: x264's (its default is High).
    """
    import av
    import numpy as np

    if path.exists():
        return path
    width, height = size
    sx, sy = width / 320, height / 240
    with av.open(str(path), "w") as out:
        video = out.add_stream(
            "libx264",
            rate=fps,
            options={
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}",
                "preset": "veryfast",
                **({"profile": h264_profile} if h264_profile else {}),
            },
        )
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "mono"
        total = int(seconds * fps)
        samples_per_frame = 1024
        t = 0
        for n in range(total):
            img = np.full((height, width, 3), 128, dtype=np.uint8)
            for row, value_bits in enumerate((n, clip_id)):
                y0, y1 = int(row * 2 * BLOCK_H * sy), int((row * 2 + 1) * BLOCK_H * sy)
                for bit in range(BITS):
                    value = 255 if (value_bits >> bit) & 1 else 0
                    img[y0:y1, int(bit * BLOCK_W * sx) : int((bit + 1) * BLOCK_W * sx)] = value
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            for packet in video.encode(frame):
                out.mux(packet)
            while t < (n + 1) * 48_000 // fps:
                x = np.arange(t, t + samples_per_frame) / 48_000
                wave = (0.2 * np.sin(2 * np.pi * tone * x)).astype(np.float32).reshape(1, -1)
                aframe = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
                aframe.sample_rate = 48_000
                aframe.pts = t
                for packet in audio.encode(aframe):
                    out.mux(packet)
                t += samples_per_frame
        for stream in (video, audio):
            for packet in stream.encode(None):
                out.mux(packet)
    return path


def read_frame_number(frame) -> int:  # noqa: ANN001 - an av.VideoFrame
    """The number drawn by :func:`make_numbered_clip` (survives scaling to any size)."""
    return read_blocks(frame, row=0)


def read_clip_id(frame) -> int:  # noqa: ANN001 - an av.VideoFrame
    """The clip id drawn by :func:`make_numbered_clip`."""
    return read_blocks(frame, row=1)


def read_blocks(frame, row: int) -> int:  # noqa: ANN001 - an av.VideoFrame
    """One row of blocks read back as a number."""
    img = frame.to_ndarray(format="gray")
    h, w = img.shape
    sx, sy = w / 320, h / 240
    number = 0
    for bit in range(BITS):
        x = int((bit * BLOCK_W + BLOCK_W / 2) * sx)
        y = int((row * 2 * BLOCK_H + BLOCK_H / 2) * sy)
        if img[y, x] > 128:
            number |= 1 << bit
    return number
