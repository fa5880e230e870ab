"""Log lines that say what happened, with the request id on every line, never a secret."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .redact import redact_text

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_secrets_var: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "secrets", default=()
)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


@contextmanager
def job_context(request_id: str, secrets: tuple[str, ...] = ()) -> Iterator[None]:
    """Tag every log line in this block with ``request_id`` and mask ``secrets`` in it."""
    rid = request_id_var.set(request_id)
    sec = _secrets_var.set(tuple(s for s in secrets if s))
    try:
        yield
    finally:
        request_id_var.reset(rid)
        _secrets_var.reset(sec)


class JobContextFilter(logging.Filter):
    """Adds ``request_id`` to records and masks the job's secrets in the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate and scrub; never drops a record."""
        record.request_id = request_id_var.get()
        secrets = _secrets_var.get()
        if secrets:
            record.msg = redact_text(record.getMessage(), list(secrets))
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        data = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


_HANDLER_NAME = "roomcast"


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Send every log line to stderr in roomcast's format (API and workers alike)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Ours replaced, anyone else's (a test runner's capture) kept.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
    # FFmpeg's own chatter stays out unless asked for.
    logging.getLogger("libav").setLevel(logging.ERROR)
