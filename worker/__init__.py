"""roomcast's Celery app: ``celery -A worker worker`` runs push tasks.

Configuration comes from ``celeryconfig.py``, which reads ``ROOMCAST_*`` settings. Nothing here
loads the pipeline: the task and the worker's hooks are imported by worker processes only
(the task through ``include``, the hooks inside the signal handlers), so a Celery client
that imports this package (``celery -A worker control``, Flower) stays light.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from celery import Celery, signals

from jobs.logs import configure_logging
from jobs.settings import get_settings
from jobs.stops import Stop, StopCause

#: Seconds a thread may hold the GIL while another waits (Python's default is 5 ms).
SWITCH_INTERVAL = 0.0005

app = Celery("roomcast", include=["worker.tasks"])
app.config_from_object("celeryconfig")


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    # Our format (request id on every line, secrets masked) instead of Celery's.
    s = get_settings()
    configure_logging(s.log_level, s.log_json)


@signals.worker_init.connect
def _obey_celery_stops(**_: Any) -> None:
    # Celery's revoke, terminate and stamped revokes stop pushes on every pool
    # (worker/revokes.py). The worker's main process receives them, whatever the pool.
    from .revokes import install, on_dropped  # noqa: PLC0415 - worker processes only

    install()
    signals.task_revoked.connect(on_dropped, weak=False)


@signals.worker_init.connect
def _check_rendition_store(**_: Any) -> None:
    # A shared rendition store set without its client stops the worker at start, saying
    # so (SystemExit: Celery logs and ignores a handler's other exceptions).
    from .services import check_rendition_store  # noqa: PLC0415 - worker processes only

    check_rendition_store(get_settings())


@signals.worker_process_init.connect
def _pool_child_started(**_: Any) -> None:
    # Lets the runner claim SIGTERM in prefork children only (see control.signal_stops).
    from .control import mark_pool_child  # noqa: PLC0415 - worker processes only

    mark_pool_child()


@signals.worker_ready.connect
@signals.worker_process_init.connect
def _tune_for_many_pushes(**_: Any) -> None:
    # Measured with bench/concurrency.py, 50 pushes per process (docs/benchmarks.md):
    # A full garbage collection walks every object in the process, about 110 ms with
    # Celery, kombu, pydantic and PyAV loaded, during which no push sends. What is loaded
    # by now lives as long as the process, so it is moved out of the collector's sight.
    gc.freeze()
    # The shared sender (pipeline/sender.py) gives the GIL up for each room write and
    # then waits for it behind busy threads, up to one switch interval each time: at
    # Python's 5 ms, a pass over 50 rooms took up to 230 ms while pushes were starting.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))


@signals.worker_ready.connect
def _start_watchdog(**_: Any) -> None:
    # Every worker looks for pushes whose worker died, so one is handed back within
    # ROOMCAST_WORKER_LOST_SECONDS plus a few seconds even when nobody reads the status.
    from .control import start_outbox_sweeper, start_watchdog  # noqa: PLC0415

    start_watchdog()
    # Retries of callback deliveries, and deliveries whose task was lost (jobs/outbox.py).
    start_outbox_sweeper()


@signals.worker_ready.connect
def _start_worker_metrics(sender: Any, **_: Any) -> None:
    # This worker's vital signs for GET /metrics (worker/metrics.py says why through Redis):
    # a push worker's; an events worker's slots are no capacity for pushes.
    from .metrics import start_worker_beat  # noqa: PLC0415 - worker processes only

    if set(sender.app.amqp.queues.consume_from) != {get_settings().events_queue}:
        start_worker_beat(sender)


@signals.worker_shutdown.connect
def _stop_worker_metrics(**_: Any) -> None:
    # Sent once the worker has stopped (not from a signal handler, so Redis calls are fine).
    from .metrics import stop_worker_beat  # noqa: PLC0415 - worker processes only

    stop_worker_beat()


@signals.worker_ready.connect
def _not_stopping(sender: Any, **_: Any) -> None:
    # A worker restarted under the same name takes pushes again (see _stop_running_pushes).
    from .services import get_store  # noqa: PLC0415 - worker processes only

    get_store().mark_stopping(sender.hostname, stopping=False)


@signals.worker_shutting_down.connect
def _stop_running_pushes(sender: Any, **_: Any) -> None:
    # A warm shutdown would wait for running pushes to end, possibly for hours, and the
    # process manager would kill them long before. Stop them cleanly instead: each saves
    # its bookmark and is handed back to the queue for another worker. Sent in the main
    # process, which knows the running requests of every pool (prefork children included).
    from celery.worker import state

    from .control import stop_pushes  # noqa: PLC0415 - worker processes only
    from .messages import PUSH_TASK  # noqa: PLC0415

    # Pushes only: a callback delivery is short, and no job's record has its task id.
    ids = [request.id for request in list(state.active_requests) if request.name == PUSH_TASK]
    stop_pushes(get_settings().redis_url, str(sender), ids, Stop(StopCause.SHUTDOWN))


__all__ = ["app"]
