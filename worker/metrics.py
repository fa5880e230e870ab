"""Per-worker metrics: each worker's main process beats its vital signs into Redis.

``GET /metrics`` (``api/metrics.py``) reads them back, labelled by worker, next to the
service-wide counters. Why a beat in Redis rather than an HTTP exporter in each worker: a
worker machine runs several prefork processes (and maybe several workers), which would each
need a port, a firewall rule and a Prometheus target kept in step with scaling; every worker
already reaches Redis, and the API already answers ``/metrics`` from Redis, so one scrape
target keeps covering every worker however many there are. What it costs: values are as
old as one beat (``ROOMCAST_HEARTBEAT_SECONDS``), which is plenty for gauges.

Keys::

    roomcast:workers             zset  worker name → time of its last beat (epoch s); a name
                                       silent for FORGET_SECONDS is dropped at the next read
    roomcast:worker:<name>       hash  Pid, Pool, Concurrency, Active, RssBytes, StartedAt,
                                       UpdatedAt; expires after ROOMCAST_WORKER_LOST_SECONDS

A worker whose hash has expired while its name is still in the index is *down*
(``roomcast_worker_up 0``): killed, hung, or cut off from Redis. A worker that shuts down
cleanly removes both, so a deploy raises no alarm.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobs.keys import PREFIX

log = logging.getLogger(__name__)

WORKERS_KEY = f"{PREFIX}workers"
#: How long a silent worker stays listed as down before it is forgotten: long enough for an
#: alert on ``roomcast_worker_up == 0`` to fire, short enough that renamed hosts fade away.
FORGET_SECONDS = 3600.0
#: How often a beat looks at the rendition cache's size.
CACHE_LOOK_SECONDS = 30.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def worker_key(name: str) -> str:
    """The hash holding one worker's latest beat."""
    return f"{PREFIX}worker:{name}"


@dataclass(frozen=True)
class WorkerSample:
    """One worker as /metrics shows it; the optional fields are None for a worker that is down."""

    name: str
    up: bool
    last_beat: float
    pid: int | None = None
    pool: str | None = None
    concurrency: int | None = None
    active: int | None = None
    rss_bytes: int | None = None
    started_at: float | None = None
    renditions: int | None = None
    rendition_bytes: int | None = None


def process_rss(pid: int) -> int | None:
    """Resident memory of one process in bytes (Linux ``/proc``), None when unreadable."""
    try:
        # statm's second field is the resident set in pages; cheaper to parse than status.
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid: int) -> list[int]:
    """The direct children of ``pid`` (for a prefork worker: its pool processes).

    Linux lists each thread's children in ``/proc/<pid>/task/<tid>/children``: a child is
    on the list of the thread that forked it, and billiard may fork a replacement from its
    supervisor thread. Reading every process on the machine instead, every 2 s, took 7% of
    the Python time of a worker carrying a dozen pushes (py-spy, docs/benchmarks.md); that
    is left for kernels without the lists (no ``CONFIG_PROC_CHILDREN``).
    """
    if not _lists_children():
        return _children_by_scan(pid)
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in threads:
        try:
            listed = Path(f"/proc/{pid}/task/{tid}/children").read_text()
        except OSError:
            continue  # the thread ended while we looked
        found.extend(int(child) for child in listed.split())
    return found


@cache
def _lists_children() -> bool:
    """Whether this kernel keeps the ``children`` lists (``CONFIG_PROC_CHILDREN``)."""
    return Path(f"/proc/self/task/{os.getpid()}/children").exists()


def stat_fields(path: str | Path) -> list[str] | None:
    """The fields of a ``/proc/<pid>/stat`` (or a thread's) after the command name.

    Field 1 of the result is the parent pid, 11 and 12 user and system time in clock ticks.
    None when the process or thread ended while we looked.
    """
    try:
        stat = Path(path).read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ")".
    return stat[stat.rfind(")") + 2 :].split()


def _children_by_scan(pid: int) -> list[int]:
    """The direct children of ``pid``, from every process's ``stat``."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = stat_fields(f"/proc/{entry}/stat")
        if fields is not None and len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


def worker_rss(pid: int, pool_processes: bool = True) -> int | None:
    """Resident memory of a worker: its main process plus its pool processes.

    Pages shared after fork count once per process, as in ``ps``: an upper bound, which is
    what capacity planning wants. ``pool_processes=False`` for a pool without processes
    (threads, solo): only the main process is read.
    """
    main = process_rss(pid)
    if main is None:
        return None
    if not pool_processes:
        return main
    return main + sum(process_rss(child) or 0 for child in children_of(pid))


class WorkerBeat(threading.Thread):
    """Writes this worker's vital signs every ``interval`` seconds until stopped."""

    def __init__(
        self,
        redis_url: str,
        name: str,
        pool: str,
        concurrency: int | None,
        active: Callable[[], int],
        interval: float,
        ttl: float,
        renditions: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """``active`` counts the pushes running now; ``ttl``: silence after which it is down;
        ``renditions`` tells what the machine's rendition cache holds (count, bytes)."""
        super().__init__(name="roomcast-worker-metrics", daemon=True)
        # Its own client, short timeouts and no retries: a beat that fails is simply the next
        # one's to write, and the goodbye at shutdown must not hold the exit up on a dead Redis
        # (process managers kill a worker a few seconds after SIGTERM).
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        self.worker = name
        self.pool = pool
        self.concurrency = concurrency
        self.active = active
        self.interval = interval
        self.ttl = ttl
        self.pid = os.getpid()
        self.started_at = time.time()
        self._stopped = threading.Event()
        self._renditions = renditions
        self._cache_seen: tuple[float, tuple[int, int]] | None = None

    def beat(self) -> None:
        """Write one beat (one round trip)."""
        now = time.time()
        fields: dict[str, str] = {
            "Pid": str(self.pid),
            "Pool": self.pool,
            "Active": str(self.active()),
            "StartedAt": f"{self.started_at:.3f}",
            "UpdatedAt": f"{now:.3f}",
        }
        if self.concurrency is not None:
            fields["Concurrency"] = str(self.concurrency)
        rss = worker_rss(self.pid, pool_processes=self.pool == "prefork")
        if rss is not None:
            fields["RssBytes"] = str(rss)
        usage = self._cache_usage(now)
        if usage is not None:
            fields["Renditions"], fields["RenditionBytes"] = map(str, usage)
        key = worker_key(self.worker)
        # MULTI/EXEC: a scrape never sees the hash between the delete and the write.
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)  # a field that could not be read this time must not linger
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]  # dict keys are invariant
        pipe.pexpire(key, max(1, int(self.ttl * 1000)))
        pipe.zadd(WORKERS_KEY, {self.worker: now})
        pipe.execute()

    def _cache_usage(self, now: float) -> tuple[int, int] | None:
        """The rendition cache's (count, bytes), looked at every CACHE_LOOK_SECONDS: it
        means walking a directory."""
        if self._renditions is None:
            return None
        if self._cache_seen is None or now - self._cache_seen[0] >= CACHE_LOOK_SECONDS:
            try:
                self._cache_seen = (now, self._renditions())
            except OSError:
                return None
        return self._cache_seen[1]

    def run(self) -> None:
        """Beat until stopped; a failed beat is logged and retried at the next one."""
        while not self._stopped.is_set():
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - metrics must never take a worker down
                log.warning("worker metrics: %s", exc)
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        """Stop beating and remove this worker's entries: a clean exit is not an outage."""
        self._stopped.set()
        if self.is_alive():
            # A beat in flight would write the entries back after they are removed; then the
            # worker would show as down for an hour.
            self.join(timeout=3)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(worker_key(self.worker))
            pipe.zrem(WORKERS_KEY, self.worker)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("worker metrics: could not remove %s: %s", self.worker, exc)
        finally:
            self.client.close()


_beat: WorkerBeat | None = None


def start_worker_beat(consumer: Any) -> WorkerBeat:
    """Start beating for the worker whose ``consumer`` is ready (Celery's worker_ready)."""
    from celery.worker import state  # noqa: PLC0415 - only worker processes need it

    from jobs.settings import get_settings  # noqa: PLC0415

    from .services import rendition_cache  # noqa: PLC0415

    global _beat
    if _beat is not None and _beat.is_alive():
        return _beat  # Celery sends worker_ready once; two beats would only double the writes
    settings = get_settings()
    # As -P names it: Celery's modules are prefork, solo, thread (-P threads)…
    module = type(consumer.pool).__module__.rsplit(".", 1)[-1]
    pool = {"thread": "threads"}.get(module, module)
    controller = getattr(consumer, "controller", None)
    concurrency = getattr(controller, "concurrency", None)
    _beat = WorkerBeat(
        settings.redis_url,
        str(consumer.hostname),
        pool,
        int(concurrency) if concurrency is not None else None,
        # The main process tracks the requests of every pool, prefork children included.
        active=lambda: len(state.active_requests),
        interval=settings.heartbeat_seconds,
        # Down after the same silence that makes a push "worker lost", and never before three
        # beats were missed.
        ttl=max(settings.worker_lost_seconds, 3 * settings.heartbeat_seconds),
        renditions=store.usage if (store := rendition_cache(settings)) is not None else None,
    )
    _beat.start()
    return _beat


def stop_worker_beat() -> None:
    """Stop this process's beat, if any (Celery's worker_shutdown)."""
    if _beat is not None:
        _beat.stop()


def read_workers(client: redis.Redis, now: float | None = None) -> list[WorkerSample]:
    """Every worker seen in the last FORGET_SECONDS, up or down, sorted by name."""
    now = time.time() if now is None else now
    client.zremrangebyscore(WORKERS_KEY, "-inf", now - FORGET_SECONDS)
    seen = cast("list[tuple[bytes, float]]", client.zrange(WORKERS_KEY, 0, -1, withscores=True))
    pipe = client.pipeline(transaction=False)
    for raw_name, _ in seen:
        pipe.hgetall(worker_key(raw_name.decode()))
    beats = cast("list[dict[bytes, bytes]]", pipe.execute())
    samples = []
    for (raw_name, last), raw in zip(seen, beats, strict=True):
        name = raw_name.decode()
        if not raw:
            samples.append(WorkerSample(name, up=False, last_beat=last))
            continue
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        samples.append(
            WorkerSample(
                name,
                up=True,
                last_beat=float(fields.get("UpdatedAt", last)),
                pid=_int(fields.get("Pid")),
                pool=fields.get("Pool"),
                concurrency=_int(fields.get("Concurrency")),
                active=_int(fields.get("Active")),
                rss_bytes=_int(fields.get("RssBytes")),
                renditions=_int(fields.get("Renditions")),
                rendition_bytes=_int(fields.get("RenditionBytes")),
                started_at=_float(fields.get("StartedAt")),
            )
        )
    return sorted(samples, key=lambda s: s.name)


def _int(raw: str | None) -> int | None:
    return int(raw) if raw else None


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None
