"""roomcast's HTTP API: ``gunicorn "api:create_app()"``.

The Flask app factory follows the Flask docs' Celery pattern: the Celery app (from
``worker``) is kept in ``app.extensions["celery"]``; views only validate, enqueue, report
and stop.
"""

from __future__ import annotations

from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue

from worker import app as celery_app
from worker.logs import configure_logging
from worker.services import get_store
from worker.settings import Settings, get_settings

from .errors import ApiError, register_error_handlers
from .views import bp


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; ``settings`` default to the ``ROOMCAST_*`` environment."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["celery"] = celery_app
    app.extensions["roomcast.settings"] = settings
    app.extensions["roomcast.store"] = get_store()
    register_error_handlers(app)
    app.before_request(_check_api_key)
    app.register_blueprint(bp)
    return app


def _check_api_key() -> ResponseReturnValue | None:
    keys = current_app.extensions["roomcast.settings"].keys
    if not keys or request.path == "/healthz":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or token not in keys:
        raise ApiError(401, "Unauthorized", "a valid 'Authorization: Bearer <key>' is required")
    return None


__all__ = ["create_app"]
