"""How the outside world tells a running pipeline to stop, and sends player commands.

A :class:`Control` is a self-pipe: ``request_stop`` only writes a byte, so it is safe to
call from another thread (a Redis listener) and from a signal handler (Celery's revoke
with ``terminate=True`` delivers SIGUSR1 to the process running the task). The pacer
waits on the pipe instead of sleeping, so a stop wakes it at once.

A stop is acted on by the push's own thread, between two packets. Where that thread is held
up in a call a stop cannot interrupt (the read of a live source that went silent waits up
to its read timeout; a room that stopped reading holds a write up to its write timeout),
whoever asked for the stop can end the publish itself a moment later with
:meth:`Control.cut_off`, and the room sees the user leave at once.
"""

from __future__ import annotations

import contextvars
import os
import queue
import select
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from jobs.commands import Command

from .spec import Target

T = TypeVar("T")
#: Applies a change to a fan-out push's rooms: a room to add, or the id of one to remove.
TargetHandler = Callable[[Target | None, str | None], None]


class Control:
    """Stop requests for one push; cheap to poll between packets."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        #: Why the push must stop: whatever the caller passed (roomcast's worker passes a
        #: ``jobs.stops.Stop``); the pipeline only hands it back in its result.
        self.stop_cause: object | None = None
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._cuts: list[Callable[[], None]] = []
        self._targets_lock = threading.Lock()
        self._on_targets: TargetHandler | None = None
        self._target_changes: list[tuple[Target | None, str | None]] = []

    def send(self, command: Command) -> None:
        """Queue a player command (switch, seek, pause…); read between packets. The push is
        woken, so that a switch does not wait for its next packet's time (at most one
        packet leaves early, within the pacing batch)."""
        self._commands.put(command)
        self.poke()

    def change_targets(self, add: Target | None = None, remove: str | None = None) -> None:
        """Add a room to a fan-out push, or remove one by its id (any thread). Changes made
        before the push's fan-out exists are applied when it does."""
        with self._targets_lock:
            handler = self._on_targets
            if handler is None:
                self._target_changes.append((add, remove))
                return
        handler(add, remove)

    def on_targets(self, handler: TargetHandler | None) -> None:
        """Have ``handler`` apply target changes from now on (the pending ones first)."""
        with self._targets_lock:
            self._on_targets = handler
            pending, self._target_changes = self._target_changes, []
        if handler is not None:
            for add, remove in pending:
                handler(add, remove)

    @property
    def has_commands(self) -> bool:
        """Whether commands wait to be read."""
        return not self._commands.empty()

    def commands(self) -> list[Command]:
        """The commands received since the last call, in order."""
        out: list[Command] = []
        while True:
            try:
                out.append(self._commands.get_nowait())
            except queue.Empty:
                return out

    @property
    def stop_requested(self) -> bool:
        """True once any stop was requested (the first cause wins)."""
        return self.stop_cause is not None

    @property
    def stop_reason(self) -> str | None:
        """The stop's cause as a sentence, for logs."""
        return None if self.stop_cause is None else str(self.stop_cause)

    def request_stop(self, cause: object = "stopped by request") -> None:
        """Ask the pipeline to stop after the packet in hand; async-signal-safe."""
        if self.stop_cause is None:
            self.stop_cause = cause
        if self._write_fd < 0:
            return  # closed: the descriptor number may already belong to something else
        try:
            os.write(self._write_fd, b"s")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the flag above is enough

    def poke(self) -> None:
        """Wake a ``wait()`` early without asking for a stop (the sender has news)."""
        if self._write_fd < 0:
            return
        try:
            os.write(self._write_fd, b"p")
        except (BlockingIOError, OSError):
            pass  # full: the waiter wakes anyway

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return early (True) when a stop is requested.

        A ``poke()`` also ends the sleep early, returning False.
        """
        if self.stop_requested:
            return True
        if timeout > 0:
            try:
                readable, _, _ = select.select([self._read_fd], [], [], timeout)
            except InterruptedError:
                readable = []
            if readable and not self.stop_requested:
                self._drain()
        return self.stop_requested

    @contextmanager
    def cuts_off(self, cut: Callable[[], None]) -> Iterator[None]:
        """While in the block, :meth:`cut_off` calls ``cut`` (which ends a publish)."""
        self._cuts.append(cut)
        try:
            yield
        finally:
            self._cuts.remove(cut)

    def cut_off(self) -> bool:
        """End the push's publish now, from another thread (not from a signal handler).

        For a stop that the push's thread has not acted on a moment after it was asked
        for: the thread is held up in a call a stop cannot interrupt. The room sees the
        user leave now, and the push ends as stopped once that call returns. False if
        there was no publish to end.
        """
        cuts = list(self._cuts)
        for cut in cuts:
            cut()
        return bool(cuts)

    def clear_pokes(self) -> None:
        """Forget pokes not yet seen by a ``wait()`` (a stop request stays)."""
        if self._read_fd >= 0:
            self._drain()

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 64):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Release the pipe (a late stop request then only sets the flag)."""
        fds, (self._read_fd, self._write_fd) = (self._read_fd, self._write_fd), (-1, -1)
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def call_until_stopped(
    control: Control, call: Callable[[], T], discard: Callable[[T], None]
) -> T | None:
    """``call()`` on a helper thread; its result, or None as soon as a stop is requested.

    For a call that blocks in FFmpeg, where a stop cannot reach it (opening a live source
    that is away waits for it up to the open timeout). A result that comes after the stop
    is handed to ``discard``; an exception the call raises is raised here.
    """
    if control.stop_requested:
        return None
    lock = threading.Lock()
    outcome: list[T] = []
    failure: list[BaseException] = []
    finished = abandoned = False

    def run() -> None:
        nonlocal finished
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
            failure.append(exc)
            kept = True
        else:
            with lock:
                kept = not abandoned
                if kept:
                    outcome.append(result)
            if not kept:
                discard(result)
        with lock:
            # With the flag, under the lock: the waiter clears this poke when it sees the
            # flag, so no later wait of the push wakes early on it.
            finished = True
            if kept and not abandoned:
                control.poke()

    context = contextvars.copy_context()  # the job's log context (request id, secrets)
    threading.Thread(
        target=context.run, args=(run,), name="roomcast-stoppable", daemon=True
    ).start()
    try:
        while True:
            stopped = control.wait(1.0)
            with lock:
                if finished:
                    control.clear_pokes()
                    if failure:
                        raise failure[0]
                    result, outcome[:] = outcome[0], []
                    return result
                if stopped:
                    return None
    finally:
        with lock:
            abandoned = True
            late, outcome[:] = outcome[:], []
        for result in late:  # a result not returned: left by an exception while waiting
            discard(result)
