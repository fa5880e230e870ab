"""roomcast's HTTP API: ``gunicorn "api:create_app()"``.

The Flask app factory follows the Flask docs' Celery pattern: a Celery client configured
from the app's settings (``celeryconfig.for_settings``) is kept in
``app.extensions["celery"]``, with the job store of the same settings; views only
validate, enqueue by task name, report and stop. ``create_app(settings)`` builds all of it
from the settings it is given, so a test varies a setting with Flask's test client.

The server's imports (Flask, Celery, PyAV…) are made inside the functions, not here: the
``roomcast`` command (``api.cli``) lives in this package, and importing them for every CLI
call would cost it about a second of start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from flask.typing import ResponseReturnValue

    from jobs.settings import Settings

#: Largest request body accepted (413 beyond): a push request is a few KiB, one fanning
#: out into 2 000 rooms with a UserSig each (about 500 bytes a room) about 1 MiB.
MAX_BODY_BYTES = 2 << 20


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; ``settings`` default to the ``ROOMCAST_*`` environment."""
    from functools import partial

    from celery import Celery
    from flask import Flask

    import celeryconfig
    from jobs.logs import configure_logging
    from jobs.settings import get_settings
    from jobs.store import open_store
    from worker.messages import send_delivery

    from . import scf
    from .console import bp as console_bp
    from .errors import register_error_handlers
    from .events import bp as events_bp
    from .events import follower_log
    from .keys import KeyRing
    from .metrics import bp as metrics_bp
    from .openapi import bp as openapi_bp
    from .player import bp as player_bp
    from .renditions import bp as renditions_bp
    from .targets import bp as targets_bp
    from .views import bp

    settings = settings or get_settings()
    # A malformed ROOMCAST_SDK_SECRET_KEYS stops the API at start, not at the first push.
    settings.secret_keys  # noqa: B018
    configure_logging(settings.log_level, settings.log_json)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # Everything from these settings: the Celery client (enqueue, revoke) and the job store.
    celery = Celery("roomcast", set_as_current=False)
    celery.config_from_object(celeryconfig.for_settings(settings))
    app.extensions["celery"] = celery
    app.extensions["roomcast.settings"] = settings
    # A stop of a queued push ends it here: its callback delivery is sent from here too.
    app.extensions["roomcast.store"] = open_store(
        settings, deliver=partial(send_delivery, celery, settings.events_queue)
    )
    app.extensions["roomcast.followers"] = follower_log(settings)
    app.extensions["roomcast.keys"] = KeyRing(settings.api_keys, settings.api_keys_file)
    register_error_handlers(app)
    scf.register(app)  # before the key check: SCF calls carry their own signature
    app.before_request(_check_api_key)
    app.before_request(_limit_streamed_body)
    app.register_blueprint(bp)
    app.register_blueprint(player_bp)
    app.register_blueprint(targets_bp)
    app.register_blueprint(renditions_bp)
    app.register_blueprint(events_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(console_bp)
    return app


def _check_api_key() -> ResponseReturnValue | None:
    from flask import current_app, g, request

    from jobs.errors import Unauthorized

    from .keys import ADMIN
    from .openapi import PUBLIC_PATHS

    settings = current_app.extensions["roomcast.settings"]
    keys = current_app.extensions["roomcast.keys"]
    path = request.path
    g.api_key = ADMIN
    if not keys.enabled or path in PUBLIC_PATHS or path.startswith("/static/"):
        return None
    if path == "/metrics" and settings.metrics_public:
        return None  # scrapers usually carry no key; ROOMCAST_METRICS_PUBLIC=false asks one
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    key = keys.find(token) if scheme.lower() == "bearer" else None
    if key is None:
        # The same answer whatever is wrong: nothing tells a guesser how close it came.
        raise Unauthorized("a valid 'Authorization: Bearer <key>' is required")
    if path == "/metrics" and not key.admin:
        raise Unauthorized("the service's metrics need a key for every app")
    g.api_key = key
    return None


def _limit_streamed_body() -> None:
    """413 for a chunked body (no Content-Length) that reaches MAX_BODY_BYTES.

    Werkzeug refuses a declared Content-Length over the limit, but silently cuts a chunked
    body at the limit, which would then fail as malformed JSON (400) instead.
    """
    from flask import request
    from werkzeug.exceptions import RequestEntityTooLarge

    if request.content_length is None and len(request.get_data(cache=True)) >= MAX_BODY_BYTES:
        raise RequestEntityTooLarge()


__all__ = ["create_app"]
