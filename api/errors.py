"""How errors become HTTP answers, in one place.

Every error body is ``{"Error": {"Code", "Message"[, "Field" | "RequestId" | "State"]}}``:
each class of the tree (``jobs/errors.py``) carries its code, HTTP status and details.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from redis import RedisError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from jobs.errors import (
    FieldError,
    InvalidJob,
    RequestTooLarge,
    RoomcastError,
    ServiceUnavailable,
)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"Error": {"Code": code, "Message": message, **extra}}


def invalid_job_from(exc: ValidationError) -> InvalidJob:
    """The first problem of a request body, with the field it concerns."""
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    loc = err.get("loc") or ()
    field = str(loc[0]) if loc else None
    # Inside an object (Output.Width, Targets[2].UserId), the message names the member;
    # Field stays the top.
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or None
    if isinstance(cause, FieldError):
        if where:  # a rule across an inner object's fields (Targets[2]: RoomId or StrRoomId)
            return InvalidJob(f"{where}.{cause.field}: {cause}", field=field)
        return InvalidJob(str(cause), field=cause.field)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return InvalidJob(f"unknown field {where!r}", field=field)
    if kind == "missing":
        return InvalidJob(f"{where} is required", field=field)
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return InvalidJob(f"{where}: {message}" if where else message, field=field)


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn exceptions into JSON answers."""

    def answer(exc: RoomcastError) -> ResponseReturnValue:
        body = jsonify(error_body(exc.code, exc.message, **exc.details()))
        return body, exc.status, exc.headers()

    app.register_error_handler(RoomcastError, answer)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return answer(RequestTooLarge(f"the request body is larger than {limit} bytes"))

    @app.errorhandler(RedisError)
    def _redis_down(exc: RedisError) -> ResponseReturnValue:
        app.logger.error("Redis is unavailable: %s", exc)
        return answer(ServiceUnavailable("the job store (Redis) is unavailable; try again shortly"))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> ResponseReturnValue:
        code = (exc.name or "Error").replace(" ", "")
        # Werkzeug's own headers (a 405's Allow), without its HTML content type.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        body = jsonify(error_body(code, exc.description or exc.name or "error"))
        return body, exc.code or 500, headers
