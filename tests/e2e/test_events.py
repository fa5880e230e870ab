"""Every push's events reach its callback receiver: once after dedupe by id, in order,
verifiable with the Standard Webhooks library, however the push ends and whatever breaks.

Driven as a classroom backend lives it, against real processes: a Redis with its AOF, the
Procfile's push worker and events worker, the API, and a receiver process
(tests/receiver.py) that fails, hangs, is killed and comes back. What the receiver logged is
compared with the push's history as the API streams it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from devstack.ports import free_port
from devstack.redis import RedisServer
from devstack.room import LocalRoom
from jobs.settings import Settings
from jobs.store import open_store

from ..conftest import CALLBACK_SECRET, job_for
from ..receiver import Receiver
from ..records import queued_job
from ..stack import Api, start_api, start_procfile_worker, stop

FINAL = {"succeeded", "failed", "stopped"}
#: How long a test waits for the last event to reach a receiver that is up.
DELIVERED_WITHIN = 30.0


@dataclass
class Stack:
    """A stack of its own, since its workers are killed: Redis with an AOF, one push worker
    with one slot, one events worker, the API and a Celery client."""

    env: dict[str, str]
    logs: Path
    redis: RedisServer
    api: Api
    celery: Celery
    procs: dict[str, Any] = field(default_factory=dict)

    def start(self, process: str) -> None:
        log = self.logs / f"{process}.log"
        self.procs[process] = start_procfile_worker(self.env, log, f"ev-{process}", process)

    def kill(self, process: str) -> None:
        os.killpg(self.procs[process].pid, signal.SIGKILL)
        self.procs[process].wait()

    def logs_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs.glob("*.log"))


@pytest.fixture(scope="module")
def stack(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("events")
    server = RedisServer(logs / "redis", persistent=True)
    server.start()
    env = dict(
        service_env,
        ROOMCAST_REDIS_URL=server.url,
        ROOMCAST_WORKER_CONCURRENCY="1",
        # Quick retries, and a receiver that hangs is given up on after a second.
        ROOMCAST_CALLBACK_TIMEOUT_SECONDS="1",
        ROOMCAST_CALLBACK_RETRY_MAX_SECONDS="1",
        # A Redis restart takes a moment: pushes must not stop for it.
        ROOMCAST_WORKER_LOST_SECONDS="8",
    )
    api_proc, base = start_api(env, logs / "api.log")
    celery = Celery("a-user-s-client", broker=server.url, backend=server.url)
    built = Stack(env, logs, server, Api(base), celery)
    built.start("worker")
    built.start("events")
    try:
        yield built
    finally:
        celery.close()
        stop(api_proc)
        for proc in built.procs.values():
            stop(proc)
        server.stop()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    backend = Receiver(free_port(), tmp_path / "received.jsonl", CALLBACK_SECRET)
    yield backend
    backend.kill()


# --- helpers ---------------------------------------------------------------------------


def history(api: Api, rid: str) -> list[dict[str, Any]]:
    """The push's events as the API streams them (the push has ended: the stream ends)."""
    with urllib.request.urlopen(f"{api.base}/v1/pushes/{rid}/events", timeout=30) as answer:
        text = answer.read().decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def until(check: Callable[[], bool], seconds: float, why: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, why()
        time.sleep(0.1)


def delivered(stack: Stack, receiver: Receiver, rid: str) -> list[dict[str, Any]]:
    """Wait until the push has ended and its receiver acknowledged its last event; the
    push's history, checked against what the receiver got."""
    status = stack.api.wait_state(rid, FINAL, timeout=60)

    def done() -> bool:
        callbacks = stack.api.status(rid)["Callbacks"]
        return callbacks["State"] == "delivered"

    until(done, DELIVERED_WITHIN, lambda: f"{stack.api.status(rid)['Callbacks']}, {status}")
    events = history(stack.api, rid)
    got = receiver.acknowledged(rid)
    once = list({e["Id"]: e for e in got}.values())  # a receiver's dedupe, first arrival kept
    assert [e["Id"] for e in once] == [e["Id"] for e in events], "missing, extra or reordered"
    assert once == events, "an event's content differs from the history"
    assert [e["Seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["verified"] for e in receiver.entries()), "a signature did not verify"
    return events


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["Event"] for e in events]


# --- a receiver that misbehaves --------------------------------------------------------


def test_a_receiver_that_fails_hangs_and_restarts_gets_every_event_once_and_in_order(
    stack: Stack, receiver: Receiver, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    receiver.start(fail_for=2.0, hang_first=1, hang_seconds=2.0)
    rid = stack.api.submit(
        **job_for(
            room,
            short_clip,
            room_name,
            Playlist=[room.media_url(short_clip)],
            CallbackUrl=receiver.url,
        )
    )
    stack.api.wait_state(rid, {"running"}, timeout=15)
    until(lambda: len(receiver.acknowledged(rid)) >= 3, 15, lambda: str(receiver.entries()))
    receiver.kill()
    time.sleep(1.5)
    receiver.start()
    events = delivered(stack, receiver, rid)
    assert names(events)[:2] == ["queued", "running"] and names(events)[-1] == "succeeded"
    answers = [e["answer"] for e in receiver.entries()]
    assert "500" in answers and "hang" in answers, "the receiver never misbehaved"
    for where, text in {
        "status": json.dumps(stack.api.status(rid)),
        "logs": stack.logs_text(),
    }.items():
        assert "receiver-token" not in text, f"the callback URL's token leaked into the {where}"


def test_the_status_and_metrics_show_failed_attempts_while_the_receiver_is_down(
    stack: Stack, receiver: Receiver, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = stack.api.submit(**job_for(room, short_clip, room_name, CallbackUrl=receiver.url))
    until(
        lambda: stack.api.status(rid)["Callbacks"]["Failures"] >= 2,
        15,
        lambda: str(stack.api.status(rid)),
    )
    callbacks = stack.api.status(rid)["Callbacks"]
    assert callbacks["State"] == "retrying"
    assert callbacks["LastError"].startswith("could not connect")
    with urllib.request.urlopen(f"{stack.api.base}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    pending = re.search(r"^roomcast_callbacks_pending (\S+)$", metrics, re.M)
    failures = re.search(r"^roomcast_callbacks_failures_total (\S+)$", metrics, re.M)
    assert pending and float(pending.group(1)) >= 1, metrics
    assert failures and float(failures.group(1)) >= 2, metrics
    receiver.start()
    delivered(stack, receiver, rid)


# --- however the push ends -------------------------------------------------------------


def test_a_push_stopped_while_queued_delivers_its_end(
    stack: Stack,
    receiver: Receiver,
    room: LocalRoom,
    long_clip: str,
    short_clip: str,
    room_name: str,
) -> None:
    receiver.start()
    busy = stack.api.submit(**job_for(room, long_clip, f"{room_name}_busy"))
    stack.api.wait_state(busy, {"running"}, timeout=15)
    try:
        rid = stack.api.submit(**job_for(room, short_clip, room_name, CallbackUrl=receiver.url))
        assert stack.api.status(rid)["State"] == "queued"
        assert stack.api.call("POST", f"/v1/pushes/{rid}/stop").status == 200
        events = delivered(stack, receiver, rid)
    finally:
        stack.api.call("POST", f"/v1/pushes/{busy}/stop")
    assert names(events) == ["queued", "stopped"]
    assert events[-1]["Reason"] == "stopped through the API, before it started"


def test_a_push_that_fails_before_it_starts_delivers_its_failure(
    stack: Stack, receiver: Receiver, room: LocalRoom, room_name: str
) -> None:
    receiver.start()
    rid = stack.api.submit(**job_for(room, "no_such_clip.mp4", room_name, CallbackUrl=receiver.url))
    events = delivered(stack, receiver, rid)
    assert names(events)[-1] == "failed"
    assert events[-1]["Error"]["Code"] == "SourceNotFound"


def test_a_push_revoked_through_celery_delivers_its_end(
    stack: Stack, receiver: Receiver, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    receiver.start()
    rid = stack.api.submit(**job_for(room, long_clip, room_name, CallbackUrl=receiver.url))
    stack.api.wait_state(rid, {"running"}, timeout=15)
    stack.celery.control.revoke(rid, terminate=True)
    events = delivered(stack, receiver, rid)
    assert names(events)[-1] == "stopped"
    assert "terminated through Celery" in events[-1]["Reason"]


def test_a_push_whose_worker_is_killed_delivers_the_rest_of_its_history_without_repeats(
    stack: Stack, receiver: Receiver, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    receiver.start()
    rid = stack.api.submit(**job_for(room, short_clip, room_name, CallbackUrl=receiver.url))
    stack.api.wait_state(rid, {"running"}, timeout=15)
    until(lambda: "running" in names(receiver.acknowledged(rid)), 10, lambda: "no running")
    stack.kill("worker")
    stack.start("worker")
    events = delivered(stack, receiver, rid)
    # Handed back by the watchdog, run again by the new worker, to its end.
    assert names(events)[:4] == ["queued", "running", "queued", "running"]
    assert names(events)[-1] == "succeeded"
    assert len(receiver.acknowledged(rid)) == len(events), "a healthy receiver got repeats"


def test_events_survive_a_redis_restart_mid_push(
    stack: Stack, receiver: Receiver, room: LocalRoom, long_clip: str, room_name: str
) -> None:
    receiver.start()
    rid = stack.api.submit(
        **job_for(room, long_clip, room_name, MaxDuration=8, CallbackUrl=receiver.url)
    )
    stack.api.wait_state(rid, {"running"}, timeout=15)
    until(lambda: "running" in names(receiver.acknowledged(rid)), 10, lambda: "no running")
    stack.redis.stop()
    time.sleep(1)
    stack.redis.start()
    events = delivered(stack, receiver, rid)
    assert names(events)[-1] == "stopped" and "time limit" in events[-1]["Reason"]


def test_a_killed_events_worker_leaves_nothing_undelivered(
    stack: Stack, receiver: Receiver, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = stack.api.submit(**job_for(room, short_clip, room_name, CallbackUrl=receiver.url))
    stack.api.wait_state(rid, FINAL, timeout=30)  # every event failed while nobody listened
    stack.kill("events")
    receiver.start()
    stack.start("events")
    events = delivered(stack, receiver, rid)
    assert names(events)[-1] == "succeeded"


# --- replay ----------------------------------------------------------------------------


def test_a_replay_sends_the_events_again_from_the_seq_asked(
    stack: Stack, receiver: Receiver, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    receiver.start()
    rid = stack.api.submit(**job_for(room, short_clip, room_name, CallbackUrl=receiver.url))
    events = delivered(stack, receiver, rid)
    answer = stack.api.call("POST", f"/v1/pushes/{rid}/events/replay", {"From": 2})
    assert answer.status == 202, answer.body
    assert answer.body == {"RequestId": rid, "From": 2, "Events": len(events)}
    until(
        lambda: len(receiver.acknowledged(rid)) == 2 * len(events) - 1,
        DELIVERED_WITHIN,
        lambda: str(names(receiver.acknowledged(rid))),
    )
    assert receiver.acknowledged(rid)[len(events) :] == events[1:]


def test_a_replay_needs_a_push_with_a_callback_url(
    stack: Stack, room: LocalRoom, short_clip: str, room_name: str
) -> None:
    rid = stack.api.submit(**job_for(room, short_clip, room_name))
    answer = stack.api.call("POST", f"/v1/pushes/{rid}/events/replay")
    assert answer.status == 409 and answer.body["Error"]["Code"] == "NoCallback"
    assert stack.api.call("POST", "/v1/pushes/nope/events/replay").status == 404
    bad = stack.api.call("POST", f"/v1/pushes/{rid}/events/replay", {"From": 0})
    assert bad.status == 400 and bad.body["Error"]["Field"] == "From"


# --- following ---------------------------------------------------------------------------


class Follower:
    """An SSE client on a raw socket: the events it has read so far."""

    def __init__(self, base: str, rid: str, last_event_id: str | None = None) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        request = f"GET /v1/pushes/{rid}/events HTTP/1.1\r\nHost: t\r\n{resume}\r\n"
        self.sock.sendall(request.encode())
        self.lines = self.sock.makefile("rb")

    def next_event(self) -> dict[str, Any]:
        for line in self.lines:
            if line.startswith(b"data: "):
                return dict(json.loads(line[6:]))
        raise EOFError("the stream ended")

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


def test_a_hundred_followers_do_not_keep_status_calls_waiting(stack: Stack) -> None:
    store = open_store(Settings(redis_url=stack.redis.url))
    rids = [queued_job(store) for _ in range(100)]
    followers = [Follower(stack.api.base, rid) for rid in rids]
    try:
        assert all(f.next_event()["Event"] == "queued" for f in followers)
        # Each follower used to hold one of the API's 8 threads until its push ended.
        for rid in rids[:20]:
            assert stack.api.status(rid)["State"] == "queued"
        store.events.append(rids[-1], "bench-event")
        assert followers[-1].next_event()["Event"] == "bench-event"
    finally:
        for follower in followers:
            follower.close()
        for rid in rids:
            stack.api.call("POST", f"/v1/pushes/{rid}/stop")


def test_a_follower_that_reconnects_with_last_event_id_continues_after_it(stack: Stack) -> None:
    store = open_store(Settings(redis_url=stack.redis.url))
    rid = queued_job(store)
    for n in range(3):
        store.events.append(rid, "note", N=n)
    first = Follower(stack.api.base, rid)
    seen = [first.next_event() for _ in range(3)]
    first.close()
    again = Follower(stack.api.base, rid, last_event_id=seen[-1]["Id"])
    try:
        assert again.next_event()["Seq"] == seen[-1]["Seq"] + 1
    finally:
        again.close()
        stack.api.call("POST", f"/v1/pushes/{rid}/stop")
