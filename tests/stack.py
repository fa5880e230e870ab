"""Real processes for the tests: the Celery worker and the API, as the Procfile runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.layout import procfile_command
from devstack.ports import free_port, wait_for_port
from jobs.settings import Settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start one of the venv's programs in its own process group, output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_worker(
    env: dict[str, str], log: Path, name: str, concurrency: int = 2, pool: str = "prefork"
) -> subprocess.Popen[bytes]:
    """``celery -A worker worker`` and wait until it says it is ready."""
    # The pool and concurrency are settings (celeryconfig.py): Celery lets its
    # worker_pool setting win over -P prefork.
    env = dict(env, ROOMCAST_WORKER_POOL=pool, ROOMCAST_WORKER_CONCURRENCY=str(concurrency))
    proc = spawn(
        ["celery", "-A", "worker", "worker", "--loglevel", "INFO", "-P", pool,
         "--concurrency", str(concurrency), "--without-mingle", "--without-gossip", "-E",
         "--hostname", f"{name}@%h"],
        env, log,
    )  # fmt: skip
    return _ready(proc, log)


def start_procfile_worker(
    env: dict[str, str], log: Path, name: str, process: str = "worker"
) -> subprocess.Popen[bytes]:
    """A Procfile line (``worker``, or ``events`` for callback deliveries) as honcho runs it
    (a shell, ``HONCHO_PROCESS_NAME``): the default layout, or what
    ``ROOMCAST_WORKER_POOL``/``_CONCURRENCY`` in ``env`` say."""
    return _ready(spawn_procfile(process, dict(env, HONCHO_PROCESS_NAME=name), log), log)


def spawn_procfile(process: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A Procfile line as honcho runs it (a shell; the venv's programs on PATH)."""
    env = dict(env, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return spawn(["/bin/sh", "-c", f"exec {procfile_command(process)}"], env, log)


def _ready(proc: subprocess.Popen[bytes], log: Path) -> subprocess.Popen[bytes]:
    """Wait until the worker says it is ready."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited: {log.read_text()[-3000:]}")
        if " ready." in log.read_text(errors="replace"):
            return proc
        time.sleep(0.2)
    raise RuntimeError(f"the worker did not become ready: {log.read_text()[-3000:]}")


def start_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The API as the Procfile's ``web`` line runs it, on a free port; returns the process
    and its base URL."""
    port = free_port()
    proc = spawn_procfile("web", dict(env, PORT=str(port)), log)
    wait_for_port("127.0.0.1", port, 30)
    return proc, f"http://127.0.0.1:{port}"


def start_flower(
    env: dict[str, str], log: Path, basic_auth: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Flower on a free port, with HTTP basic auth (``user:password``) or an open API;
    returns the process and its base URL."""
    port = free_port()
    args = ["celery", "-A", "worker", "flower", "--address=127.0.0.1", f"--port={port}"]
    if basic_auth:
        proc = spawn([*args, f"--basic-auth={basic_auth}"], env, log)
    else:
        proc = spawn(args, dict(env, FLOWER_UNAUTHENTICATED_API="true"), log)
    wait_for_port("127.0.0.1", port, 30)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes], sig: int = 15, grace: float = 10) -> None:
    """Signal a process group and wait for it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@dataclass
class Answer:
    """An HTTP answer from the API."""

    status: int
    headers: dict[str, str]
    body: Any


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a process started with ``env`` reads (its ROOMCAST_* variables)."""
    fields = {
        name.removeprefix("ROOMCAST_").lower(): value
        for name, value in env.items()
        if name.startswith("ROOMCAST_")
    }
    return Settings(**fields)


class Api:
    """A tiny JSON client for the roomcast API."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request; HTTP errors come back as answers, not exceptions."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Answer(resp.status, dict(resp.headers), json.loads(resp.read() or b"null"))
        except urllib.error.HTTPError as err:
            return Answer(err.code, dict(err.headers), json.loads(err.read() or b"null"))

    def submit(self, **job: Any) -> str:
        """POST a job that must be accepted; return its request id."""
        answer = self.call("POST", "/v1/pushes", job)
        assert answer.status == 202, answer.body
        return str(answer.body["RequestId"])

    def status(self, request_id: str) -> dict[str, Any]:
        """The job's status object."""
        answer = self.call("GET", f"/v1/pushes/{request_id}")
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def wait_state(self, request_id: str, states: set[str], timeout: float = 30) -> dict[str, Any]:
        """Poll until the job reaches one of ``states``."""
        return self.wait_status(
            request_id, lambda s: s["State"] in states, f"a state in {sorted(states)}", timeout
        )

    def wait_duration(self, request_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll until a running job reports its source's duration (once its worker has
        opened the source: a moment after the job turns running, longer on a busy machine)."""
        return self.wait_status(
            request_id,
            lambda s: bool((s.get("Progress") or {}).get("Duration")),
            "its source's duration",
            timeout,
            while_running=True,
        )

    def wait_status(
        self,
        request_id: str,
        done: Callable[[dict[str, Any]], bool],
        awaited: str,
        timeout: float = 30,
        while_running: bool = False,
    ) -> dict[str, Any]:
        """Poll the job's status until ``done`` says so (``awaited``: what for, said when it
        does not come); ``while_running``: give up as soon as the job has ended."""
        started = time.monotonic()
        while True:
            status = self.status(request_id)
            if done(status):
                return status
            ended = while_running and status["State"] not in ("queued", "running")
            waited = time.monotonic() - started
            if ended or waited > timeout:
                raise AssertionError(
                    f"waited {waited:.1f} s for {awaited}; the job is {status['State']}: {status}"
                )
            time.sleep(0.1)


class ClientApi(Api):
    """:class:`Api` through Flask's test client of ``create_app(settings)``: for tests that
    only vary a setting, without a server process of their own."""

    def __init__(self, settings: Settings) -> None:
        from api import create_app  # noqa: PLC0415 - only tests that need it load Flask

        super().__init__("http://test-client")
        self._client = create_app(settings).test_client()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Send one request through the test client."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        resp = self._client.open(
            path,
            method=method,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return Answer(resp.status_code, dict(resp.headers), json.loads(resp.data or b"null"))
