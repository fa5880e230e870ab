"""Switchable pushes end to end: a switch through the API reaches the room on one unbroken
publish within half a second; commands are checked and delivered; events are posted.

What the player does with each command (switch, queue, playlist, pause, loop, seek,
volume, tempo) is checked in milliseconds against file rooms in tests/integration/test_player.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import pytest
import redis

from devstack.redis import RedisServer
from devstack.room import LocalRoom, publishers_at
from jobs.states import State
from jobs.store import JobStore, control_channel

from ..conftest import CALLBACK_SECRET, job_for
from ..media import make_numbered_clip, read_clip_id, read_frame_number
from ..stack import Api, start_api, stop

FPS = 25


@dataclass
class Seen:
    """A decoded picture at the viewer: which clip and frame, its pts, when it arrived."""

    clip: int
    frame: int
    pts: float
    arrival: float


@dataclass(eq=False)
class RoomWatcher(threading.Thread):
    """Decodes the room's video and times its audio packets; samples the publisher count."""

    url: str
    stat_url: str
    room: str
    pictures: list[Seen] = field(default_factory=list)
    audio_dts: list[float] = field(default_factory=list)
    publishing: list[bool] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        try:
            container = av.open(self.url, timeout=(30, 4))
        except Exception as exc:  # noqa: BLE001
            self.error = repr(exc)
            return
        last_sample = 0.0
        try:
            for packet in container.demux():
                if packet.dts is None or packet.size == 0:
                    continue
                now = time.monotonic()
                if now - last_sample > 0.25:
                    self.publishing.append(self._published())
                    last_sample = now
                if packet.stream.type == "audio":
                    self.audio_dts.append(float(packet.dts * packet.time_base))
                    continue
                for frame in packet.decode():
                    self.pictures.append(
                        Seen(
                            read_clip_id(frame),
                            read_frame_number(frame),
                            float(frame.pts * frame.time_base),
                            now,
                        )
                    )
        except (av.error.ExitError, av.error.EOFError, OSError):
            pass
        finally:
            container.close()

    def _published(self) -> bool:
        return publishers_at(self.stat_url, self.room) > 0


@pytest.fixture(scope="session")
def clips(media: Path) -> dict[str, str]:
    """Clip 1: 12 s 320x240 25 fps; clip 2: 4 s 640x480 30 fps; clip 3: 3 s 320x240."""
    make_numbered_clip(media / "clip1.mp4", seconds=12, clip_id=1, tone=440)
    make_numbered_clip(
        media / "clip2.mp4", seconds=4, clip_id=2, fps=30, gop=30, size=(640, 480), tone=660
    )
    make_numbered_clip(media / "clip3.mp4", seconds=3, clip_id=3, tone=880)
    return {"1": "clip1.mp4", "2": "clip2.mp4", "3": "clip3.mp4"}


def watch(room: LocalRoom, room_name: str) -> RoomWatcher:
    watcher = RoomWatcher(room.play_url(room_name), room.http_base + "/stat", room_name)
    watcher.start()
    time.sleep(0.3)
    return watcher


def wait_position(api: Api, rid: str, position: float) -> None:
    api.wait_state(rid, {"running"}, timeout=15)
    deadline = time.monotonic() + 20
    while (api.status(rid)["Progress"] or {}).get("Position", 0) < position:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def assert_seamless(watcher: RoomWatcher) -> None:
    """One publish, continuous picture and sound timestamps."""
    seen = watcher.publishing
    while seen and not seen[-1]:
        seen = seen[:-1]  # the push ended: the publisher leaves at the very end
    assert seen and all(seen), "the publisher left the room before the end"
    pts = [p.pts for p in watcher.pictures]
    assert pts == sorted(pts), "picture timestamps went backwards"
    gaps = [
        (b.pts - a.pts, a, b) for a, b in zip(watcher.pictures, watcher.pictures[1:], strict=False)
    ]
    worst = max(gaps, key=lambda g: g[0])
    assert worst[0] <= 2 / FPS + 0.005, f"picture gap {worst}"
    audio = watcher.audio_dts
    assert audio == sorted(audio)
    assert max(b - a for a, b in zip(audio, audio[1:], strict=False)) <= 1024 / 48000 + 0.005


def test_switching_now_shows_the_new_clip_within_half_a_second_on_one_publish(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    watcher = watch(room, room_name)
    rid = api.submit(**job_for(room, clips["1"], room_name, Switchable=True))
    wait_position(api, rid, 3.0)
    switched_at = time.monotonic()
    answer = api.call("POST", f"/v1/pushes/{rid}/switch", {"VideoSrc": room.media_url(clips["2"])})
    assert answer.status == 202, answer.body
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    watcher.join(15)
    assert final["State"] == "succeeded", final
    assert final["Reason"] == "the playlist ended"
    shown = [p.clip for p in watcher.pictures]
    first_new = shown.index(2)
    assert set(shown[:first_new]) == {1} and set(shown[first_new:]) == {2}
    latency = watcher.pictures[first_new].arrival - switched_at
    print(f"switch now -> first new picture at the viewer: {latency * 1000:.0f} ms")
    assert latency < 0.5
    assert watcher.pictures[first_new].frame <= 1
    assert watcher.pictures[-1].frame >= 4 * 30 - 3  # clip 2 played to its end
    assert_seamless(watcher)
    events = [e["Event"] for e in final["Progress"]["Player"]["History"]]
    assert events[:3] == ["clip-started", "clip-ended", "clip-started"]


def test_a_backend_that_queues_the_next_clip_on_clip_ending_gets_a_seamless_hand_over(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    # The classroom's loop: follow the events; on clip-ending, queue what comes next.
    watcher = watch(room, room_name)
    job = job_for(room, clips["3"], room_name, ClipId="explanation", ClipEndingSeconds=1.5)
    rid = api.submit(**job)
    told: list[dict[str, object]] = []
    with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=30) as stream:
        for line in stream:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            told.append(event)
            if event["Event"] == "clip-ending" and event["ClipId"] == "explanation":
                switch = {"VideoSrc": room.media_url(clips["2"]), "When": "end", "ClipId": "answer"}
                assert api.call("POST", f"/v1/pushes/{rid}/switch", switch).status == 202
    watcher.join(15)
    clip_events = [(e["Event"], e.get("ClipId"), e.get("How")) for e in told[2:-1]]
    assert clip_events == [
        ("clip-started", "explanation", None),
        ("clip-ending", "explanation", None),
        ("queued-next", "answer", None),
        ("clip-ended", "explanation", "finished"),
        ("clip-started", "answer", None),
        ("clip-ending", "answer", None),
        ("clip-ended", "answer", "finished"),
    ]
    ending = told[3]
    assert 1.0 <= ending["Remaining"] <= 1.5, ending
    shown = [(p.clip, p.frame) for p in watcher.pictures]
    first_new = next(i for i, (clip, _) in enumerate(shown) if clip == 2)
    assert shown[first_new - 1] == (3, 3 * FPS - 1) and shown[first_new][1] == 0
    assert_seamless(watcher)


@pytest.fixture(scope="module")
def api_without_workers(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Api, JobStore]]:
    """An API on a Redis of its own that no worker reads: a test plays the worker."""
    work = tmp_path_factory.mktemp("no-workers")
    with RedisServer(work / "redis") as server:
        proc, base = start_api(dict(service_env, ROOMCAST_REDIS_URL=server.url), work / "api.log")
        try:
            yield Api(base), JobStore(redis.Redis.from_url(server.url), ttl=600, lost_after=30)
        finally:
            stop(proc)


def test_a_command_sent_as_soon_as_a_push_shows_running_reaches_it(
    api_without_workers: tuple[Api, JobStore], room: LocalRoom, room_name: str
) -> None:
    api, store = api_without_workers
    rid = api.submit(**job_for(room, "clip.mp4", room_name, Switchable=True))
    # What a worker does: the job shows running a moment before the worker subscribes to
    # its commands (here 0.5 s).
    assert store.transition(rid, (State.QUEUED,), State.RUNNING)[0]
    store.beat(rid)
    received: list[dict[str, object]] = []

    def subscribe_late() -> None:
        time.sleep(0.5)
        pubsub = store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(control_channel(rid))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                received.append(json.loads(message["data"]))
        pubsub.close()

    worker = threading.Thread(target=subscribe_late)
    worker.start()
    answer = api.call("POST", f"/v1/pushes/{rid}/pause")
    worker.join()
    assert answer.status == 202, answer.body
    assert received and received[0]["Command"] == "pause"


def test_player_commands_are_refused_for_a_push_that_is_not_switchable(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    rid = api.submit(**job_for(room, clips["1"], room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    answer = api.call("POST", f"/v1/pushes/{rid}/switch", {"VideoSrc": room.media_url(clips["2"])})
    api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status == 409
    assert answer.body["Error"]["Code"] == "NotSwitchable"


@pytest.mark.parametrize(
    ("command", "body", "field"),
    [
        ("switch", {"VideoSrc": "file:///etc/passwd"}, "VideoSrc"),
        ("switch", {"VideoSrc": "http://h/x.mp4", "When": "later"}, "When"),
        ("seek", {"Position": -1}, "Position"),
        ("volume", {"Volume": 250}, "Volume"),
        ("tempo", {"Tempo": 3.0}, "Tempo"),
        ("loop", {"Loop": "forever"}, "Loop"),
        ("queue", {"Action": "shuffle"}, "Action"),
    ],
)
def test_a_bad_player_command_is_refused_naming_the_field(
    api: Api,
    room: LocalRoom,
    room_name: str,
    clips: dict[str, str],
    command: str,
    body: dict,
    field: str,
) -> None:
    rid = api.submit(**job_for(room, clips["1"], room_name, Switchable=True))
    api.wait_state(rid, {"running"}, timeout=15)
    answer = api.call("POST", f"/v1/pushes/{rid}/{command}", body)
    api.call("POST", f"/v1/pushes/{rid}/stop")
    assert answer.status == 400, answer.body
    assert answer.body["Error"]["Field"] == field


class CallbackCatcher(ThreadingHTTPServer):
    """A classroom backend stand-in: records signed event callbacks, failing some at first."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[dict] = []
        self.bad_signatures = 0
        self.fail_left = fail_first
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/events"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: CallbackCatcher

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.fail_left > 0:
            self.server.fail_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        expected = "sha256=" + hmac.new(CALLBACK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers.get("X-Roomcast-Signature", "")):
            self.server.bad_signatures += 1
        self.server.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_every_state_change_and_clip_event_is_posted_signed_and_in_order(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    catcher = CallbackCatcher(fail_first=2)
    try:
        job = job_for(
            room,
            clips["3"],
            room_name,
            Playlist=[room.media_url(clips["3"])],
            CallbackUrl=catcher.url,
        )
        rid = api.submit(**job)
        api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
        deadline = time.monotonic() + 20
        while not catcher.received or catcher.received[-1]["Event"] != "succeeded":
            assert time.monotonic() < deadline, catcher.received
            time.sleep(0.1)
    finally:
        catcher.shutdown()
        catcher.server_close()
    events = [e["Event"] for e in catcher.received]
    clip = ["clip-started", "clip-ending", "clip-ended"]
    assert events == ["queued", "running", *clip, *clip, "succeeded"]
    assert catcher.bad_signatures == 0
    assert all(e["RequestId"] == rid for e in catcher.received)


def test_events_stream_as_server_sent_events_until_the_final_state(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    rid = api.submit(**job_for(room, clips["3"], room_name, Switchable=True))
    with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = resp.read().decode()
    names = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["queued", "running"] and names[-1] == "succeeded"
    assert "clip-started" in names and "clip-ended" in names
    ids = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("id: ")]
    assert ids and len(set(ids)) == len(ids)


def test_a_callback_url_must_be_http_or_https(api: Api, room: LocalRoom, room_name: str) -> None:
    answer = api.call(
        "POST", "/v1/pushes", job_for(room, "x.mp4", room_name, CallbackUrl="ftp://backend/events")
    )
    assert answer.status == 400
    assert answer.body["Error"]["Field"] == "CallbackUrl"


def test_a_worker_push_with_repeatnum_and_volume_plays_the_clip_again_at_that_volume(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    watcher = watch(room, room_name)
    rid = api.submit(**job_for(room, clips["2"], room_name, RepeatNum=2, Volume=40))
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=30)
    watcher.join(15)
    assert final["State"] == "succeeded", final
    assert final["Progress"]["Player"]["Volume"] == 40
    events = [e["Event"] for e in final["Progress"]["Player"]["History"]]
    assert events.count("clip-started") == 2, events
    frames = [p.frame for p in watcher.pictures if p.clip == 2]
    assert frames.count(0) == 2 and len(frames) >= 2 * (4 * 30 - 3), "played twice, whole"
    assert_seamless(watcher)


def frames_per_second(pictures: list[Seen]) -> float:
    """How fast the frame numbers of ``pictures`` went by at the viewer: the slope of frame
    number against arrival, which a busy machine's stall and the burst after it leave
    almost as it is (the first and the last picture alone would not)."""
    fit = statistics.linear_regression([p.arrival for p in pictures], [p.frame for p in pictures])
    return float(fit.slope)


def test_a_tempo_command_doubles_the_frames_the_viewer_sees_per_wall_second(
    api: Api, room: LocalRoom, room_name: str, clips: dict[str, str]
) -> None:
    watcher = watch(room, room_name)
    rid = api.submit(**job_for(room, clips["1"], room_name, Switchable=True))
    wait_position(api, rid, 4.0)
    sped_up_at = time.monotonic()
    answer = api.call("POST", f"/v1/pushes/{rid}/tempo", {"Tempo": 2.0})
    assert answer.status == 202, answer.body
    final = api.wait_state(rid, {"succeeded", "failed", "stopped"}, timeout=20)
    watcher.join(15)
    assert final["State"] == "succeeded", final
    assert final["Progress"]["Player"]["Tempo"] == 2.0
    # The push sends its first second at once: the rate before is read after it.
    seen = watcher.pictures
    before = frames_per_second([p for p in seen if p.frame >= 1.5 * FPS and p.arrival < sped_up_at])
    after = frames_per_second([p for p in seen if sped_up_at + 1 <= p.arrival < sped_up_at + 3])
    print(f"frame numbers per wall second: {before:.1f} before, {after:.1f} after")
    assert abs(before - FPS) <= 3 and abs(after - 2 * FPS) <= 6
    assert watcher.pictures[-1].frame >= 12 * FPS - 3  # the clip played to its end
    assert_seamless(watcher)
