"""Small helpers shared by the launchers: finding binaries, stopping children, reading logs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

SETUP_HINT = "run scripts/setup to install the development dependencies"


class ChildServer:
    """A server the dev stack runs as a child process: ``with`` starts it, and stops it."""

    def start(self) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def find_binary(name: str, fallback: str) -> str:
    """Return the path of executable ``name`` from PATH, else ``fallback`` if it exists.

    The fallback matters because /usr/sbin is often missing from a normal user's PATH.

    Raises:
        FileNotFoundError: neither is available.
    """
    found = shutil.which(name)
    if found:
        return found
    if Path(fallback).is_file():
        return fallback
    raise FileNotFoundError(f"{name} not found (looked in PATH and at {fallback}); {SETUP_HINT}")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float = 5.0) -> None:
    """Terminate ``proc``, wait up to ``grace`` seconds, then kill it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last ``lines`` lines of a log file, or a note when it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
