"""``python -m devstack up``: the whole stack on one machine, plus a sample push.

Redis (reused when one already answers on 6379), the local room and the local WHIP ingest
(devstack/whip.py, for pushes with ``"Whip": "trtc"``) run as children of this process; web,
worker and flower run under honcho from the repo's Procfile, pointed at them through the
environment (:func:`honcho_env`: ``ROOMCAST_REDIS_URL``, ``ROOMCAST_RTMP_BASE``,
``ROOMCAST_TRTC_WHIP_URL``, ``PORT``, ``FLOWER_PORT``, and ``ROOMCAST_SDK_SECRET_KEYS`` with
the dev app's key, which the room and the WHIP ingest check UserSigs against).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from devstack.layout import worker_processes
from devstack.media import make_sample
from devstack.ports import LOCALHOST, free_port, port_is_free
from devstack.process import stop_process
from devstack.redis import reuse_or_start
from devstack.room import LocalRoom
from devstack.whip import LocalWhip
from jobs.usersig import generate

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = REPO_ROOT / ".run"
SAMPLE_NAME = "sample.mp4"
DEMO_ROOM = "demo"
# The dev stack's own TRTC app: the local room verifies UserSigs with this key, and the API
# knows it too (so jobs for this app may omit UserSig). Not a secret: dev only.
DEV_SDK_APP_ID = 1400000000
DEV_SECRET_KEY = "roomcast-dev-only-secret-key"
# Short on purpose: nginx-rtmp keeps 255 bytes of "<room>?<query>" (devstack/publish_auth.py).
SAMPLE_USER = "sample"
HEALTH_TIMEOUT = 60.0
# Long enough for honcho's own shutdown (SIGTERM, then SIGKILL after 5 s) to finish.
HONCHO_GRACE = 15.0


@dataclass(frozen=True)
class Endpoints:
    """Where the running stack can be reached."""

    redis_url: str
    api: str
    flower: str
    room: LocalRoom
    whip: LocalWhip


def pick_port(preferred: int) -> int:
    """Return ``preferred`` when it is free, else any free port."""
    return preferred if port_is_free(preferred) else free_port()


def up(sample: bool = True) -> int:
    """Run the stack in the foreground until Ctrl-C or honcho exits; return an exit status."""
    procfile = REPO_ROOT / "Procfile"
    if not procfile.is_file():
        print(f"devstack: {procfile} not found", file=sys.stderr)
        return 1
    # Ctrl-C, SIGTERM and a closed terminal take the same path, so children always stop in
    # order. SIGINT too: Python leaves it ignored when started in the background by a shell.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    with ExitStack() as cleanup:
        try:
            return _run(cleanup, procfile, sample)
        except KeyboardInterrupt:
            print("\ndevstack: stopping…", flush=True)
            return 130


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _run(cleanup: ExitStack, procfile: Path, sample: bool) -> int:
    redis_url, redis_server = reuse_or_start(RUN_DIR / "redis")
    if redis_server is not None:
        cleanup.callback(redis_server.stop)
    print(f"devstack: redis at {redis_url}" + (" (reused)" if redis_server is None else ""))

    # Launched first, awaited after the room: its imports (aiortc) overlap nginx's start.
    whip = LocalWhip(
        RUN_DIR / "whip", port=pick_port(8090), secret_keys={DEV_SDK_APP_ID: DEV_SECRET_KEY}
    )
    whip.launch()
    cleanup.callback(whip.stop)

    room = LocalRoom(
        RUN_DIR / "room",
        media_dir=RUN_DIR / "media",
        rtmp_port=pick_port(1935),
        http_port=pick_port(8080),
        secret_keys={DEV_SDK_APP_ID: DEV_SECRET_KEY},
    )
    room.start()
    cleanup.callback(room.stop)
    print(f"devstack: local room at {room.rtmp_base} and {room.http_base}", flush=True)
    whip.wait_ready()

    sample_path = room.media_dir / SAMPLE_NAME
    if sample and not sample_path.exists():
        print(f"devstack: generating {sample_path} (30 s, 720p, H.264 with B-frames)…", flush=True)
        make_sample(sample_path)

    api_port, flower_port = pick_port(8000), pick_port(5555)
    ends = Endpoints(
        redis_url=redis_url,
        api=f"http://{LOCALHOST}:{api_port}",
        flower=f"http://{LOCALHOST}:{flower_port}",
        room=room,
        whip=whip,
    )
    honcho = _start_honcho(procfile, ends, api_port, flower_port)
    cleanup.callback(_stop_honcho, honcho)

    # Waiting even without a sample keeps the banner below the processes' startup logs.
    request_id = None
    if not _wait_healthy(ends.api, honcho):
        print(f"devstack: {ends.api}/healthz did not answer in {HEALTH_TIMEOUT:g} s", flush=True)
    elif sample:
        request_id = _push_sample(ends)
    print(_banner(ends, request_id), flush=True)
    return honcho.wait()


def _honcho_binary() -> str:
    # The venv running us has honcho even when that venv is not activated.
    beside = Path(sys.executable).with_name("honcho")
    return str(beside) if beside.exists() else (shutil.which("honcho") or "honcho")


def honcho_env(
    ends: Endpoints, api_port: int, flower_port: int, base: dict[str, str]
) -> dict[str, str]:
    """The environment honcho's processes get: ``base`` (ours), pointed at the stack."""
    env = dict(base)
    # Procfile lines call gunicorn/celery by name: find them in this venv, activated or not.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        ROOMCAST_REDIS_URL=ends.redis_url,
        ROOMCAST_RTMP_BASE=ends.room.rtmp_base,
        PORT=str(api_port),
        FLOWER_PORT=str(flower_port),
        PYTHONUNBUFFERED="1",
        ROOMCAST_SDK_SECRET_KEYS=f"{DEV_SDK_APP_ID}:{DEV_SECRET_KEY}",
        # The web console's player shows the local room's HLS preview.
        ROOMCAST_CONSOLE_PREVIEW_URL=ends.room.preview_url,
        # Pushes with "Whip": "trtc" publish into the local WHIP ingest, which the console
        # plays over WHEP.
        ROOMCAST_TRTC_WHIP_URL=ends.whip.pub_url,
        ROOMCAST_CONSOLE_WHIP_PREVIEW_URL=ends.whip.preview_url,
        # The local room serves its sample clips on loopback, which the guard refuses.
        ROOMCAST_BLOCK_PRIVATE_ADDRESSES="false",
    )
    return env


def _start_honcho(
    procfile: Path, ends: Endpoints, api_port: int, flower_port: int
) -> subprocess.Popen[bytes]:
    env = honcho_env(ends, api_port, flower_port, dict(os.environ))
    # The measured layout (devstack/layout.py): a threads-pool worker per quarter core.
    workers = worker_processes(env)
    print(f"devstack: {workers} worker processes (ROOMCAST_WORKER_PROCESSES to change)")
    # Own session: we decide when honcho stops (after Ctrl-C reaches us), then it stops
    # its processes; the room and Redis outlive them, so pushes end cleanly.
    return subprocess.Popen(
        [_honcho_binary(), "-f", str(procfile), "start", "-c", f"worker={workers}"],
        cwd=procfile.parent,
        env=env,
        start_new_session=True,
    )


def _stop_honcho(honcho: subprocess.Popen[bytes]) -> None:
    if honcho.poll() is None:
        honcho.send_signal(signal.SIGINT)
        try:
            honcho.wait(timeout=HONCHO_GRACE)
        except subprocess.TimeoutExpired:
            stop_process(honcho, grace=5.0)


def _wait_healthy(api: str, honcho: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline and honcho.poll() is None:
        try:
            with urllib.request.urlopen(f"{api}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        time.sleep(0.5)
    return False


def _push_sample(ends: Endpoints) -> str | None:
    job = {
        "VideoSrc": ends.room.media_url(SAMPLE_NAME),
        "SdkAppId": DEV_SDK_APP_ID,
        "StrRoomId": DEMO_ROOM,
        "UserId": SAMPLE_USER,
        # What a real client does: sign with the app's key (the API could also do it).
        "UserSig": generate(DEV_SDK_APP_ID, DEV_SECRET_KEY, SAMPLE_USER),
        "Mode": "vod",
    }
    request = urllib.request.Request(
        f"{ends.api}/v1/pushes",
        data=json.dumps(job).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            request_id: str = json.load(resp)["RequestId"]
            return request_id
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        print(f"devstack: sample push refused: HTTP {exc.code} {body}", flush=True)
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        print(f"devstack: sample push failed: {exc!r}", flush=True)
    return None


def _banner(ends: Endpoints, request_id: str | None) -> str:
    room = ends.room
    lines = [
        "roomcast dev stack is up (Ctrl-C stops everything)",
        "",
        f"watch the room    {room.preview_url}#{DEMO_ROOM}",
        f"  or with ffplay  ffplay {room.play_url(DEMO_ROOM)}",
        f"WHIP rooms        {ends.whip.preview_url}#<room>",
        f"web console       {ends.api}/console",
        f"API               {ends.api}",
        f"Flower            {ends.flower}",
        f"Redis             {ends.redis_url}",
        f"push target       {room.rtmp_base}/<room>?sdkappid=..&userid=..&usersig=..",
        f'  over WHIP       add "Whip": "trtc" to a push: {ends.whip.pub_url}/<app>/<room>',
        f"SdkAppId          {DEV_SDK_APP_ID} (omit UserSig: the dev key signs one)",
    ]
    if request_id:
        lines += [
            "",
            f"sample push       {request_id}",
            f"follow it         curl {ends.api}/v1/pushes/{request_id}",
        ]
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 2) + "+"
    return "\n".join([rule, *(f"| {line.ljust(width)} |" for line in lines), rule])
