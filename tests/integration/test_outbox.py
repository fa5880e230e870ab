"""The callback outbox and its deliverer against a real Redis: numbered events, one
deliverer per push, order kept through failures, backoff, giving up and replay.

A receiver here is a function standing in for the HTTP POST, and time is a virtual clock, so
that ten minutes of a receiver being down take no time; tests/e2e/test_events.py drives the
same code through Celery workers and a real receiver process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import redis

from devstack.redis import RedisServer
from jobs.events import OUTBOX_KEY, seq_of
from jobs.keys import job_key
from jobs.outbox import lock_key
from jobs.settings import Settings
from jobs.states import State
from jobs.store import JobStore
from tests.records import queued_job, running_job
from worker.callbacks import Deliverer, Outcome

URL = "http://receiver.invalid/events?token=t0ken"


class Clock:
    """Virtual time, starting now."""

    def __init__(self) -> None:
        import time  # noqa: PLC0415

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeReceiver:
    """Answers each POST as told: None (2xx) or an error text; records what it got."""

    def __init__(self) -> None:
        self.down = False
        self.got: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts = 0

    def __call__(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> str | None:
        self.attempts += 1
        if self.down:
            return "could not connect: [Errno 111] Connection refused"
        self.got.append(json.loads(body))
        self.headers.append(headers)
        return None


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[JobStore]:
    client: Any = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/7")
    client.flushdb()
    due: list[str] = []
    store = JobStore(client, ttl=600, lost_after=30, deliver=due.append)
    store.due_calls = due  # type: ignore[attr-defined]
    yield store
    client.close()


def deliverer(store: JobStore, receiver: FakeReceiver, clock: Clock, **settings: Any) -> Deliverer:
    config = Settings(callback_secret="s3cret", block_private_addresses=False, **settings)
    return Deliverer(store.outbox, store.events, config, send=receiver, clock=clock)


class Setup(NamedTuple):
    """A running push with a callback URL, its receiver, the clock and a deliverer."""

    rid: str
    receiver: FakeReceiver
    clock: Clock
    sender: Deliverer


def a_push(store: JobStore, down: bool = False, **settings: Any) -> Setup:
    """A running push whose receiver is ``down`` (or up), and its deliverer."""
    receiver, clock = FakeReceiver(), Clock()
    receiver.down = down
    rid = running_job(store, callback=URL)
    return Setup(rid, receiver, clock, deliverer(store, receiver, clock, **settings))


def retry_until_settled(
    sender: Deliverer,
    store: JobStore,
    rid: str,
    clock: Clock,
    receiver: FakeReceiver | None = None,
    back_at: float = float("inf"),
) -> tuple[Outcome, list[float]]:
    """Deliver as the sweeper would, each retry when it is due, until an attempt settles;
    how it settled and the waits between attempts. ``receiver`` is down until ``back_at``."""
    gaps: list[float] = []
    while (outcome := sender.deliver(rid)) is Outcome.RETRYING:
        due = float(store.redis.zscore(OUTBOX_KEY, rid))
        gaps.append(due - clock.now)
        clock.now = due
        if receiver is not None:
            receiver.down = clock.now < back_at
    return outcome, gaps


def test_events_are_numbered_per_push_with_an_id_that_names_the_push(store: JobStore) -> None:
    rid = queued_job(store)
    store.events.append(rid, "clip-started", Clip=1)
    events = store.events.read(rid)
    assert [(e["Seq"], e["Event"]) for e in events] == [(1, "queued"), (2, "clip-started")]
    assert [e["Id"] for e in events] == [f"{rid}.1", f"{rid}.2"]
    assert seq_of(events[1]["Id"]) == 2
    assert store.events.read(rid, after=1)[0]["Event"] == "clip-started"


def test_a_push_without_a_callback_url_never_enters_the_outbox(store: JobStore) -> None:
    rid = running_job(store)
    store.finish(rid, State.SUCCEEDED)
    assert store.redis.zscore(OUTBOX_KEY, rid) is None
    assert store.get(rid).callbacks is None  # type: ignore[union-attr]


def test_the_first_undelivered_event_starts_one_delivery_and_later_ones_wait_for_it(
    store: JobStore,
) -> None:
    rid = queued_job(store, callback=URL)
    store.events.append(rid, "clip-started")
    store.transition(rid, (State.QUEUED,), State.RUNNING)
    assert store.due_calls == [rid]  # type: ignore[attr-defined]
    assert store.redis.zscore(OUTBOX_KEY, rid) is not None


def test_the_deliverer_sends_every_event_in_order_then_leaves_the_outbox(store: JobStore) -> None:
    receiver, clock = FakeReceiver(), Clock()
    rid = running_job(store, callback=URL)
    store.finish(rid, State.SUCCEEDED)
    assert deliverer(store, receiver, clock).deliver(rid) is Outcome.DELIVERED
    assert [e["Event"] for e in receiver.got] == ["queued", "running", "succeeded"]
    assert [h["webhook-id"] for h in receiver.headers] == [f"{rid}.{n}" for n in (1, 2, 3)]
    assert store.redis.zscore(OUTBOX_KEY, rid) is None
    callbacks = store.get(rid).callbacks  # type: ignore[union-attr]
    assert callbacks is not None
    assert (callbacks.State, callbacks.Events, callbacks.Delivered) == ("delivered", 3, 3)


def test_a_second_deliverer_leaves_a_push_to_the_one_sending_its_events(store: JobStore) -> None:
    receiver, clock = FakeReceiver(), Clock()
    rid = running_job(store, callback=URL)
    assert store.outbox.lock(rid, "the-other-one", 30)
    assert deliverer(store, receiver, clock).deliver(rid) is Outcome.BUSY
    assert receiver.attempts == 0


def test_a_failed_attempt_keeps_the_event_and_its_order_and_retries_after_a_backoff(
    store: JobStore,
) -> None:
    rid, receiver, clock, sender = a_push(store, down=True)
    assert sender.deliver(rid) is Outcome.RETRYING
    store.finish(rid, State.STOPPED, Reason="stopped through the API")
    status = store.get(rid).callbacks  # type: ignore[union-attr]
    assert status is not None and status.State == "retrying"
    assert status.LastError == "could not connect: [Errno 111] Connection refused"
    # Not before its time, even when a new event asks.
    assert sender.deliver(rid) is Outcome.WAITING
    score = store.redis.zscore(OUTBOX_KEY, rid)
    assert clock.now + 0.8 <= score <= clock.now + 1.0
    receiver.down = False
    clock.now = score
    assert sender.deliver(rid) is Outcome.DELIVERED
    assert [e["Seq"] for e in receiver.got] == [1, 2, 3]


def test_a_receiver_down_for_ten_minutes_gets_every_event_within_a_minute_of_coming_back(
    store: JobStore,
) -> None:
    rid, receiver, clock, sender = a_push(store, down=True)
    back_at = clock.now + 600
    store.finish(rid, State.SUCCEEDED)
    outcome, gaps = retry_until_settled(sender, store, rid, clock, receiver, back_at)
    assert outcome is Outcome.DELIVERED
    assert clock.now - back_at <= 60
    assert max(gaps) <= 60 and gaps[:3] == pytest.approx([1, 2, 4], rel=0.21)
    assert [e["Event"] for e in receiver.got] == ["queued", "running", "succeeded"]


def test_retrying_stops_after_the_give_up_time_and_a_replay_sends_the_events_again(
    store: JobStore,
) -> None:
    rid, receiver, clock, sender = a_push(store, down=True, callback_give_up_seconds=30)
    assert retry_until_settled(sender, store, rid, clock)[0] is Outcome.GAVE_UP
    store.finish(rid, State.SUCCEEDED)  # a later event does not wake a receiver given up on
    assert store.redis.zscore(OUTBOX_KEY, rid) is None
    status = store.get(rid).callbacks  # type: ignore[union-attr]
    assert status is not None and (status.State, status.Delivered) == ("gave-up", 0)
    assert store.counters()["callbacks_given_up"] == 1

    receiver.down = False
    assert store.outbox.replay(rid, 1) == 3
    assert sender.deliver(rid) is Outcome.DELIVERED
    assert [e["Seq"] for e in receiver.got] == [1, 2, 3]


def test_a_replay_from_an_earlier_event_sends_it_and_every_later_one_again(
    store: JobStore,
) -> None:
    receiver, clock = FakeReceiver(), Clock()
    rid = running_job(store, callback=URL)
    store.finish(rid, State.SUCCEEDED)
    sender = deliverer(store, receiver, clock)
    sender.deliver(rid)
    store.outbox.replay(rid, 2)
    sender.deliver(rid)
    assert [e["Seq"] for e in receiver.got] == [1, 2, 3, 2, 3]


def test_a_push_without_a_callback_url_cannot_be_replayed(store: JobStore) -> None:
    rid = running_job(store)
    assert store.outbox.replay(rid, 1) is None


def test_a_delivery_whose_task_was_lost_is_found_by_the_sweeper_once_its_claim_lapses(
    store: JobStore,
) -> None:
    clock = Clock()
    rid = running_job(store, callback=URL)
    # The append left the push to the task it sent, for a while.
    assert store.outbox.due(clock.now, 10, 15) == []
    assert store.outbox.due(clock.now + 16, 10, 15) == [rid]
    # Claimed again by that sweep: the next one leaves it alone.
    assert store.outbox.due(clock.now + 17, 10, 15) == []


def test_events_of_an_expired_job_leave_the_outbox(store: JobStore) -> None:
    receiver, clock = FakeReceiver(), Clock()
    rid = running_job(store, callback=URL)
    store.redis.delete(job_key(rid))
    assert deliverer(store, receiver, clock).deliver(rid) is Outcome.GONE
    assert store.redis.zscore(OUTBOX_KEY, rid) is None
    assert store.events.append(rid, "late") == 0


# --- races: a replay, a lost lock, an event at the last moment, an expired job ------------


def test_a_replay_asked_while_a_delivery_runs_is_not_lost(store: JobStore) -> None:
    rid, receiver, clock, sender = a_push(store)
    store.finish(rid, State.SUCCEEDED)
    sender.deliver(rid)  # 1, 2, 3
    for n in range(3):
        store.events.append(rid, "note", N=n)  # 4, 5, 6
    replayed: list[Outcome] = []

    def replay_during_event_5(url: str, body: bytes, headers: dict[str, str], t: float) -> None:
        if headers["webhook-id"].endswith(".5") and not replayed:
            store.outbox.replay(rid, 1)  # what POST /events/replay does, From=1
            replayed.append(deliverer(store, FakeReceiver(), clock).deliver(rid))
        return receiver(url, body, headers, t)

    sender._send = replay_during_event_5  # type: ignore[assignment]
    assert sender.deliver(rid) is Outcome.DELIVERED
    assert replayed == [Outcome.BUSY]  # the replay's own task found this one at work
    assert [e["Seq"] for e in receiver.got][3:] == [4, 5, 1, 2, 3, 4, 5, 6]


def test_a_deliverer_that_lost_its_lock_writes_nothing_and_the_cursor_never_goes_back(
    store: JobStore,
) -> None:
    rid, receiver, clock, sender = a_push(store)
    store.finish(rid, State.SUCCEEDED)
    other: list[Outcome] = []

    def outlives_its_lock(url: str, body: bytes, headers: dict[str, str], t: float) -> None:
        if headers["webhook-id"].endswith(".2") and not other:
            store.redis.delete(lock_key(rid))  # the attempt took longer than the lock
            other.append(deliverer(store, receiver, clock).deliver(rid))
        return receiver(url, body, headers, t)

    sender._send = outlives_its_lock  # type: ignore[assignment]
    assert sender.deliver(rid) is Outcome.BUSY
    assert other == [Outcome.DELIVERED]
    status = store.get(rid).callbacks  # type: ignore[union-attr]
    assert status is not None and (status.State, status.Delivered) == ("delivered", 3)
    assert store.redis.zscore(OUTBOX_KEY, rid) is None


def test_an_event_recorded_just_after_the_outbox_settled_is_delivered_by_its_own_task(
    store: JobStore,
) -> None:
    rid, receiver, clock, sender = a_push(store)
    outcomes: list[Outcome] = []
    store.events.on_due = lambda r: outcomes.append(deliverer(store, receiver, clock).deliver(r))
    settle = store.outbox.settle

    def settle_then_the_push_ends(request_id: str, token: str) -> bool:
        done = settle(request_id, token)
        if done and not outcomes:
            store.finish(rid, State.SUCCEEDED)  # the push's thread, at that very moment
        return done

    store.outbox.settle = settle_then_the_push_ends  # type: ignore[method-assign]
    assert sender.deliver(rid) is Outcome.DELIVERED
    assert outcomes == [Outcome.DELIVERED]
    assert [e["Event"] for e in receiver.got] == ["queued", "running", "succeeded"]


def test_a_job_that_expires_during_an_attempt_is_not_written_back(store: JobStore) -> None:
    rid, receiver, clock, sender = a_push(store)

    def expires_meanwhile(url: str, body: bytes, headers: dict[str, str], t: float) -> None:
        store.redis.delete(job_key(rid))
        return receiver(url, body, headers, t)

    sender._send = expires_meanwhile  # type: ignore[assignment]
    assert sender.deliver(rid) is Outcome.GONE
    assert not store.redis.exists(job_key(rid))
