"""The default worker layout: how many Procfile ``worker`` processes a machine gets.

Measured with ``bench.concurrency`` (docs/benchmarks.md): many pushes per process in the
threads pool, about 25 each, and four processes per core. 200 remux pushes on two cores
take 0.5–0.9 of a core with pacing p99 under 50 ms in that layout; fewer, larger processes
fall behind (Python's GIL), and one push per prefork child costs about 60 MiB each. The
per-process part is Celery's ``worker_pool``/``worker_concurrency`` settings
(``ROOMCAST_WORKER_POOL``, ``ROOMCAST_WORKER_CONCURRENCY``: threads, 25); this module holds
the count, which ``scripts/dev`` hands to honcho (``-c worker=N``) and
``bench.concurrency`` starts by default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCFILE = REPO_ROOT / "Procfile"
#: Worker processes per core.
PROCESSES_PER_CORE = 4
#: Memory kept per worker process: its own (about 60 MiB idle) and 25 pushes' (3–9 MiB
#: each), with room to spare.
MEMORY_PER_PROCESS = 512 * 1024 * 1024


def worker_processes(environ: dict[str, str] | None = None) -> int:
    """How many worker processes to run: ``ROOMCAST_WORKER_PROCESSES``, else sized from
    this machine's cores (those this process may use) and memory."""
    env = os.environ if environ is None else environ
    given = env.get("ROOMCAST_WORKER_PROCESSES", "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"ROOMCAST_WORKER_PROCESSES must be a whole number ≥ 1, not {given!r}")
        return int(given)
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(PROCESSES_PER_CORE * cores, memory // MEMORY_PER_PROCESS))


def procfile_command(name: str, procfile: Path = PROCFILE) -> str:
    """The command line of process type ``name`` in the Procfile."""
    for line in procfile.read_text().splitlines():
        match = re.match(rf"^{re.escape(name)}:\s*(.+)$", line)
        if match:
            return match.group(1).strip()
    raise KeyError(f"{procfile} has no {name!r} process")
