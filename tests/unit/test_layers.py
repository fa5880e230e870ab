"""The layers keep to themselves: the API loads no media code, the job layer no Celery, and
every error a user can see comes from the one tree in jobs/errors.py."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

from jobs.errors import RoomcastError
from jobs.settings import Settings
from pipeline.spec import OutputProfile, Timeouts

from ..stack import REPO


def loaded_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def test_the_api_loads_no_media_code_nor_the_pipeline() -> None:
    loaded = loaded_after("import api\napi.create_app()")
    assert not loaded & {"av", "numpy", "pipeline", "tencentcloud"}, loaded


def test_the_job_layer_loads_neither_celery_nor_flask_nor_media_code() -> None:
    modules = [f"jobs.{m.name}" for m in pkgutil.iter_modules([str(REPO / "jobs")])]
    loaded = loaded_after("\n".join(f"import {m}" for m in modules))
    assert not loaded & {"celery", "flask", "av", "numpy", "pipeline", "worker", "api"}, loaded


def test_every_error_class_comes_from_the_one_tree() -> None:
    for package in ("api", "jobs", "worker", "pipeline"):
        for module in pkgutil.walk_packages([str(REPO / package)], f"{package}."):
            importlib.import_module(module.name)

    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    tree = subclasses(RoomcastError)
    assert {cls.__module__ for cls in tree} == {"jobs.errors"}
    codes = [cls.code for cls in tree - {RoomcastError}]  # the base says InternalError too
    assert len(codes) == len(set(codes)), sorted(codes)
    assert all(400 <= cls.status < 600 for cls in tree)


def test_the_service_settings_default_to_the_pipelines_own_defaults() -> None:
    settings, profile, timeouts = Settings(), OutputProfile(), Timeouts()
    for name in (
        "max_width", "max_height", "max_fps", "video_bitrate", "audio_bitrate",
        "gop_seconds", "max_remux_gop_seconds", "x264_preset",
    ):  # fmt: skip
        assert getattr(settings, name) == getattr(profile, name), name
    assert settings.source_timeout_seconds == timeouts.source_open == timeouts.source_read
    assert settings.room_timeout_seconds == timeouts.room_open
    assert settings.room_reconnect_seconds == timeouts.room_reconnect
    assert settings.live_read_timeout_seconds == timeouts.live_read
