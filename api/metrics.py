"""``GET /metrics``: the whole service in Prometheus text format, read from Redis at scrape time.

The workers keep no HTTP server of their own: every worker process writes its pushes' state
and counters into Redis (``jobs.store.METRICS_KEY``, the job records), so one scrape of any
API process sees every worker. A scrape costs a handful of Redis calls: the per-state counts,
one hash of counters, and the progress of the running pushes (for lag and reconnects).

Per-worker gauges (``roomcast_worker_*{worker="<celery hostname>"}``) come from the beat each
worker's main process writes into Redis (``worker/metrics.py``, which says why not an HTTP
exporter per worker): one more round trip per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

from flask import Blueprint, Response, current_app
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from jobs.states import State
from jobs.store import JobStore
from worker.metrics import read_workers

bp = Blueprint("metrics", __name__)

#: At most this many running pushes are read for the lag and reconnect gauges; a scrape
#: must stay cheap even on a busy service.
RUNNING_SAMPLE = 1000
#: A fan-out room's states (pipeline/fanout.py), each shown even when no room is in it.
ROOM_STATES = ("connecting", "waiting", "live", "behind", "reconnecting", "failed")


class StoreCollector(Collector):
    """Turns the job store's counts and counters into metric families, on each scrape."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Every roomcast metric, read now."""
        stats = self.store.stats()
        yield _by_state(
            "roomcast_pushes",
            "Push records in each state (records are kept ROOMCAST_JOB_TTL_SECONDS).",
            stats,
        )
        yield GaugeMetricFamily(
            "roomcast_pushes_active", "Pushes running now.", value=stats[State.RUNNING.value]
        )

        counters = self.store.counters()
        yield CounterMetricFamily(
            "roomcast_pushes_created", "Pushes accepted.", value=counters.get("created", 0)
        )
        ended = CounterMetricFamily(
            "roomcast_pushes_ended", "Pushes that ended, by final state.", labels=["state"]
        )
        for state in State:
            if state.finished:
                ended.add_metric([state.value], counters.get(f"ended:{state.value}", 0))
        yield ended
        errors = CounterMetricFamily(
            "roomcast_push_errors", "Failed pushes by Error.Code.", labels=["code"]
        )
        for name, count in sorted(counters.items()):
            if name.startswith("error:"):
                errors.add_metric([name.removeprefix("error:")], count)
        yield errors
        yield CounterMetricFamily(
            "roomcast_sent_bytes",
            "Bytes sent to rooms, all pushes.",
            value=counters.get("sent_bytes", 0),
        )
        yield CounterMetricFamily(
            "roomcast_sent_frames",
            "Video frames sent to rooms, all pushes.",
            value=counters.get("sent_frames", 0),
        )

        for name, text in (
            ("rendition_hits", "Clips switchable pushes remuxed from a rendition."),
            ("rendition_misses", "Clips switchable pushes re-encoded (no rendition yet)."),
            ("renditions_written", "Renditions kept from a first play."),
            ("renditions_prepared", "Renditions encoded by POST /v1/renditions."),
        ):
            yield CounterMetricFamily(f"roomcast_{name}", text, value=counters.get(name, 0))
        yield from self._callbacks(counters)
        yield from self._running(stats[State.RUNNING.value])

    def _callbacks(self, counters: dict[str, int]) -> Iterator[Metric]:
        """The delivery of events to callback URLs (jobs/outbox.py)."""
        for name, key, text in (
            ("delivered", "callbacks_delivered", "Events a callback receiver acknowledged."),
            ("failures", "callback_failures", "Failed attempts to deliver an event."),
            ("given_up", "callbacks_given_up", "Pushes whose receiver was given up on."),
        ):
            yield CounterMetricFamily(
                f"roomcast_callbacks_{name}", text, value=counters.get(key, 0)
            )
        yield GaugeMetricFamily(
            "roomcast_callbacks_pending",
            "Pushes with events not yet delivered to their callback URL (retries included).",
            value=self.store.outbox.pending(),
        )

    def _running(self, running: int) -> Iterator[Metric]:
        """Gauges over the running pushes' latest progress."""
        lag = reconnects = 0.0
        rooms = dict.fromkeys(ROOM_STATES, 0)
        if running:
            for job in self.store.list(state=State.RUNNING, limit=RUNNING_SAMPLE):
                progress = job.progress or {}
                lag = max(lag, float(progress.get("Lag") or 0))
                reconnects += (progress.get("Source") or {}).get("Reconnects") or 0
                for room in (progress.get("Targets") or {}).values():
                    rooms[room["State"]] = rooms.get(room["State"], 0) + 1
        yield _by_state(
            "roomcast_fanout_rooms",
            "The rooms of the running fan-out pushes (Targets), by state: live, behind…",
            rooms,
        )
        yield GaugeMetricFamily(
            "roomcast_pacing_lag_max_seconds",
            "The largest pacing lag (behind the wall clock) among the running pushes.",
            value=lag,
        )
        yield GaugeMetricFamily(
            "roomcast_source_reconnects",
            "Live source reconnects so far, summed over the running pushes.",
            value=reconnects,
        )


def _by_state(name: str, documentation: str, counts: dict[str, int]) -> GaugeMetricFamily:
    """A gauge of ``counts`` labelled ``state``."""
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state, count in counts.items():
        family.add_metric([state], count)
    return family


class WorkerCollector(Collector):
    """Each worker's latest beat as gauges labelled ``worker`` (its Celery hostname)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Every worker seen lately: up or down, and the vital signs of those up."""
        workers = read_workers(self.store.redis)
        families = {
            "up": GaugeMetricFamily(
                "roomcast_worker_up",
                "1 while the worker beats; 0 once silent for ROOMCAST_WORKER_LOST_SECONDS "
                "(killed, hung or cut off from Redis). A worker that stops cleanly leaves.",
                labels=["worker"],
            ),
            "active": GaugeMetricFamily(
                "roomcast_worker_active_pushes", "Pushes the worker runs now.", labels=["worker"]
            ),
            "concurrency": GaugeMetricFamily(
                "roomcast_worker_concurrency",
                "Pushes the worker can run at once (pool size).",
                labels=["worker"],
            ),
            "rss": GaugeMetricFamily(
                "roomcast_worker_rss_bytes",
                "Resident memory of the worker's main and pool processes.",
                labels=["worker"],
            ),
            "renditions": GaugeMetricFamily(
                "roomcast_worker_renditions",
                "Renditions in the cache of the worker's machine (ROOMCAST_RENDITIONS_DIR).",
                labels=["worker"],
            ),
            "rendition_bytes": GaugeMetricFamily(
                "roomcast_worker_rendition_bytes",
                "Bytes of renditions in the cache of the worker's machine.",
                labels=["worker"],
            ),
            "started": GaugeMetricFamily(
                "roomcast_worker_start_time_seconds",
                "When the worker started (Unix time).",
                labels=["worker"],
            ),
            "seen": GaugeMetricFamily(
                "roomcast_worker_last_beat_seconds",
                "When the worker last wrote its metrics (Unix time).",
                labels=["worker"],
            ),
        }
        info = GaugeMetricFamily(
            "roomcast_worker_info",
            "Always 1; the worker's main process id and pool type as labels.",
            labels=["worker", "pid", "pool"],
        )
        for w in workers:
            families["up"].add_metric([w.name], 1 if w.up else 0)
            families["seen"].add_metric([w.name], w.last_beat)
            for key, value in (
                ("active", w.active),
                ("concurrency", w.concurrency),
                ("rss", w.rss_bytes),
                ("renditions", w.renditions),
                ("rendition_bytes", w.rendition_bytes),
                ("started", w.started_at),
            ):
                if value is not None:
                    families[key].add_metric([w.name], value)
            if w.up:
                info.add_metric([w.name, str(w.pid or ""), w.pool or ""], 1)
        yield from families.values()
        yield info


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus metrics of the whole service (every worker's pushes) and of each worker."""
    store = cast(JobStore, current_app.extensions["roomcast.store"])
    # A registry per scrape: the collector reads Redis, so there is no state to keep, and
    # the process-wide default registry would add this process's own metrics, which say
    # nothing about pushes.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    registry.register(WorkerCollector(store))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
