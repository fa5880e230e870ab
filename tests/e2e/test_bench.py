"""The benchmarks keep working: their measuring parts, and tiny runs of the scripts.

Benchmarks are scripts, not timed assertions: nothing here checks a speed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import thread_cpu
from bench.concurrency import worker_setting
from bench.receiver import pacing_errors
from devstack.room import LocalRoom
from tests.stack import REPO


def bench(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bench.<module> ARGS`` from the repository; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_pacing_error_ignores_a_constant_delay() -> None:
    video = [(100.0 + 0.25 + n / 30, round(n * 1000 / 30)) for n in range(90)]
    assert max(pacing_errors(video)) < 0.001


def test_pacing_error_counts_early_and_late_frames_alike() -> None:
    video = [(n / 30 + (0.02 if n % 2 else -0.02), round(n * 1000 / 30)) for n in range(90)]
    errors = pacing_errors(video)
    assert min(errors) > 0.015 and max(errors) < 0.045


def test_pacing_error_leaves_out_the_first_second_when_asked() -> None:
    video = [(n / 30 + (1.0 if n < 10 else 0.0), round(n * 1000 / 30)) for n in range(90)]
    assert max(pacing_errors(video, skip=1.0)) < 0.001
    assert max(pacing_errors(video)) > 0.9


def test_the_concurrency_benchmark_runs_end_to_end_on_a_tiny_size(tmp_path: Path) -> None:
    keep = tmp_path / "records"  # made by the bench
    run = bench(
        "concurrency", "--pushes", "2", "--seconds", "3", "--receivers", "2", "--workers", "1",
        "--stops", "1", "--keep", str(keep), "--set", "ROOMCAST_PACE_BATCH_SECONDS=0.02",
        "--idle", "1", timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "the default command (Procfile worker line" in run.stdout
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 2 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["roomcast", "ffmpeg"], run.stdout
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")]
        assert cells[6] == "180/180", row  # every frame of both viewed pushes arrived
        assert cells[9] == "0", row  # none failed
    assert "stop → publisher gone" in run.stdout
    idle = re.search(r"idle \(1 s, no push running\): 1 workers (\S+) cores", run.stdout)
    assert idle is not None and 0 < float(idle.group(1)) < 0.5, run.stdout  # some, not busy
    kept = [json.loads(path.read_text()) for path in keep.glob("arrivals-*.json")]
    assert len(kept) == 2  # one record per side, each with both viewers
    assert all(len(record) == 2 for record in kept)


def test_the_classroom_benchmark_prepares_switches_and_ends_every_push(tmp_path: Path) -> None:
    run = bench(
        "concurrency", "--pushes", "2", "--seconds", "4", "--receivers", "1", "--workers", "1",
        "--stops", "0", "--classroom", "1.5", "--size", "320x240", timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "classroom: 3 clips prepared, a switch every 1.5 s" in run.stdout
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 2 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["roomcast", "ffmpeg"], run.stdout
    assert all(row.split("|")[9].strip() == "0" for row in rows), run.stdout  # none failed


def test_the_benchmark_room_cuts_no_hls(tmp_path: Path) -> None:
    with LocalRoom(tmp_path / "room", hls=False) as room:
        config = room.config_path.read_text()
    assert "hls off;" in config
    assert "hls on;" not in config


def test_a_worker_setting_for_the_bench_is_a_roomcast_name_and_value() -> None:
    assert worker_setting("ROOMCAST_PACE_BATCH_SECONDS=0.02") == (
        "ROOMCAST_PACE_BATCH_SECONDS",
        "0.02",
    )
    for wrong in ("ROOMCAST_PACE_BATCH_SECONDS", "PATH=/tmp"):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_setting(wrong)


def test_the_resume_benchmark_measures_both_sides_seams_on_a_tiny_size() -> None:
    run = bench("resume", "--trials", "1", "--seconds", "12", timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("|") for line in run.stdout.splitlines() if line.startswith("| re")]
    assert [(row[1].strip()[:4], row[2].strip()) for row in rows] == [
        ("remu", "roomcast"), ("remu", "ffmpeg"), ("re-e", "roomcast"), ("re-e", "ffmpeg")
    ], run.stdout  # fmt: skip
    assert all(row[3].strip() == "1/1" for row in rows), run.stdout
    seams = [int(line.split()[-1]) for line in run.stdout.splitlines() if "seams:" in line]
    # roomcast: a remux restarts on the keyframe at or before its bookmark (1 s GOP: up to
    # 25 frames again); a re-encode restarts on the frame after the last one viewers saw.
    assert -25 < seams[0] <= 0, run.stdout
    assert seams[2] == 0, run.stdout


def test_the_wake_cost_benchmark_prints_its_four_figures() -> None:
    run = bench("wake_cost", "--wakes", "3", timeout=60)
    run.check_returncode()
    figures = [line.rsplit(maxsplit=3)[1] for line in run.stdout.splitlines()]
    assert len(figures) == 4, run.stdout
    assert all(float(figure) > 0 for figure in figures), run.stdout


def test_the_thread_cpu_benchmark_finds_the_busy_thread_of_a_process() -> None:
    # A process whose thread ``spinner`` is busy and whose main thread sleeps.
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import threading, time\n"
            "def spin():\n    while True: pass\n"
            "threading.Thread(target=spin, name='spinner', daemon=True).start()\n"
            "time.sleep(60)",
        ]
    )
    try:
        time.sleep(0.3)
        cores = thread_cpu.cpu_by_name(busy.pid, 1.0)
    finally:
        busy.kill()
        busy.wait()
    busiest, used = cores.most_common(1)[0]
    if shutil.which("py-spy"):
        assert busiest == "spinner", cores
    else:  # every thread has the kernel's name, the process's
        assert len(cores) == 1, cores
    assert used > 0.1, cores
    assert sum(cores.values()) - used < 0.1, cores


def test_the_cpu_benchmark_measures_both_sides_and_the_segments_they_send() -> None:
    run = bench("cpu_per_push", "--seconds", "3", "--runs", "1", "--jobs", "remux", timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    row = next(line.split() for line in run.stdout.splitlines() if line.startswith("remux"))
    assert float(row[1]) > 0 and float(row[3]) > 0, run.stdout  # CPU of each side
    assert "n/a" not in row[7], f"no segment counts (is iproute2's ss installed?): {run.stdout}"
    ours, theirs = (float(side) for side in row[7].split("/"))
    # Not a speed: FFmpeg's RTMP client sends a chunk, a marker or a header per send(), and
    # roomcast sends each write whole (pipeline/rtmp.py); ffmpeg's command line does not.
    assert 0 < ours < theirs / 2, run.stdout


def test_the_rtmp_write_benchmark_prices_both_clients_and_the_plain_send() -> None:
    run = bench("rtmp_write", "--seconds", "2", "--size", "160x120", timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("|") for line in run.stdout.splitlines() if line.startswith("| ")]
    names = [row[1].strip() for row in rows[1:]]
    assert names == [
        "ffmpeg's RTMP client",
        "roomcast's RTMP client, chunks of 1360",
        "roomcast's RTMP client, chunks of 4096",
        "plain send, same bytes",
    ]
    assert "roomcast's client / FFmpeg's" in run.stdout


def test_cpu_per_push_refuses_a_job_it_does_not_know() -> None:
    run = bench("cpu_per_push", "--jobs", "remux,reencode", timeout=60)
    assert run.returncode == 2, run.stdout
    assert "unknown job reencode: choose from remux, re-encode" in run.stderr


def test_the_follower_benchmark_streams_to_every_follower_on_the_procfile_api() -> None:
    run = bench("sse", "--followers", "30", "--seconds", "2", "--rate", "20", timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    gevent, threads = run.stdout.split("web: ")[1:]
    assert "worker-class gevent" in gevent and "followers 30 of 30 streaming" in gevent
    assert "--threads 4" in threads
    held = re.search(r"followers (\d+) of 30 streaming", threads)
    assert held is not None and int(held.group(1)) <= 8, threads  # one per thread at most


def test_the_callback_benchmark_delivers_every_event_once() -> None:
    run = bench("callbacks", "--pushes", "1", "--clips", "1", "--seconds", "1", timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "events: 6 of 6 delivered, 0 redelivered, 0 failed verification" in run.stdout


def test_the_whip_benchmark_drops_both_publishes_and_sees_each_come_back() -> None:
    run = bench("whip", "--seconds", "6", "--size", "160x120", "--drop", "2", timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split("|") for line in run.stdout.splitlines() if line.startswith("| ")][1:]
    assert [row[1].strip() for row in rows] == [
        "RTMP (nginx-rtmp, FFmpeg viewer)",
        "WHIP (aiortc endpoint)",
    ]
    for row in rows:
        seen, sent = (int(n) for n in row[4].split("/"))
        # Pictures after the drop came: more than the two seconds before it.
        assert 3 * 25 < seen <= sent == 6 * 25, run.stdout
