"""GET /metrics: the whole service in Prometheus text format, counted by the workers in Redis,
and each worker's own gauges (worker/metrics.py), labelled by worker."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from devstack.redis import RedisServer
from devstack.room import LocalRoom
from worker.metrics import (
    FORGET_SECONDS,
    WORKERS_KEY,
    _children_by_scan,
    children_of,
    read_workers,
    worker_key,
)

from ..conftest import job_for
from ..stack import Api, spawn, start_api, stop

FINAL = {"succeeded", "failed", "stopped"}
STATES = {"queued", "running", "succeeded", "failed", "stopped"}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str, key: str | None = None) -> tuple[int, str, Samples]:
    """GET /metrics: status, content type, and every sample by (name, sorted labels)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(base + "/metrics", headers=headers), timeout=30
        ) as resp:
            status, kind, text = resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return status, kind, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is not there (a counter that never moved)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_pushes_by_state_errors_by_code_and_what_was_sent(
    api: Api, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    status, kind, before = scrape(api.base)
    assert status == 200 and kind.startswith("text/plain; version=")

    failed = api.submit(**job_for(room, "missing.mp4", room_name, UserId="metrics_fail"))
    succeeded = api.submit(**job_for(room, short_clip, room_name, UserId="metrics_ok"))
    assert api.wait_state(failed, FINAL, timeout=30)["Error"]["Code"] == "SourceNotFound"
    final = api.wait_state(succeeded, FINAL, timeout=30)
    assert final["State"] == "succeeded", final
    _, _, after = scrape(api.base)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("roomcast_push_errors_total", code="SourceNotFound") >= 1
    assert grew("roomcast_pushes_ended_total", state="failed") >= 1
    assert grew("roomcast_pushes_ended_total", state="succeeded") >= 1
    assert grew("roomcast_pushes_created_total") >= 2
    # Every byte and frame the finished push reported is in the service's totals.
    assert grew("roomcast_sent_bytes_total") >= final["Progress"]["Bytes"] > 0
    assert grew("roomcast_sent_frames_total") >= final["Progress"]["Frames"] > 0
    # Records by state: one gauge per state, with the pushes just finished among them.
    assert {dict(labels)["state"] for name, labels in after if name == "roomcast_pushes"} == STATES
    assert value(after, "roomcast_pushes", state="succeeded") >= 1
    assert value(after, "roomcast_pushes", state="failed") >= 1
    assert ("roomcast_pushes_active", ()) in after
    assert ("roomcast_pacing_lag_max_seconds", ()) in after


def test_a_running_push_is_active_until_it_is_stopped(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    _, _, during = scrape(api.base)
    assert value(during, "roomcast_pushes_active") >= 1
    assert value(during, "roomcast_pushes", state="running") >= 1
    stopped_before = value(during, "roomcast_pushes_ended_total", state="stopped")
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
    api.wait_state(rid, FINAL, timeout=15)
    _, _, after = scrape(api.base)
    assert value(after, "roomcast_pushes_ended_total", state="stopped") >= stopped_before + 1


def test_the_rooms_of_a_running_fanout_are_counted_by_state(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    targets = [
        {"StrRoomId": f"{room_name}_m", "UserId": "metrics_fan", "UserSig": "sig"},
        {"StrRoomId": f"{room_name}_n", "UserId": "metrics_fan", "UserSig": "sig"},
    ]
    rid = api.submit(**job_for(room, long_clip, room_name, Targets=targets))
    deadline = time.monotonic() + 15
    while True:
        rooms = (api.status(rid).get("Progress") or {}).get("Targets") or {}
        if [r["State"] for r in rooms.values()] == ["live"] * 3:
            break
        assert time.monotonic() < deadline, rooms
        time.sleep(0.2)
    time.sleep(1.2)  # the next progress report, which the scrape reads
    _, _, during = scrape(api.base)
    api.call("POST", f"/v1/pushes/{rid}/stop")
    api.wait_state(rid, FINAL, timeout=15)
    assert value(during, "roomcast_fanout_rooms", state="live") >= 3
    assert ("roomcast_fanout_rooms", (("state", "behind"),)) in during


# --- who may scrape ---------------------------------------------------------------------------

KEY = "metrics-key-123"


@pytest.fixture(scope="module")
def keyed_apis(service_env: dict[str, str], workdir: Path) -> Iterator[dict[str, str]]:
    """Two APIs with a key configured: /metrics public (the default), and not."""
    bases, procs = {}, []
    for public in ("true", "false"):
        env = dict(service_env, ROOMCAST_API_KEYS=KEY, ROOMCAST_METRICS_PUBLIC=public)
        proc, bases[public] = start_api(env, workdir / f"metrics_public_{public}_api.log")
        procs.append(proc)
    yield bases
    for proc in procs:
        stop(proc)


def test_metrics_are_public_by_default_even_where_calls_need_a_key(
    keyed_apis: dict[str, str],
) -> None:
    assert Api(keyed_apis["true"]).call("GET", "/v1/pushes").status == 401
    assert scrape(keyed_apis["true"])[0] == 200


def test_metrics_public_false_asks_scrapers_for_the_key(keyed_apis: dict[str, str]) -> None:
    assert scrape(keyed_apis["false"])[0] == 401
    assert scrape(keyed_apis["false"], key="wrong")[0] == 401
    assert scrape(keyed_apis["false"], key=KEY)[0] == 200


# --- per worker -------------------------------------------------------------------------------


def workers_in(samples: Samples, name: str) -> dict[str, float]:
    """``{worker: value}`` of one per-worker gauge."""
    return {dict(labels)["worker"]: v for (n, labels), v in samples.items() if n == name}


def wait_for_metric(
    base: str, name: str, worker: str, want: float | None, timeout: float
) -> Samples:
    """Scrape until ``name{worker}`` equals ``want`` (None: until it is absent)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(base)[2]
        if workers_in(samples, name).get(worker) == want:
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{{worker={worker!r}}} is not {want}: {samples}")
        time.sleep(0.2)


def test_each_worker_reports_its_pushes_memory_and_pool(
    api: Api, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    # The session's worker (tests/conftest.py): the Procfile's line, threads pool of 25,
    # named test@<host>.
    name = f"test@{socket.gethostname()}"
    samples = scrape(api.base)[2]
    assert workers_in(samples, "roomcast_worker_up")[name] == 1, samples
    assert workers_in(samples, "roomcast_worker_concurrency")[name] == 25
    # A Python process with Celery and PyAV loaded.
    assert workers_in(samples, "roomcast_worker_rss_bytes")[name] > 50e6
    assert 0 < time.time() - workers_in(samples, "roomcast_worker_start_time_seconds")[name] < 3600
    info = [dict(labels) for n, labels in samples if n == "roomcast_worker_info"]
    assert {"worker": name, "pool": "threads"}.items() <= next(
        i for i in info if i["worker"] == name
    ).items()

    rid = api.submit(**job_for(room, long_clip, room_name))
    api.wait_state(rid, {"running"}, timeout=15)
    wait_for_metric(api.base, "roomcast_worker_active_pushes", name, 1, timeout=5)
    assert api.call("POST", f"/v1/pushes/{rid}/stop").status in (200, 202)
    api.wait_state(rid, FINAL, timeout=15)
    wait_for_metric(api.base, "roomcast_worker_active_pushes", name, 0, timeout=5)


def _start_idle_workers(env: dict[str, str], workdir: Path, names: list[str]) -> list:
    """Workers on a queue of their own (so they never take a push), started side by side."""
    procs = []
    for name in names:
        log = workdir / f"{name}.log"
        procs.append((spawn(
            ["celery", "-A", "worker", "worker", "-P", "solo", "-Q", f"{name}_only",
             "--without-mingle", "--without-gossip", "--hostname", f"{name}@%h"],
            env, log,
        ), log))  # fmt: skip
    deadline = time.monotonic() + 60
    for proc, log in procs:
        while " ready." not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    return [proc for proc, _ in procs]


def test_a_killed_worker_shows_down_and_a_stopped_one_leaves(
    api: Api, service_env: dict[str, str], workdir: Path
) -> None:
    host = socket.gethostname()
    killed_name, stopped_name = f"killed{os.getpid()}", f"stopped{os.getpid()}"
    killed, stopped = _start_idle_workers(service_env, workdir, [killed_name, stopped_name])
    killed_at = f"{killed_name}@{host}"
    stopped_at = f"{stopped_name}@{host}"
    try:
        samples = wait_for_metric(api.base, "roomcast_worker_up", killed_at, 1, timeout=5)
        assert workers_in(samples, "roomcast_worker_up")[stopped_at] == 1
        assert workers_in(samples, "roomcast_worker_active_pushes")[killed_at] == 0
        stop(killed, sig=9)  # no goodbye: silent after its last beat
        stop(stopped)  # SIGTERM: a clean shutdown removes it at once
        assert stopped_at not in workers_in(scrape(api.base)[2], "roomcast_worker_up")
        # Down once silent for ROOMCAST_WORKER_LOST_SECONDS (6 s in the tests' environment).
        samples = wait_for_metric(api.base, "roomcast_worker_up", killed_at, 0, timeout=10)
        assert killed_at not in workers_in(samples, "roomcast_worker_rss_bytes")
        assert killed_at in workers_in(samples, "roomcast_worker_last_beat_seconds")
    finally:
        stop(killed, sig=9)
        stop(stopped)
        redis.Redis.from_url(service_env["ROOMCAST_REDIS_URL"]).zrem(WORKERS_KEY, killed_at)


def test_a_worker_silent_for_long_is_forgotten(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    now = time.time()
    client.zadd(WORKERS_KEY, {"gone@old-host": now - FORGET_SECONDS - 1, "late@host": now - 60})
    try:
        seen = {w.name: w for w in read_workers(client, now)}
        assert "gone@old-host" not in seen
        assert client.zscore(WORKERS_KEY, "gone@old-host") is None  # pruned, not just hidden
        assert seen["late@host"].up is False and seen["late@host"].rss_bytes is None
        assert not client.exists(worker_key("late@host"))
    finally:
        client.zrem(WORKERS_KEY, "late@host")


def test_a_workers_pool_processes_are_found_whichever_of_its_threads_forked_them() -> None:
    sleepers: list[subprocess.Popen[bytes]] = []

    def fork() -> None:
        sleepers.append(subprocess.Popen(["sleep", "30"]))

    fork()
    forker = threading.Thread(target=fork)  # billiard replaces pool processes from a thread
    forker.start()
    forker.join()
    held = threading.Thread(target=lambda: (fork(), time.sleep(1)))
    held.start()  # still running when looked at: its child is on its own thread's list
    time.sleep(0.2)
    try:
        found = children_of(os.getpid())
        assert {s.pid for s in sleepers} <= set(found)
        assert sorted(found) == sorted(_children_by_scan(os.getpid()))
    finally:
        held.join()
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
