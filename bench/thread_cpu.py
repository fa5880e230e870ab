"""CPU per thread of a running process, added up by thread name: where a worker's time goes.

    .venv/bin/python -m bench.thread_cpu PID [--seconds 15]

Reads each thread's user + system time from ``/proc/PID/task/*/stat`` twice, ``--seconds``
apart, so native time (FFmpeg, the kernel's TCP) counts with the Python that caused it,
which a sampling profiler's ``--gil`` view leaves out. Python 3.11 leaves the kernel's name
of every thread at the process's, so the Python names come from ``py-spy dump`` when py-spy
is on PATH (``pip install py-spy`` into any venv); without it, threads are named by the
kernel. Hex runs and pool numbers in names (``ThreadPoolExecutor-0_12``) are folded, so
that threads of one kind add up. No reference command: this explains bench.concurrency's
totals, it does not compete.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from worker.metrics import stat_fields

_TICKS = os.sysconf("SC_CLK_TCK")


def thread_ticks(pid: int) -> dict[int, int]:
    """Each thread's user + system CPU so far, in clock ticks, by thread id."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = stat_fields(task / "stat")
        if fields is not None:  # else the thread ended meanwhile
            ticks[int(task.name)] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def thread_names(pid: int, tids: Iterable[int]) -> dict[int, str]:
    """Thread id → name: Python's (through py-spy) where possible, else the kernel's."""
    names = {}
    for tid in tids:
        try:
            names[tid] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            pass
    spy = shutil.which("py-spy")
    if spy is not None:
        dump = subprocess.run([spy, "dump", "-p", str(pid)], capture_output=True, text=True)
        for match in re.finditer(
            r'^Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]*)"', dump.stdout, re.M
        ):
            names[int(match[1], 0)] = match[2]
    return {tid: re.sub(r"[0-9a-f]{8,}|(?<=_)\d+$", "…", name) for tid, name in names.items()}


def cpu_by_name(pid: int, seconds: float) -> Counter[str]:
    """Cores each kind of thread used over ``seconds``."""
    before = thread_ticks(pid)
    time.sleep(seconds)
    after = thread_ticks(pid)
    names = thread_names(pid, after)
    cores: Counter[str] = Counter()
    for tid, ticks in after.items():
        used = ticks - before.get(tid, ticks)
        cores[names.get(tid, str(tid))] += used / _TICKS / seconds
    return cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    cores = cpu_by_name(args.pid, args.seconds)
    total = sum(cores.values())
    print("| thread | cores | share |\n|---|---|---|")
    for name, used in cores.most_common():
        print(f"| {name} | {used:.4f} | {used / total if total else 0:.1%} |")
    print(f"| all | {total:.4f} | 100% |")


if __name__ == "__main__":
    main()
