"""moto's S3 server in its own process: a real HTTP S3 API for the shared rendition store's
tests, with fake credentials given to boto3 the way production gives real ones."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.ports import LOCALHOST, free_port, wait_for_port

ACCESS_KEY = "AKIAROOMCASTTESTS001"
SECRET_KEY = "roomcast-fake-secret-key-for-tests"
#: What boto3's chain reads: fake credentials, and nothing of the machine's (no profile,
#: no config file, no proxy between boto3 and the server).
ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "NO_PROXY": LOCALHOST,
}
#: Variables of the machine that would change what boto3 does.
UNSET = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY")


def aws_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a process that uses the server: :data:`ENV` in, :data:`UNSET` out."""
    kept = {k: v for k, v in env.items() if k.upper() not in UNSET}
    return kept | ENV


@contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """``python -m moto.server`` on a free port, until the block ends; its endpoint URL."""
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOCALHOST, "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(LOCALHOST, port, timeout=30)
            yield f"http://{LOCALHOST}:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)
