"""How errors become HTTP answers, in one place.

Every error body is ``{"Error": {"Code", "Message"[, "Field"]}}``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from redis import RedisError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pipeline.errors import InvalidJob
from worker.jobs import PublisherBusy

from .models import FieldError


class ApiError(Exception):
    """An answer other than success: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"Error": {"Code": code, "Message": message, **extra}}


def invalid_job_from(exc: ValidationError) -> InvalidJob:
    """The first problem of a request body, with the field it concerns."""
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):
        return InvalidJob(str(cause), field=cause.field)
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else None
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return InvalidJob(f"unknown field {field!r}", field=field)
    if kind == "missing":
        return InvalidJob(f"{field} is required", field=field)
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return InvalidJob(f"{field}: {message}" if field else message, field=field)


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn exceptions into JSON answers."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> ResponseReturnValue:
        return jsonify(error_body(exc.code, exc.message, **exc.extra)), exc.status

    @app.errorhandler(InvalidJob)
    def _invalid(exc: InvalidJob) -> ResponseReturnValue:
        extra = {"Field": exc.field} if exc.field else {}
        return jsonify(error_body(exc.code, exc.message, **extra)), 400

    @app.errorhandler(PublisherBusy)
    def _busy(exc: PublisherBusy) -> ResponseReturnValue:
        return jsonify(error_body(exc.code, exc.message, RequestId=exc.holder)), 409

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return jsonify(
            error_body("RequestTooLarge", f"the request body is larger than {limit} bytes")
        ), 413

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError) -> ResponseReturnValue:
        app.logger.error("Redis is unavailable: %s", exc)
        return jsonify(
            error_body(
                "ServiceUnavailable", "the job store (Redis) is unavailable; try again shortly"
            )
        ), 503

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "Error").replace(" ", "")
        return jsonify(error_body(code, exc.description or exc.name or "error")), exc.code or 500
