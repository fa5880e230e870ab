"""The media-compatibility corpus (issue 6): the shapes of file teachers actually upload.

Every input is generated on the fly with Debian's ffmpeg CLI into the room's media dir
(nothing binary is committed), small and short so a whole corpus pushes in seconds.
:class:`DecodingViewer` pulls a room and keeps, besides the packets (a
:class:`tests.viewer.Capture`), what a person would see and hear: every picture's size,
brightness and a thumbnail, and the audio samples, so tests can check orientation, frame
rate and A/V sync at the viewer.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import numpy as np

from .media import make_clip
from .viewer import Capture, Received

SIZE = "320x240"
FPS = 25
SECONDS = 5.0


@dataclass(frozen=True)
class Clip:
    """One corpus input, as pushed: ``VideoSrc`` is the room's ``media_url(name)``."""

    name: str
    seconds: float  # media duration the viewer must receive (±0.5 s)
    video: bool = True
    audio: bool = True


Builder = Callable[[Path], Clip]
BUILDERS: dict[str, Builder] = {}


def corpus_clip(key: str) -> Callable[[Builder], Builder]:
    """Register a builder: ``build(media_dir) -> Clip``, a no-op when the file exists."""

    def register(fn: Builder) -> Builder:
        BUILDERS[key] = fn
        return fn

    return register


def ffmpeg(*args: str) -> None:
    """Run Debian's ffmpeg quietly; a failure shows its error output."""
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{result.stderr[-2000:]}")


def lavfi_video(seconds: float = SECONDS, size: str = SIZE, fps: int = FPS) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]


def tone(seconds: float = SECONDS, rate: int = 48_000) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={rate}:duration={seconds}"]


def x264(bframes: int = 0, fps: int = FPS, pix_fmt: str = "yuv420p") -> list[str]:
    return ["-c:v", "libx264", "-preset", "veryfast", "-bf", str(bframes), "-g", str(2 * fps),
            "-pix_fmt", pix_fmt]  # fmt: skip


AAC = ["-c:a", "aac", "-b:a", "96k"]
FASTSTART = ["-movflags", "+faststart"]


def _exists(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


# --- inputs roomcast must push -------------------------------------------------------


@corpus_clip("h264_plain")
def h264_plain(media: Path) -> Clip:
    """H.264 Main without B-frames + AAC 48 kHz: the room takes both as they are."""
    make_clip(media / "c_h264_plain.mp4", seconds=SECONDS, size=SIZE, fps=FPS)
    return Clip("c_h264_plain.mp4", SECONDS)


@corpus_clip("h264_bframes")
def h264_bframes(media: Path) -> Clip:
    """H.264 High with B-frames + AAC 48 kHz: the video must be re-encoded."""
    make_clip(media / "c_h264_bframes.mp4", SECONDS, SIZE, FPS, bframes=3, h264_profile="high")
    return Clip("c_h264_bframes.mp4", SECONDS)


@corpus_clip("hevc")
def hevc(media: Path) -> Clip:
    """HEVC (hvc1) + AAC in MP4, as phones record."""
    path = media / "c_hevc.mp4"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(), "-c:v", "libx265", "-preset", "ultrafast",
               "-x265-params", "log-level=error", "-tag:v", "hvc1", "-pix_fmt", "yuv420p",
               *AAC, *FASTSTART, str(path))  # fmt: skip
    return Clip(path.name, SECONDS)


@corpus_clip("vp9_opus")
def vp9_opus(media: Path) -> Clip:
    """VP9 + Opus in WebM, as browsers and downloads produce."""
    path = media / "c_vp9_opus.webm"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(), "-c:v", "libvpx-vp9", "-deadline", "realtime",
               "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus", "-b:a", "64k",
               str(path))  # fmt: skip
    return Clip(path.name, SECONDS)


@corpus_clip("mpeg4_mp3")
def mpeg4_mp3(media: Path) -> Clip:
    """MPEG-4 Part 2 + MP3 44.1 kHz in AVI, as old camcorders and DivX rips."""
    path = media / "c_mpeg4_mp3.avi"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(rate=44_100), "-c:v", "mpeg4", "-q:v", "5",
               "-c:a", "libmp3lame", "-b:a", "128k", str(path))  # fmt: skip
    return Clip(path.name, SECONDS)


@corpus_clip("aac_44k_mono")
def aac_44k_mono(media: Path) -> Clip:
    """H.264 without B-frames + AAC 44.1 kHz mono: both accepted as they are."""
    make_clip(media / "c_aac_44k_mono.mp4", SECONDS, SIZE, FPS, audio_rate=44_100)
    return Clip("c_aac_44k_mono.mp4", SECONDS)


@corpus_clip("aac_5_1")
def aac_5_1(media: Path) -> Clip:
    """H.264 without B-frames + 5.1 AAC: the audio must be downmixed."""
    path = media / "c_aac_5_1.mp4"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(), *x264(), "-c:a", "aac", "-b:a", "256k",
               "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", *FASTSTART,
               str(path))  # fmt: skip
    return Clip(path.name, SECONDS)


@corpus_clip("odd_size")
def odd_size(media: Path) -> Clip:
    """321x241 H.264 with B-frames (4:4:4: x264 cannot make odd-sized 4:2:0)."""
    path = media / "c_odd_321x241.mp4"
    if not _exists(path):
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE}:rate={FPS}:duration={SECONDS},"
               "scale=321:241,format=yuv444p", *tone(),
               *x264(bframes=3, pix_fmt="yuv444p"), *AAC, *FASTSTART, str(path))  # fmt: skip
    return Clip(path.name, SECONDS)


@corpus_clip("fps60")
def fps60(media: Path) -> Clip:
    """H.264 at 60 fps without B-frames: within the default maximum, so kept at 60."""
    make_clip(media / "c_h264_60fps.mp4", seconds=4, size=SIZE, fps=60)
    return Clip("c_h264_60fps.mp4", 4.0)


@corpus_clip("vfr")
def vfr(media: Path) -> Clip:
    """Variable frame rate: 2 s at 25 fps then 2 s at 30 fps, timestamps kept (-fps_mode vfr)."""
    path = media / "c_vfr.mp4"
    if not _exists(path):
        ffmpeg(*lavfi_video(2, fps=25), *lavfi_video(2, fps=30), *tone(4),
               "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
               "-map", "2:a", "-fps_mode", "vfr", *x264(), *AAC, *FASTSTART, str(path))  # fmt: skip
    return Clip(path.name, 4.0)


#: The rotated clip's picture: a white box in the top-left corner of a black frame.
ROTATED_BOX = "drawbox=x=16:y=16:w=96:h=72:color=white:t=fill"


@corpus_clip("rotated")
def rotated(media: Path) -> Clip:
    """A 320x240 landscape recording tagged ``rotate=90`` (a phone held upright)."""
    path = media / "c_rotated_90.mp4"
    if not _exists(path):
        plain = media / "c_rotated_src.mp4"
        ffmpeg("-f", "lavfi", "-i", f"color=black:size={SIZE}:rate={FPS}:duration={SECONDS},"
               f"{ROTATED_BOX}", *tone(), *x264(), *AAC, *FASTSTART, str(plain))  # fmt: skip
        ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v", "rotate=90", *FASTSTART, str(path))
        plain.unlink()
    return Clip(path.name, SECONDS)


def upright_reference(path: Path) -> np.ndarray:
    """The first picture of ``path`` as the ffmpeg CLI shows it (autorotate on), in gray."""
    probe = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
         "-frames:v", "1", "-f", "image2pipe", "-c:v", "pgm", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    header, rest = probe.stdout.split(b"\n", 1)
    dims, rest = rest.split(b"\n", 1)
    _maxval, pixels = rest.split(b"\n", 1)
    assert header == b"P5", header
    width, height = (int(v) for v in dims.split())
    return np.frombuffer(pixels, dtype=np.uint8)[: width * height].reshape(height, width)


@corpus_clip("moov_at_end")
def moov_at_end(media: Path) -> Clip:
    """An MP4 whose index (moov) follows the media: reading it over HTTP needs Range."""
    path = media / "c_moov_at_end.mp4"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(), *x264(), *AAC, str(path))
    return Clip(path.name, SECONDS)


@corpus_clip("hls_vod")
def hls_vod(media: Path) -> Clip:
    """An HLS VOD playlist of 2 s MPEG-TS segments; VideoSrc is the .m3u8 URL."""
    folder = media / "c_hls_vod"
    playlist = folder / "index.m3u8"
    if not _exists(playlist):
        folder.mkdir(exist_ok=True)
        ffmpeg(*lavfi_video(), *tone(), *x264(), *AAC, "-f", "hls", "-hls_time", "2",
               "-hls_playlist_type", "vod", "-hls_segment_filename", str(folder / "seg%03d.ts"),
               str(playlist))  # fmt: skip
    return Clip("c_hls_vod/index.m3u8", SECONDS)


@corpus_clip("video_only")
def video_only(media: Path) -> Clip:
    """A screen recording without sound."""
    make_clip(media / "c_video_only.mp4", SECONDS, SIZE, FPS, audio_rate=None)
    return Clip("c_video_only.mp4", SECONDS, audio=False)


@corpus_clip("audio_only")
def audio_only(media: Path) -> Clip:
    """An M4A of AAC 48 kHz, no picture."""
    make_clip(media / "c_audio_only.m4a", SECONDS, video=False)
    return Clip("c_audio_only.m4a", SECONDS, video=False)


@corpus_clip("short_picture")
def short_picture(media: Path) -> Clip:
    """A lesson whose picture stops after 2 s while its sound goes on to 5 s."""
    path = media / "c_short_picture.mp4"
    if not _exists(path):
        ffmpeg(*lavfi_video(2), *tone(), *x264(), *AAC, *FASTSTART, str(path))
    return Clip(path.name, SECONDS)


@corpus_clip("mp3_cover")
def mp3_cover(media: Path) -> Clip:
    """An MP3 with cover art (an attached picture, not a video track)."""
    path = media / "c_podcast_cover.mp3"
    if not _exists(path):
        ffmpeg(*tone(rate=44_100), "-f", "lavfi", "-i", "color=red:size=64x64:duration=0.04",
               "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-b:a", "128k", "-c:v", "mjpeg",
               "-disposition:v", "attached_pic", "-id3v2_version", "3", str(path))  # fmt: skip
    return Clip(path.name, SECONDS, video=False)


@corpus_clip("ts_bframes")
def ts_bframes(media: Path) -> Clip:
    """MPEG-TS of H.264 with B-frames + AAC, as camcorders (.mts) and TV recordings."""
    path = media / "c_ts_bframes.ts"
    if not _exists(path):
        ffmpeg(*lavfi_video(), *tone(), *x264(bframes=2), *AAC, "-f", "mpegts", str(path))
    return Clip(path.name, SECONDS)


@corpus_clip("corrupt_middle")
def corrupt_middle(media: Path) -> Clip:
    """MPEG-TS (H.264 with B-frames + AAC) with 512 bytes garbled half-way through."""
    path = media / "c_corrupt_middle.ts"
    if not _exists(path):
        clean = media / "c_corrupt_src.ts"
        ffmpeg(*lavfi_video(), *tone(), *x264(bframes=2), *AAC, "-f", "mpegts", str(clean))
        data = bytearray(clean.read_bytes())
        middle = len(data) // 2
        rng = np.random.default_rng(6)
        data[middle : middle + 512] = rng.integers(0, 256, 512, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        clean.unlink()
    return Clip(path.name, SECONDS)


# --- inputs that must fail, and how --------------------------------------------------


@corpus_clip("empty")
def empty(media: Path) -> Clip:
    """Zero bytes (an upload that never finished)."""
    path = media / "c_empty.mp4"
    path.write_bytes(b"")
    return Clip(path.name, 0, video=False, audio=False)


@corpus_clip("text")
def text(media: Path) -> Clip:
    """A text file under a video's name."""
    path = media / "c_lecture_notes.mp4"
    path.write_text("Lecture 3: notes, not a video.\n" * 40)
    return Clip(path.name, 0, video=False, audio=False)


@corpus_clip("subtitles_only")
def subtitles_only(media: Path) -> Clip:
    """A Matroska file holding only a subtitle track."""
    path = media / "c_subtitles_only.mkv"
    if not _exists(path):
        srt = media / "c_subtitles_only.srt"
        srt.write_text(
            "1\n00:00:00,000 --> 00:00:02,000\nHello\n\n2\n00:00:02,000 --> 00:00:04,000\nClass\n"
        )
        ffmpeg("-i", str(srt), "-c:s", "srt", str(path))
        srt.unlink()
    return Clip(path.name, 0, video=False, audio=False)


TRUNCATED_SECONDS = 8.0
TRUNCATED_AT = 0.6


@corpus_clip("truncated")
def truncated(media: Path) -> Clip:
    """A faststart MP4 of 8 s cut at 60 % of its bytes (an interrupted upload)."""
    path = media / "c_truncated.mp4"
    if not _exists(path):
        whole = make_clip(media / "c_truncated_src.mp4", TRUNCATED_SECONDS, SIZE, FPS)
        data = whole.read_bytes()
        path.write_bytes(data[: int(len(data) * TRUNCATED_AT)])
        whole.unlink()
    return Clip(path.name, TRUNCATED_SECONDS * TRUNCATED_AT)


# --- A/V sync: a flash of white each second, a 50 ms 1 kHz beep at the same instants ---

SYNC_SECONDS = 6.0
FLASH = f"color=black:size={SIZE}:rate={FPS}:duration={SYNC_SECONDS},drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='eq(mod(n\\,{FPS})\\,0)'"  # noqa: E501


def beeps(seconds: float, rate: int = 48_000, delay: float = 0.0) -> list[str]:
    """A 1 kHz beep for 50 ms at every whole second of the *source* clock, else silence.

    ``delay``: the audio track starts this much after the video (``-itsoffset``), so its
    own clock is shifted to keep the beeps on the flashes.
    """
    expr = f"0.5*sin(2*PI*1000*t)*lt(mod(t+{delay}\\,1)\\,0.05)"
    return ["-f", "lavfi", "-i", f"aevalsrc={expr}:s={rate}:d={seconds - delay}"]


def _sync_clip(media: Path, name: str, codecs: list[str], delay: float = 0.0) -> Clip:
    path = media / name
    if not _exists(path):
        audio = beeps(SYNC_SECONDS, delay=delay)
        if delay:
            audio = ["-itsoffset", str(delay), *audio]
        ffmpeg("-f", "lavfi", "-i", FLASH, *audio, "-map", "0:v", "-map", "1:a", *codecs,
               *FASTSTART, str(path))  # fmt: skip
    return Clip(name, SYNC_SECONDS)


@corpus_clip("sync_remux")
def sync_remux(media: Path) -> Clip:
    """Flashes and beeps, H.264 without B-frames + AAC: remuxed."""
    return _sync_clip(media, "c_sync_remux.mp4", [*x264(), "-c:a", "aac", "-b:a", "128k"])


@corpus_clip("sync_transcode")
def sync_transcode(media: Path) -> Clip:
    """Flashes and beeps, H.264 with B-frames + MP3: both re-encoded."""
    return _sync_clip(
        media, "c_sync_transcode.mp4", [*x264(bframes=3), "-c:a", "libmp3lame", "-b:a", "128k"]
    )


SYNC_AUDIO_DELAY = 0.3


@corpus_clip("sync_audio_late")
def sync_audio_late(media: Path) -> Clip:
    """Flashes and beeps whose audio track starts 0.3 s after the video (an edit list)."""
    codecs = [*x264(), "-c:a", "aac", "-b:a", "128k"]
    return _sync_clip(media, "c_sync_audio_late.mp4", codecs, delay=SYNC_AUDIO_DELAY)


def build(media: Path, keys: Iterable[str], workers: int = 3) -> dict[str, Clip]:
    """Generate the named inputs in parallel (each at most once); key -> Clip."""
    media.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(keys))
    with ThreadPoolExecutor(workers) as pool:
        clips = list(pool.map(lambda key: BUILDERS[key](media), keys))
    return dict(zip(keys, clips, strict=True))


# --- a viewer that decodes ----------------------------------------------------------


@dataclass
class Picture:
    """One decoded video frame at the viewer."""

    time: float
    width: int
    height: int
    luma: float  # mean brightness, 0..255
    thumb: np.ndarray  # gray, every 8th pixel


@dataclass
class Sound:
    """One decoded audio frame at the viewer (first channel, float)."""

    time: float
    rate: int
    channels: int
    samples: np.ndarray


@dataclass
class Seen:
    """Everything a decoding viewer got from one publish."""

    capture: Capture = field(default_factory=Capture)
    pictures: list[Picture] = field(default_factory=list)
    sounds: list[Sound] = field(default_factory=list)
    decode_errors: int = 0
    opened_at: float | None = None
    ended_at: float | None = None

    @property
    def channels(self) -> int | None:
        """Channels of the decoded audio (the most seen)."""
        return max((s.channels for s in self.sounds), default=None)


class DecodingViewer(threading.Thread):
    """Pulls ``url`` like :class:`tests.viewer.Viewer`, and decodes what arrives."""

    def __init__(self, url: str, wait: float = 30.0, idle: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen = Seen()
        self._wait = wait
        self._idle = idle

    def run(self) -> None:
        seen, cap = self.seen, self.seen.capture
        try:
            try:
                container = av.open(self.url, timeout=(self._wait, self._idle))
            except Exception as exc:  # noqa: BLE001 - recorded for the test to show
                cap.error = f"open: {exc!r}"
                return
            seen.opened_at = time.monotonic()
            try:
                for stream in container.streams:
                    cap.codecs[stream.type] = stream.codec_context.name
                    cap.profiles[stream.type] = stream.codec_context.profile
                    if stream.type == "audio":
                        cap.sample_rate = stream.codec_context.sample_rate
                for packet in container.demux():
                    if packet.dts is None or packet.size == 0:
                        continue
                    tb = packet.time_base
                    cap.packets.append(
                        Received(
                            kind=packet.stream.type,
                            pts=float(packet.pts * tb),
                            dts=float(packet.dts * tb),
                            arrival=time.monotonic(),
                            keyframe=packet.is_keyframe,
                            data=b"",
                        )
                    )
                    self._decode(packet)
            except (av.error.ExitError, av.error.EOFError, OSError):
                pass  # the publisher left
            finally:
                container.close()
        finally:
            seen.ended_at = time.monotonic()

    def _decode(self, packet: av.Packet) -> None:
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            self.seen.decode_errors += 1
            return
        for frame in frames:
            if frame.pts is None or frame.time_base is None:
                continue
            t = float(frame.pts * frame.time_base)
            if isinstance(frame, av.VideoFrame):
                gray = frame.to_ndarray(format="gray")
                self.seen.pictures.append(
                    Picture(t, frame.width, frame.height, float(gray.mean()), gray[::8, ::8].copy())
                )
            elif isinstance(frame, av.AudioFrame):
                data = frame.to_ndarray()
                if not frame.format.is_planar:
                    data = data.reshape(-1, frame.layout.nb_channels).T
                first = data[0].astype(np.float32)
                if np.issubdtype(data.dtype, np.integer):
                    first /= np.iinfo(data.dtype).max
                self.seen.sounds.append(
                    Sound(t, frame.sample_rate, frame.layout.nb_channels, first)
                )


# --- what the viewer saw -------------------------------------------------------------


def flash_times(pictures: list[Picture], threshold: float = 100.0) -> list[float]:
    """Times of the pictures where the screen turns white."""
    times, lit = [], False
    for p in sorted(pictures, key=lambda p: p.time):
        now = p.luma > threshold
        if now and not lit:
            times.append(p.time)
        lit = now
    return times


def beep_onsets(sounds: list[Sound], threshold: float = 0.15, gap: float = 0.3) -> list[float]:
    """Times where the sound rises above ``threshold`` after ``gap`` seconds of quiet."""
    loud: list[np.ndarray] = []
    for s in sounds:
        idx = np.flatnonzero(np.abs(s.samples) > threshold)
        loud.append(s.time + idx / s.rate)
    if not loud:
        return []
    times = np.sort(np.concatenate(loud))
    if times.size == 0:
        return []
    starts = [float(times[0])]
    starts += [float(t) for t, d in zip(times[1:], np.diff(times), strict=True) if d > gap]
    return starts


def sync_offsets(flashes: list[float], beeps_at: list[float], window: float = 0.5) -> list[float]:
    """For each flash with a beep within ``window``: beep time minus flash time."""
    offsets = []
    for f in flashes:
        near = [b - f for b in beeps_at if abs(b - f) <= window]
        if near:
            offsets.append(min(near, key=abs))
    return offsets


def bright_centroid(img: np.ndarray, threshold: int = 128) -> tuple[float, float]:
    """Where the bright pixels are, as fractions of width and height (x, y)."""
    ys, xs = np.nonzero(img > threshold)
    assert xs.size, "no bright pixels in the picture"
    h, w = img.shape
    return float(xs.mean() + 0.5) / w, float(ys.mean() + 0.5) / h
