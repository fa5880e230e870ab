"""``GET /openapi.json`` and ``GET /docs``: the API described from the models that run it.

Request schemas are the pydantic models that validate requests (``PushRequest``, the player
commands of ``jobs.commands.COMMANDS``); response schemas are ``api.responses``; summaries are the
views' own docstrings. Nothing here repeats a field, so the document cannot drift from what
the API accepts. The docs page is Swagger UI, vendored from npm by ``scripts/setup`` into
``api/static/vendor/`` and served from here: the browser loads nothing from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import metadata
from typing import Any, cast

from flask import Blueprint, current_app, jsonify, send_from_directory
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from jobs.commands import COMMANDS
from jobs.preparations import Preparation
from jobs.records import ListQuery
from jobs.settings import Settings

from . import console, events, metrics, renditions, targets, views
from .models import PrepareRequest, PushRequest, TargetRequest
from .responses import (
    Accepted,
    CommandApplied,
    CommandSent,
    ErrorAnswer,
    Health,
    PrepareAccepted,
    PushList,
    PushStatus,
    Replayed,
    TargetSent,
)

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
#: The browser may load scripts, styles and data only from this API (no CDN, no validator
#: badge); Swagger UI sets inline styles and uses data: images, hence those two exceptions.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this API."""
    settings = cast(Settings, current_app.extensions["roomcast.settings"])
    keys = current_app.extensions["roomcast.keys"]
    return jsonify(document(keys.enabled, settings.metrics_public))


@bp.get("/docs")
def docs() -> ResponseReturnValue:
    """A browsable page of the API document (Swagger UI, served from this API)."""
    response = send_from_directory(cast(str, current_app.static_folder), "docs.html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@lru_cache(maxsize=4)
def document(with_auth: bool = False, metrics_public: bool = True) -> dict[str, Any]:
    """The OpenAPI document; ``with_auth``: calls need a bearer key (ROOMCAST_API_KEYS)."""
    schemas = _schemas()
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "roomcast",
            "version": _version(),
            "summary": "Push recorded video and live streams into TRTC rooms over RTMP.",
            "description": (
                "Start a push with the Tencent Cloud push-to-room template's request body, "
                "follow it, steer a switchable push, stop it. Every error answer is "
                '`{"Error": {"Code", "Message"[, "Field"]}}`.'
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
    if with_auth:
        doc["security"] = [{"bearerAuth": []}]
        for path, item in doc["paths"].items():
            if path in PUBLIC_PATHS or (path == "/metrics" and metrics_public):
                for operation in item.values():
                    operation["security"] = []  # answers without a key
    return doc


#: Paths that answer without an API key even when keys are configured: liveness, and the
#: API's documentation with the docs page's files under /static/ (the contract is no secret;
#: the page sends a key for the calls it tries), and the console page, which holds no data
#: (it asks the person for the key its calls need). /metrics: ROOMCAST_METRICS_PUBLIC.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/console"})


def _version() -> str:
    try:
        return metadata.version("roomcast")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "0"


def _schemas() -> dict[str, Any]:
    """Every model's JSON schema, with references between them as OpenAPI components."""
    models: list[type[BaseModel]] = [
        PushRequest,
        TargetRequest,
        TargetSent,
        *dict.fromkeys(COMMANDS.values()),
        Accepted,
        PushStatus,
        PushList,
        CommandApplied,
        CommandSent,
        events.ReplayRequest,
        Replayed,
        PrepareRequest,
        PrepareAccepted,
        Preparation,
        ErrorAnswer,
        Health,
    ]
    refs, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error answers, which all share one shape; what each status means is in README.md."""
    meaning = {
        400: "A bad request; Error.Field names the field to blame.",
        401: "API keys are configured and the bearer key is missing or wrong.",
        403: "The API key is scoped to other SdkAppIds (Error.Field: SdkAppId).",
        404: "No push with that id (or its record has expired, or it is another app's).",
        409: "A conflict with the push's state (see Error.Code).",
        413: "The body is larger than 64 KiB.",
        415: "The body is not sent as application/json.",
        429: "The SdkAppId's quota is used up; Retry-After says when to try again.",
        503: "Redis is unavailable; try again shortly.",
        502: (
            "TrtcApiError: TRTC refused the call made for this request; Error.Trtc has its "
            "code, message and RequestId."
        ),
    }
    return {str(s): _json(ErrorAnswer, meaning[s]) for s in statuses}


def _summary(documented: Callable[..., Any] | type) -> str:
    """The first line of a view's (or model's) docstring: the summary, kept with its code."""
    return (documented.__doc__ or "").strip().splitlines()[0].rstrip(".")


_ID = {
    "name": "RequestId",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The push's request id, as answered by the submit call.",
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """A query model's fields as OpenAPI query parameters (all optional)."""
    schema = model.model_json_schema(ref_template=REF)
    parameters = []
    for name, field in schema["properties"].items():
        description = field.pop("description", "")
        field.pop("title", None)
        parameters.append(_query(name, field, description))
    return parameters


def _paths() -> dict[str, Any]:
    submit = {
        "summary": _summary(views.submit),
        "tags": ["pushes"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(PushRequest)}},
        },
        "responses": {
            "202": {
                **_json(Accepted, "Accepted and queued."),
                "headers": {
                    name: {"schema": {"type": "string"}, "description": text}
                    for name, text in (
                        ("X-Request-Id", "The push's request id."),
                        ("x-scf-reqid", "The same, under the template's name."),
                        ("Location", "The push's status URL."),
                    )
                },
            },
            **_errors(400, 401, 403, 409, 413, 415, 503),
            "429": {
                **_errors(429)["429"],
                "headers": {
                    "Retry-After": {
                        "schema": {"type": "string"},
                        "description": "Seconds to wait before submitting again.",
                    }
                },
            },
        },
    }
    stop = _stop_operation("push", views.stop, PushStatus)
    paths: dict[str, Any] = {
        "/v1/pushes": {
            "post": {**submit, "operationId": "submitPush"},
            "get": {
                "operationId": "listPushes",
                "summary": _summary(views.listing),
                "tags": ["pushes"],
                "parameters": _query_parameters(ListQuery),
                "responses": {
                    "200": _json(PushList, "Pushes newest first, and the count in each state."),
                    **_errors(400, 401, 403, 503),
                },
            },
        },
        "/": {"post": {**submit, "operationId": "submitPushTemplate"}},
        "/v1/pushes/{RequestId}": {
            "get": {
                "operationId": "getPush",
                "summary": _summary(views.status),
                "tags": ["pushes"],
                "parameters": [_ID],
                "responses": {
                    "200": _json(PushStatus, "The push's status."),
                    **_errors(401, 404, 503),
                },
            },
            "delete": {**stop, "operationId": "deletePush"},
        },
        "/v1/pushes/{RequestId}/stop": {"post": {**stop, "operationId": "stopPush"}},
        "/v1/pushes/{RequestId}/events": _events_path(
            "push",
            events.events,
            "queued, running, succeeded, failed, stopped, clip-started, clip-ended…, and on "
            "fan-out pushes target-added, target-live, target-behind, target-reconnecting, "
            "target-failed, target-removed",
        ),
        "/v1/pushes/{RequestId}/events/replay": _replay_path("push", events.replay),
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": _summary(views.healthz),
                "tags": ["service"],
                "responses": {"200": _json(Health, "Up."), **_errors(503)},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": _summary(metrics.metrics),
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": _summary(openapi_json),
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "This document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "summary": _summary(docs),
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "HTML.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/console": {
            "get": {
                "operationId": "console",
                "summary": _summary(console.console),
                "tags": ["service"],
                "responses": {
                    "200": {
                        "description": "HTML.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    for name, model in COMMANDS.items():
        paths[f"/v1/pushes/{{RequestId}}/{name}"] = {"post": _command(name, model)}
    return paths | _target_paths() | _rendition_paths()


def _target_paths() -> dict[str, Any]:
    """A fan-out push's rooms while it runs (api/targets.py)."""
    conflicts = (
        "409: NotRunning, NotFanout (the push was not started with Targets), LastTarget "
        "(removing the only room left), NotListening."
    )
    return {
        "/v1/pushes/{RequestId}/targets": {
            "post": {
                "operationId": "addTarget",
                "summary": _summary(targets.add),
                "description": (
                    "400 names a bad member, a TargetId in use, or a room this UserId "
                    f"publishes into already. {conflicts}"
                ),
                "tags": ["fan-out"],
                "parameters": [_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(TargetRequest)}},
                },
                "responses": {
                    "202": _json(TargetSent, "Recorded and sent to the push."),
                    **_errors(400, 401, 404, 409, 413, 415, 503),
                },
            }
        },
        "/v1/pushes/{RequestId}/targets/{TargetId}": {
            "delete": {
                "operationId": "removeTarget",
                "summary": _summary(targets.remove),
                "description": f"404: no such push or target. {conflicts}",
                "tags": ["fan-out"],
                "parameters": [
                    _ID,
                    {
                        "name": "TargetId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "The room's TargetId (main: the push's own room).",
                    },
                ],
                "responses": {
                    "202": _json(TargetSent, "Recorded and sent to the push."),
                    **_errors(401, 404, 409, 503),
                },
            }
        },
    }


#: The tag of each kind of job's operations.
_TAGS = {"push": "pushes", "preparation": "renditions"}


def _rendition_paths() -> dict[str, Any]:
    """Preparing renditions ahead of class (api/renditions.py)."""
    stop = _stop_operation("preparation", renditions.stop, Preparation)
    return {
        "/v1/renditions": {
            "post": {
                "operationId": "prepareRenditions",
                "summary": _summary(renditions.prepare),
                "tags": ["renditions"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(PrepareRequest)}},
                },
                "responses": {
                    "202": _json(PrepareAccepted, "Recorded and queued."),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            }
        },
        "/v1/renditions/{RequestId}": {
            "get": {
                "operationId": "getPreparation",
                "summary": _summary(renditions.preparation),
                "tags": ["renditions"],
                "parameters": [{**_ID, "description": "The preparation's request id."}],
                "responses": {
                    "200": _json(Preparation, "The preparation, clip by clip."),
                    **_errors(401, 404, 503),
                },
            },
            "delete": {**stop, "operationId": "deletePreparation"},
        },
        "/v1/renditions/{RequestId}/stop": {"post": {**stop, "operationId": "stopPreparation"}},
        "/v1/renditions/{RequestId}/events": _events_path(
            "preparation",
            renditions.events,
            "queued, running, clip-ready, clip-failed, succeeded, failed, stopped",
        ),
        "/v1/renditions/{RequestId}/events/replay": _replay_path("preparation", renditions.replay),
    }


def _stop_operation(what: str, view: Callable[..., Any], status: type[BaseModel]) -> dict[str, Any]:
    """Stopping a push or a preparation (POST …/stop and DELETE)."""
    return {
        "summary": _summary(view),
        "tags": [_TAGS[what]],
        "parameters": [{**_ID, "description": f"The {what}'s request id."}],
        "responses": {
            "200": _json(status, f"The {what} has stopped (or had stopped already)."),
            "202": _json(status, "The stop is still under way."),
            **_errors(401, 404, 409, 503),
        },
    }


def _events_path(what: str, view: Callable[..., Any], names: str) -> dict[str, Any]:
    """The events stream of a push or a preparation."""
    tag = _TAGS[what]
    return {
        "get": {
            "operationId": f"{what}Events",
            "summary": _summary(view),
            "description": (
                "Server-sent events: `id` is the event's Id, `<RequestId>.<Seq>` (send it "
                f"back as Last-Event-ID to resume), `event` the event's name ({names}), "
                "`data` its JSON."
            ),
            "tags": [tag],
            "parameters": [
                {**_ID, "description": f"The {what}'s request id."},
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Continue after this event.",
                },
                _query("After", {"type": "string"}, "Continue after this event Id or Seq."),
            ],
            "responses": {
                "200": {
                    "description": f"The events, until the {what}'s final state.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(401, 404, 503),
            },
        }
    }


def _replay_path(what: str, view: Callable[..., Any]) -> dict[str, Any]:
    """Sending a push's or a preparation's events to its callback URL again."""
    tag = _TAGS[what]
    return {
        "post": {
            "operationId": f"replay{what.capitalize()}Events",
            "summary": _summary(view),
            "description": (
                f"Deliver the {what}'s events to its CallbackUrl again, from `From` on or "
                "from the first its receiver has not acknowledged; restarts retries that "
                "gave up."
            ),
            "tags": [tag],
            "parameters": [{**_ID, "description": f"The {what}'s request id."}],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref(events.ReplayRequest)}},
            },
            "responses": {
                "202": _json(Replayed, "The events are on their way again."),
                **_errors(400, 401, 404, 409, 503),
            },
        }
    }


def _command(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """A player command's operation; its body schema is the model that validates it."""
    return {
        "operationId": f"{name}Push",
        "summary": f"{name}: {_summary(model)}",
        "description": (
            "Only a running switchable push takes commands: 409 NotRunning, NotSwitchable or "
            "NotListening otherwise. An Engine=cloud push takes switch (now), pause, resume, "
            "volume and tempo (TRTC's steps), done by TRTC's UpdateStreamIngest: 200 with "
            "TRTC's answer, 502 TrtcApiError if TRTC refuses, 409 CommandNotSupported for the "
            "other commands."
        ),
        "tags": ["player"],
        "parameters": [_ID],
        "requestBody": {
            # pause and resume take no body at all.
            "required": bool(model.model_fields),
            "content": {"application/json": {"schema": _ref(model)}},
        },
        "responses": {
            "200": _json(CommandApplied, "Engine=cloud: TRTC did it (UpdateStreamIngest)."),
            "202": _json(CommandSent, "Sent to the push, which applies it between two packets."),
            **_errors(400, 401, 404, 409, 502, 503),
        },
    }
