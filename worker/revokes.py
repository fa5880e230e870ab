"""Celery's own stop commands, obeyed on every pool roomcast ships.

Users stop pushes with Celery's tools: ``celery -A worker control revoke <id>``,
``app.control.revoke(id, terminate=True, signal=…)``, ``revoke_by_stamped_headers``, and
Flower's Revoke and Terminate buttons (which send ``revoke``). On its own, Celery obeys
these poorly for a push: a plain revoke does not touch a running task; terminate kills the
process running it mid-packet (prefork: no clean close, no bookmark, and a SIGTERM is
indistinguishable from a deploy) or fails outright (threads pool: no process to signal);
and a queued push's record would wait for a worker slot before anyone looked at it.

Every revoke reaches the main process of every worker (its pidbox), whatever the pool.
:func:`install` wraps Celery's two handlers there. Before Celery's own bookkeeping, each
push named is stopped the roomcast way (``JobStore.stop``): a queued one ends ``stopped``
at once (and ``REVOKED`` for Celery), a running one gets a :class:`~worker.stops.Stop`
in Redis that its control hub hears within milliseconds. The cause (revoke, terminate with
its signal, stamped headers) is recorded first, so what a signal meant is never guessed.
Celery's terminate then acts only as the backstop it is: on a push still running
:data:`TERMINATE_GRACE` later, the signal is sent as asked, and the record is ended
``stopped`` :data:`FINISH_AFTER` after that if the push could not say so itself.
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

from .celerystate import mark_revoked
from .jobs import State
from .messages import matches, parse_headers
from .services import get_store
from .stops import Stop, StopCause

log = logging.getLogger(__name__)

#: How long a push asked to stop by a terminate has before Celery's signal is sent. A push
#: leaves the room about 60 ms after it is asked (docs/benchmarks.md), and its hub cuts the
#: room connection 0.3 s after, whatever holds its thread up.
TERMINATE_GRACE = 1.0
#: After the signal, how long before the record of a push still ``running`` is ended.
FINISH_AFTER = 0.5

Handler = Callable[..., Any]


def install() -> None:
    """Wrap Celery's ``revoke`` and ``revoke_by_stamped_headers`` (worker main process)."""
    handlers = control.Panel.data
    for name, argument, named in (
        ("revoke", "task_id", _named_by_id),
        ("revoke_by_stamped_headers", "headers", _named_by_stamps),
    ):
        if not getattr(handlers[name], "roomcast", False):
            handlers[name] = _obeying(handlers[name], argument, named)


#: What a revoke names: the pushes, their stop, and the argument Celery's handler gets.
Named = tuple[list[str], Stop, Any]


def _obeying(celery_handler: Handler, argument: str, named: Callable[..., Named]) -> Handler:
    """Celery's handler, after the pushes it names were stopped the roomcast way."""

    @functools.wraps(celery_handler)
    def handler(state: Any, terminate: bool = False, signal: Any = None, **kwargs: Any) -> Any:
        ids, stop, given = named(kwargs.pop(argument, None), terminate, signal)
        stop_jobs(state, ids, stop)
        reply = celery_handler(state, terminate=False, signal=None, **{argument: given}, **kwargs)
        if terminate:
            _terminate_later(state, set(ids), signal, stop)
        return reply

    handler.roomcast = True  # type: ignore[attr-defined]
    return handler


def _named_by_id(task_id: Any, terminate: bool, signal: Any) -> Named:
    ids = sorted({str(i) for i in maybe_list(task_id) or []})
    if terminate:
        return ids, Stop(StopCause.TERMINATE, _signal_name(signal)), ids
    return ids, Stop(StopCause.REVOKE), ids


def _named_by_stamps(headers: Any, terminate: bool, signal: Any) -> Named:
    wanted = parse_headers(headers or {})
    described = ", ".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    try:
        ids = [job.request_id for job in get_store().live() if matches(job.doc, wanted)]
    except redis.RedisError as exc:
        log.warning("could not look for pushes stamped %s: %s", described, exc)
        ids = []
    return ids, Stop(StopCause.STAMPED, described), wanted


def stop_jobs(state: Any, ids: Collection[str], stop: Stop) -> None:
    """Stop each job named (ids that are not roomcast's pushes are left to Celery).

    Every worker receives the revoke and does this: ``JobStore.stop`` is idempotent, and
    only the call that ends a queued job announces it to Celery and Flower.
    """
    store = get_store()
    for request_id in ids:
        try:
            found = store.stop(request_id, stop)
            if found is State.QUEUED:
                log.info("push %s stopped while queued: %s", request_id, stop.reason)
                mark_revoked(state.app, request_id, stop.reason_queued, hostname=state.hostname)
            elif found is State.RUNNING:
                log.info("push %s asked to stop: %s", request_id, stop.reason)
        except redis.RedisError as exc:
            log.warning("could not stop push %s (%s): %s", request_id, stop.reason, exc)


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
