"""The picture size an H.264 SPS describes (pipeline/h264.py), checked against x264's SPS."""

from __future__ import annotations

import io

import av
import pytest

from pipeline.h264 import sps_size


def x264_sps(width: int, height: int, profile: str, pix_fmt: str = "yuv420p") -> bytes:
    """The SPS x264 writes for one picture of this size and profile."""
    with av.open(io.BytesIO(), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25, options={"profile": profile})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        packets = stream.encode(av.VideoFrame(width, height, pix_fmt)) + stream.encode(None)
    data = bytes(packets[0])
    nals = [nal for nal in data.split(b"\x00\x00\x01") if nal]
    return next(nal.rstrip(b"\x00") for nal in nals if nal[0] & 0x1F == 7)


@pytest.mark.parametrize(
    ("width", "height", "profile", "pix_fmt"),
    [
        (320, 240, "baseline", "yuv420p"),
        (1280, 720, "main", "yuv420p"),
        (1920, 1080, "high", "yuv420p"),  # cropped: 1088 coded lines
        (636, 358, "high", "yuv420p"),  # cropped on both sides
        (322, 242, "high444", "yuv444p"),  # chroma format and 4:4:4 crop units
    ],
)
def test_the_size_read_from_an_sps_is_the_encoded_size(
    width: int, height: int, profile: str, pix_fmt: str
) -> None:
    assert sps_size(x264_sps(width, height, profile, pix_fmt)) == (width, height)
