"""Celery's own stop commands, obeyed on every pool roomcast ships.

Users stop pushes with Celery's tools: ``celery -A worker control revoke <id>`` and
``control terminate <signal> <id>``, ``app.control.revoke(id, terminate=True, signal=…)``,
``revoke_by_stamped_headers``, and Flower's Revoke and Terminate buttons (which send
``revoke``). On its own, Celery obeys these poorly for a push: a plain revoke does not touch
a running task; terminate kills the process running it mid-packet (prefork: no clean close,
no bookmark, and a SIGTERM is indistinguishable from a deploy) or fails outright (threads
pool: no process to signal); a queued push's record would wait for a worker slot before
anyone looked at it; and the stamps of a stamped revoke stay in every worker's memory for
good, dropping every later push into that room.

Every revoke reaches the main process of every worker (its pidbox), whatever the pool.
:func:`install` replaces Celery's three handlers there. Each push named is stopped the
roomcast way (``JobStore.stop``): a queued one ends ``stopped`` at once (and ``REVOKED``
for Celery), a running one gets a :class:`~jobs.stops.Stop` in Redis that its control hub
hears within milliseconds. The cause (revoke, terminate with its signal, stamped headers)
is recorded first, so what a signal meant is never guessed. Only ids that are not
roomcast's pushes go on to Celery's own handler. Celery's terminate acts only as the
backstop it is: on a push still running :data:`TERMINATE_GRACE` later, the signal is sent
as asked, and the record is ended ``stopped`` :data:`FINISH_AFTER` after that if the push
could not say so itself. A message Celery drops as revoked (:func:`on_dropped`) ends a
record still ``queued`` too.
"""

from __future__ import annotations

import functools
import logging
import signal as signals
from collections.abc import Callable, Collection
from typing import Any

import redis
from celery.platforms import signals as celery_signals
from celery.utils.functional import maybe_list
from celery.worker import control
from celery.worker import state as worker_state

from jobs.preparations import PreparationStore, stop_preparation
from jobs.states import State
from jobs.stops import Stop, StopCause

from .celerystate import mark_revoked
from .messages import matches, parse_headers, scopes
from .services import get_store

log = logging.getLogger(__name__)

#: How long a push asked to stop by a terminate has before Celery's signal is sent. A push
#: leaves the room about 60 ms after it is asked (docs/benchmarks.md), and its hub cuts the
#: room connection 0.3 s after, whatever holds its thread up.
TERMINATE_GRACE = 1.0
#: After the signal, how long before the record of a push still ``running`` is ended.
FINISH_AFTER = 0.5

Handler = Callable[..., Any]


def install() -> None:
    """Replace Celery's ``revoke``, ``terminate`` and ``revoke_by_stamped_headers``
    handlers (worker main process)."""
    handlers = control.Panel.data
    if getattr(handlers["revoke"], "roomcast", False):
        return
    celery_revoke = handlers["revoke"]
    handlers["revoke"] = _obeying_revoke(celery_revoke)
    # Celery's terminate calls its own revoke function, not the handler: replaced too.
    handlers["terminate"] = _obeying_terminate(handlers["revoke"])
    handlers["revoke_by_stamped_headers"] = _obeying_stamped(handlers["revoke_by_stamped_headers"])


def _obeying_revoke(celery_revoke: Handler) -> Handler:
    @functools.wraps(celery_revoke)
    def revoke(
        state: Any, task_id: Any = None, terminate: bool = False, signal: Any = None, **kw: Any
    ) -> Any:
        ids = sorted({str(i) for i in maybe_list(task_id) or []})
        if terminate:
            stop = Stop(StopCause.TERMINATE, _signal_name(signal))
        else:
            stop = Stop(StopCause.REVOKE)
        ours = stop_jobs(state, ids, stop)
        # A preparation stops between two reads of its clip, whatever the signal: a
        # terminate would only leave a half-written rendition behind.
        prepared = stop_preparations(state, [i for i in ids if i not in ours], stop)
        # Celery's bookkeeping for ours (its revoked set drops a message a worker takes
        # later); not its result store, whose "revoked" would race with our reason.
        worker_state.revoked.update(ours + prepared)
        if terminate:
            _terminate_later(state, set(ours), signal, stop)
        others = [i for i in ids if i not in ours and i not in prepared]
        if others:
            return celery_revoke(state, others, terminate=terminate, signal=signal, **kw)
        return control.ok(f"pushes and preparations {', '.join(ours + prepared)}: {stop.reason}")

    revoke.roomcast = True  # type: ignore[attr-defined]
    return revoke


def _obeying_terminate(revoke: Handler) -> Handler:
    def terminate(state: Any, signal: Any = None, task_id: Any = None, **kw: Any) -> Any:
        return revoke(state, task_id, terminate=True, signal=signal, **kw)

    terminate.roomcast = True  # type: ignore[attr-defined]
    return terminate


def _obeying_stamped(celery_revoke: Handler) -> Handler:
    @functools.wraps(celery_revoke)
    def revoke_by_stamped_headers(
        state: Any, headers: Any = None, terminate: bool = False, signal: Any = None, **kw: Any
    ) -> Any:
        # Celery's handler is not called: it would keep the stamps in the worker for good
        # and drop every later push of that room, app or user.
        wanted = parse_headers(headers or {})
        described = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
        stop = Stop(StopCause.STAMPED, described)
        ids = stop_jobs(state, _stamped(wanted, described), stop)
        if terminate:
            _terminate_later(state, set(ids), signal, stop)
        return control.ok(f"pushes stamped {described}: {len(ids)} stopped")

    revoke_by_stamped_headers.roomcast = True  # type: ignore[attr-defined]
    return revoke_by_stamped_headers


def _stamped(wanted: dict[str, Any], described: str) -> list[str]:
    """The queued and running pushes whose stamps match: through the room and user
    indexes where the stamps name rooms or users, else every live push."""
    store = get_store()
    try:
        named = scopes(wanted)
        if named is None:
            jobs = list(store.live())
        else:
            jobs = [
                job
                for kind, scope in named
                for job in (store.live(room=scope) if kind == "room" else store.live(user=scope))
            ]
    except redis.RedisError as exc:
        log.warning("could not look for pushes stamped %s: %s", described, exc)
        return []
    return sorted({job.request_id for job in jobs if matches(job.record, wanted)})


def on_dropped(sender: Any = None, request: Any = None, terminated: bool = False, **_: Any) -> None:
    """Celery revoked a task (Celery's ``task_revoked`` signal, main process): a push still
    ``queued`` never runs, so it ends ``stopped``; a terminated one whose record has ended
    already gets its reason back in Celery's result, which Celery has just overwritten with
    its own "terminated"."""
    request_id = getattr(request, "id", None)
    if request_id is None:
        return
    try:
        store = get_store()
        job = store.get(request_id)
        if job is not None and job.state is State.QUEUED:
            store.stop(request_id, Stop(StopCause.REVOKE))
        elif terminated and job is not None and job.state is State.STOPPED and job.record.Reason:
            mark_revoked(sender.app, request_id, job.record.Reason)
    except redis.RedisError as exc:
        log.warning("could not end dropped push %s: %s", request_id, exc)


def stop_jobs(state: Any, ids: Collection[str], stop: Stop) -> list[str]:
    """Stop each job named; return the ids that are roomcast's pushes.

    Every worker receives the revoke and does this: ``JobStore.stop`` is idempotent, and
    only the call that ends a queued job announces it to Celery and Flower.
    """
    store = get_store()
    ours = []
    for asked in ids:
        try:
            # A push split into shards (jobs/shards.py): each is marked and terminated too.
            for request_id, found in store.stop_all(asked, stop).items():
                if found is None:
                    continue
                ours.append(request_id)
                if found is State.QUEUED:
                    log.info("push %s stopped while queued: %s", request_id, stop.reason)
                    mark_revoked(state.app, request_id, stop.reason_queued, hostname=state.hostname)
                elif found is State.RUNNING:
                    log.info("push %s asked to stop: %s", request_id, stop.reason)
        except redis.RedisError as exc:
            log.warning("could not stop push %s (%s): %s", asked, stop.reason, exc)
    return ours


def stop_preparations(state: Any, ids: Collection[str], stop: Stop) -> list[str]:
    """Stop each preparation named (jobs/preparations.py); return the ids that are."""
    store = get_store()
    preparations = PreparationStore.of(store)
    ours = []
    for request_id in ids:
        try:
            found = stop_preparation(preparations, request_id, stop)
        except redis.RedisError as exc:
            log.warning("could not stop preparation %s (%s): %s", request_id, stop.reason, exc)
            continue
        if found is None:
            continue
        ours.append(request_id)
        if found == "queued":
            log.info("preparation %s stopped while queued: %s", request_id, stop.reason)
            mark_revoked(state.app, request_id, stop.reason_queued, hostname=state.hostname)
        elif found == "running":
            log.info("preparation %s asked to stop: %s", request_id, stop.reason)
    return ours


def _terminate_later(state: Any, ids: set[str], signal: Any, stop: Stop) -> None:
    """Celery's terminate, for the pushes of this worker still running after the grace."""
    if any(request.id in ids for request in list(worker_state.active_requests)):
        state.consumer.timer.call_after(TERMINATE_GRACE, _terminate, (state, ids, signal, stop))


def _terminate(state: Any, ids: set[str], signal: Any, stop: Stop) -> None:
    running = [r for r in list(worker_state.active_requests) if r.id in ids]
    for request in running:
        log.warning(
            "push %s still running %g s after it was asked to stop: sending %s",
            request.id,
            TERMINATE_GRACE,
            stop.detail,
        )
        try:
            request.terminate(state.consumer.pool, signal=signal)
        except NotImplementedError:
            # The threads pool cannot signal a task. Its hub has cut the push off from the
            # room already; the push's thread ends when the call holding it returns.
            log.warning("this pool cannot signal push %s: its record is ended here", request.id)
    if running:
        state.consumer.timer.call_after(
            FINISH_AFTER, _finish_stopped, (state, [r.id for r in running], stop)
        )


def _finish_stopped(state: Any, ids: list[str], stop: Stop) -> None:
    """End the record (and Celery's state) of a terminated push that could not itself."""
    store = get_store()
    for request_id in ids:
        try:
            if store.finish(
                request_id,
                State.STOPPED,
                allowed=(State.RUNNING,),
                Reason=stop.reason,
                StopCause=stop.cause.value,
            ):
                log.info("push %s ended stopped after %s", request_id, stop.detail)
                mark_revoked(state.app, request_id, stop.reason, hostname=state.hostname)
        except redis.RedisError as exc:
            log.warning("could not end push %s: %s", request_id, exc)


def _signal_name(signal: Any) -> str:
    """``9``, ``"KILL"`` or ``"SIGKILL"`` as ``"SIGKILL"`` (Celery's default: SIGTERM)."""
    try:
        return signals.Signals(celery_signals.signum(signal or "TERM")).name
    except (ValueError, TypeError, AttributeError):
        return str(signal)
