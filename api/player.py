"""Player commands for a running switchable push: switch, queue, seek, pause, loop, volume,
tempo.

Each is ``POST /v1/pushes/<id>/<command>`` with a small JSON body, validated here and sent to
the push over its control channel; the push applies it between two packets. Answers: 202
(sent), 400 (bad body, field named), 404 (unknown id), 409 (not running, not switchable, or
nobody listening).

An ``Engine=cloud`` push takes switch (now), pause, resume, volume and tempo (TRTC's steps
only, else 400) without being switchable: its worker has TRTC do them
(``UpdateStreamIngest``, worker/cloud.py) and answers on the command's reply key, so the
answer is TRTC's: 200 with its RequestId, or 502 ``TrtcApiError`` with its code and message.
Other commands are 409 ``CommandNotSupported``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import (
    ValidationError,
)

from jobs.commands import (
    CLOUD_COMMANDS,
    COMMANDS,
    Command,
    Switch,
    Tempo,
    cloud_tempo_refusal,
    parse,
    to_message,
)
from jobs.errors import (
    CommandNotSupported,
    InvalidJob,
    NotFound,
    NotListening,
    NotRunning,
    NotSwitchable,
    TrtcApiError,
)
from jobs.settings import Settings
from jobs.states import State
from jobs.store import JobStore

from .errors import invalid_job_from
from .keys import visible_job

bp = Blueprint("player", __name__)


@bp.post("/v1/pushes/<request_id>/<command>")
def command(request_id: str, command: str) -> ResponseReturnValue:
    """Validate a player command and send it to the running push."""
    if command not in COMMANDS:
        raise NotFound(f"no command {command!r}; one of {', '.join(COMMANDS)}")
    store = cast(JobStore, current_app.extensions["roomcast.store"])
    job = visible_job(store, request_id)
    if job.state is not State.RUNNING:
        raise NotRunning(f"the push is {job.state.value}: commands need it running")
    cloud = job.record.Engine == "cloud"
    if cloud and command not in CLOUD_COMMANDS:
        raise CommandNotSupported(
            f"{command} needs Engine=worker: TRTC's cloud ingest (UpdateStreamIngest) takes "
            f"{', '.join(sorted(CLOUD_COMMANDS))} only"
        )
    if not cloud and not job.record.Switchable:
        raise NotSwitchable(
            "this push was not started switchable: give Playlist, Loop or Switchable=true"
        )
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise InvalidJob("the body must be a JSON object")
    settings = cast(Settings, current_app.extensions["roomcast.settings"])
    try:
        parsed = parse(command, body, settings.schemes)
    except ValidationError as exc:
        raise invalid_job_from(exc) from None
    if cloud and isinstance(parsed, Switch) and parsed.When != "now":
        raise InvalidJob(
            'Engine=cloud switches now only ("When": "now"): TRTC\'s cloud ingest keeps no '
            "queue of clips",
            field="When",
        )
    if cloud and isinstance(parsed, Tempo):
        # TRTC answers any other speed with an error (a 502): refused here, field named.
        if (refusal := cloud_tempo_refusal(parsed.Tempo)) is not None:
            raise InvalidJob(refusal, field="Tempo")
    if settings.block_private_addresses:
        from .views import guard_urls  # noqa: PLC0415 - views imports this blueprint's app

        guard_urls(parsed.urls())
    if cloud:
        return _in_cloud(store, settings, request_id, parsed)
    if not deliver(store, request_id, to_message(parsed)):
        raise NotListening("the push is not listening (its worker may be gone)")
    current_app.logger.info("push %s: command %s sent", request_id, command)
    response = jsonify({"RequestId": request_id, "Command": command, "Message": "command sent"})
    response.status_code = 202
    return response


def _in_cloud(
    store: JobStore, settings: Settings, request_id: str, command: Command
) -> ResponseReturnValue:
    """Send ``command`` to an Engine=cloud push and answer with what TRTC said.

    The push's worker calls UpdateStreamIngest and answers on the command's reply key. It
    looks between two status queries, each up to ROOMCAST_TRTC_TIMEOUT_SECONDS, so the
    answer is waited for two of those and a second; after that, 202 (sent: the outcome will
    be in the status's Trtc.Cloud.Update).
    """
    token = uuid.uuid4().hex
    if not deliver(store, request_id, to_message(command.replying_to(token))):
        raise NotListening("the push is not listening (its worker may be gone)")
    deadline = time.monotonic() + 2 * settings.trtc_timeout_seconds + 1
    while (reply := store.reply_of(token)) is None:
        if time.monotonic() >= deadline:
            current_app.logger.warning("push %s: no answer to %s yet", request_id, command.name)
            response = jsonify(
                {"RequestId": request_id, "Command": command.name, "Message": "command sent"}
            )
            response.status_code = 202
            return response
        time.sleep(0.05)
    refused = reply.get("Refused")
    if refused is not None:
        if refused.get("Code") == "CommandNotSupported":
            raise CommandNotSupported(refused["Message"])
        raise InvalidJob(refused["Message"], field=refused.get("Field"))
    outcome = reply["Trtc"]
    if outcome.get("Result") != "ok":
        raise TrtcApiError("UpdateStreamIngest", outcome, reply.get("Hint"))
    current_app.logger.info("push %s: %s done by TRTC", request_id, command.name)
    return jsonify(
        {
            "RequestId": request_id,
            "Command": command.name,
            "Message": "applied by TRTC's UpdateStreamIngest",
            "Trtc": outcome,
        }
    )


#: How long a command waits for the push to listen. A push shows ``running`` a moment before
#: its worker has subscribed to its commands, and a worker whose Redis connection dropped
#: subscribes again a second later; a command sent then is not lost.
LISTEN_WAIT_SECONDS = 2.0


def deliver(store: JobStore, request_id: str, message: dict[str, Any]) -> bool:
    """Publish ``message`` to the push, again while nobody listens; whether it got there.

    Publishing to no subscriber delivers nothing, so sending again never doubles a command.
    """
    deadline = time.monotonic() + LISTEN_WAIT_SECONDS
    while store.send_command(request_id, message) == 0:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
