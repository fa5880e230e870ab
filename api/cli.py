"""``roomcast``: the command-line client of the HTTP API (README "CLI").

It talks to a running API only (``--api`` or ``ROOMCAST_API_URL``, key from ``--key`` or
``ROOMCAST_API_KEY``), with the standard library, so it works from any machine that can reach
the API. Data goes to stdout (a request id, a status as JSON, a table), people's messages and
the progress of ``--follow`` to stderr, so ``ID=$(roomcast push …)`` works.

Exit codes, for scripts: 0 success (with ``--follow``: the push succeeded), 1 the push failed
or was stopped (``--follow``), 2 usage error, 3 the API refused the call (its Error.Code,
Message and Field are printed), 4 the API could not be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, NoReturn, TextIO

OK, JOB_FAILED, USAGE, API_ERROR, UNREACHABLE, INTERRUPTED = 0, 1, 2, 3, 4, 130
DEFAULT_API = "http://127.0.0.1:8000"
#: How often --follow asks for the status: the worker reports about once a second.
POLL_SECONDS = 0.5
#: Without a terminal (a log, a CI job), --follow writes a line this often, and at every
#: state change, instead of redrawing one line.
LOG_EVERY_SECONDS = 2.0
FINISHED = ("succeeded", "failed", "stopped")
#: ``events`` takes a broken stream up again this many times in a row before giving up.
EVENT_RETRIES = 5
#: A subcommand: runs against the API, writes data to ``out`` and messages to ``err``.
Command = Callable[["Client", argparse.Namespace, TextIO, TextIO], int]


class ApiRefused(Exception):
    """The API answered with an error (4xx/5xx): its ``{"Error": …}`` body."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("Message", ""))
        self.status = status
        self.error = error


class Unreachable(Exception):
    """No answer from the API (refused, timed out, name not found…)."""


class Client:
    """A small JSON client of the roomcast API."""

    def __init__(self, base: str, key: str | None, timeout: float = 30) -> None:
        self.base = base.rstrip("/")
        self.key = key
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; the answer's status and JSON. Raises ApiRefused or Unreachable."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as err:
            answer = _json(err.read())
            error = answer.get("Error") if isinstance(answer, dict) else None
            if not isinstance(error, dict):  # not roomcast answering (a proxy's error page?)
                error = {"Code": f"HTTP{err.code}", "Message": f"unexpected answer: {err.reason}"}
            raise ApiRefused(err.code, error) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(f"cannot reach the API at {self.base}: {reason}") from None

    def events(self, path: str, last_id: str | None) -> Iterator[tuple[str, str]]:
        """A server-sent event stream: (id, data) of each event, until the server ends it.
        Raises ApiRefused or Unreachable (also when the stream breaks off)."""
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        req = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                event_id, data = "", []
                for raw in resp:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                    elif not line and data:
                        yield event_id, "\n".join(data)
                        data = []
        except urllib.error.HTTPError as err:
            answer = _json(err.read())
            error = answer.get("Error") if isinstance(answer, dict) else None
            raise ApiRefused(err.code, error or {"Code": f"HTTP{err.code}"}) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(f"the event stream from {self.base} broke off: {reason}") from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


# --- commands ----------------------------------------------------------------------------


def cmd_push(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Start a push; print its request id; with --follow, follow it until it ends."""
    body: dict[str, Any] = {
        "VideoSrc": args.src,
        "SdkAppId": args.sdkappid,
        "UserId": args.user,
        "Mode": args.mode,
        "Redis": args.redis,
    }
    if args.room_id is not None:
        body["RoomId"] = args.room_id
    else:
        body["StrRoomId"] = args.room
    optional = {
        "UserSig": args.usersig,
        "MaxDuration": args.max_duration,
        "Playlist": args.playlist or None,
        "Loop": args.loop,
        "Switchable": args.switchable or None,
        "Replace": args.replace or None,
        "Targets": args.target or ([] if args.fanout else None),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    _, answer = client.call("POST", "/v1/pushes", body)
    request_id = str(answer["RequestId"])
    print(request_id, file=out, flush=True)
    if not args.follow:
        return OK
    return follow(client, request_id, err)


def cmd_target_add(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Add a room to a running fan-out push; print its TargetId."""
    body = {**_room(args.room), "UserId": args.user}
    if args.usersig:
        body["UserSig"] = args.usersig
    if args.target_id:
        body["TargetId"] = args.target_id
    _, answer = client.call("POST", f"/v1/pushes/{_quote(args.id)}/targets", body)
    print(answer["TargetId"], file=out)
    return OK


def cmd_target_remove(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Remove a room from a running fan-out push."""
    client.call("DELETE", f"/v1/pushes/{_quote(args.id)}/targets/{_quote(args.target)}")
    print(f"{args.id}: target {args.target} removed", file=out)
    return OK


def _room(room: str) -> dict[str, Any]:
    """A room on the command line: a number is a RoomId, anything else (0123 too) a
    StrRoomId."""
    numeric = room.isascii() and room.isdigit() and not room.startswith("0")
    return {"RoomId": int(room)} if numeric else {"StrRoomId": room}


def _target(value: str) -> dict[str, Any]:
    """``--target ROOM:USERID[:USERSIG]`` as a Targets item."""
    room, _, rest = value.partition(":")
    user, _, sig = rest.partition(":")
    if not room or not user:
        raise argparse.ArgumentTypeError(f"a target is ROOM:USERID[:USERSIG], not {value!r}")
    return {**_room(room), "UserId": user, **({"UserSig": sig} if sig else {})}


def cmd_status(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a push's status as JSON; with --follow, follow it until it ends."""
    if args.follow:
        return follow(client, args.id, err)
    _, status = client.call("GET", f"/v1/pushes/{_quote(args.id)}")
    print(json.dumps(status, indent=2, ensure_ascii=False), file=out)
    return OK


def cmd_list(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List pushes newest first, as a table (or the API's JSON with --json)."""
    query = {"Limit": str(args.limit)}
    if args.state:
        query["State"] = args.state
    _, answer = client.call("GET", "/v1/pushes?" + urllib.parse.urlencode(query))
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False), file=out)
        return OK
    rows = [("REQUEST ID", "STATE", "ROOM", "USER", "PROGRESS", "CREATED")]
    for push in answer["Pushes"]:
        rows.append(
            (
                push["RequestId"],
                push["State"],
                str((push.get("Room") or {}).get("RtmpRoom", "")),
                str(push.get("UserId", "")),
                _position(push.get("Progress") or {}),
                str(push.get("CreatedAt") or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )
    stats = answer.get("Stats") or {}
    print(" · ".join(f"{state} {count}" for state, count in stats.items()), file=err)
    return OK


def cmd_stop(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Stop a push; 0 once stopped or while the stop is still under way (the API's 202)."""
    code, status = client.call("POST", f"/v1/pushes/{_quote(args.id)}/stop")
    if code == 202:
        print(f"{args.id}: stopping (still {status.get('State')})", file=out)
    else:
        print(f"{args.id}: {status.get('State')} ({status.get('Reason') or ''})", file=out)
    return OK


def cmd_events(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a push's events as JSON lines until its final one; 0 if it succeeded.

    A stream that breaks off (an API restart, a proxy's timeout) is taken up again after
    the last event printed, so none is printed twice or missed.
    """
    last = args.after
    path = f"/v1/pushes/{_quote(args.id)}/events"
    retries = 0
    while True:
        try:
            for event_id, data in client.events(path, last):
                print(data, file=out, flush=True)
                last, retries = event_id, 0
                state = json.loads(data).get("Event")
                if state in FINISHED:
                    return OK if state == "succeeded" else JOB_FAILED
        except Unreachable as exc:
            retries += 1
            if retries > EVENT_RETRIES:
                raise
            print(f"roomcast: {exc}; following again", file=err)
            time.sleep(min(retries, 5))
            continue
        # The stream ended without a final event: the push had ended before it.
        return OK


def cmd_replay(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Send a push's events to its callback URL again."""
    body = {"From": args.from_seq} if args.from_seq is not None else None
    _, answer = client.call("POST", f"/v1/pushes/{_quote(args.id)}/events/replay", body)
    print(f"{args.id}: events {answer['From']}..{answer['Events']} sent again", file=out)
    return OK


def cmd_prepare(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Prepare clips' renditions; print the request id; with --wait, wait until done."""
    body: dict[str, Any] = {"SdkAppId": args.sdkappid, "Clips": args.src}
    if args.size is not None:
        width, _, height = args.size.partition("x")
        body |= {"Width": int(width), "Height": int(height), "Fps": _number(args.fps)}
    if args.callback_url:
        body["CallbackUrl"] = args.callback_url
    _, answer = client.call("POST", "/v1/renditions", body)
    request_id = str(answer["RequestId"])
    print(request_id, file=out, flush=True)
    if not args.wait:
        return OK
    shown: list[str] = []
    while True:
        _, status = client.call("GET", f"/v1/renditions/{_quote(request_id)}")
        lines = [_clip_line(clip) for clip in status["Clips"]]
        for line in lines:
            if line not in shown:
                print(line, file=err, flush=True)
        shown = lines
        if status["State"] in FINISHED:
            return OK if status["State"] == "succeeded" else JOB_FAILED
        time.sleep(POLL_SECONDS)


def _clip_line(clip: dict[str, Any]) -> str:
    """One clip of a preparation, for people."""
    state = clip["State"]
    if state == "ready":
        state = "ready (cached)" if clip.get("Cached") else f"ready ({clip.get('Seconds')} s)"
    elif state == "failed":
        state = f"failed: {clip.get('Error')}"
    return f"{clip['VideoSrc']}: {state}"


def _command(name: str, body: Callable[[argparse.Namespace], dict[str, Any] | None]) -> Command:
    """A player verb: POST /v1/pushes/<id>/<name> with the body made from the arguments."""

    def run(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        client.call("POST", f"/v1/pushes/{_quote(args.id)}/{name}", body(args))
        print(f"{args.id}: {name} sent", file=out)
        return OK

    return run


def _number(value: float) -> int | float:
    """7.0 as 7: the API takes either, and a person reads 7 better."""
    return int(value) if float(value).is_integer() else value


# --- following a push --------------------------------------------------------------------


def follow(client: Client, request_id: str, err: TextIO) -> int:
    """Show a push's progress until it ends; 0 if it succeeded, 1 if it failed or stopped."""
    live = err.isatty()
    last_line = ""
    last_state = None
    last_logged = 0.0
    path = f"/v1/pushes/{_quote(request_id)}"
    try:
        while True:
            _, status = client.call("GET", path)
            state = status["State"]
            line = describe(status, unicode=live and _utf8(err))
            now = time.monotonic()
            if live:
                # One line redrawn in place; \x1b[K clears what a longer line left behind.
                err.write(f"\r{line}\x1b[K")
                err.flush()
            elif state != last_state or (
                now - last_logged >= LOG_EVERY_SECONDS and line != last_line
            ):
                print(line, file=err, flush=True)
                last_logged = now
            last_line, last_state = line, state
            if state in FINISHED:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        print(f"\nstopped following; the push goes on (roomcast stop {request_id})", file=err)
        return INTERRUPTED
    if live:
        err.write("\n")
    if state == "succeeded":
        return OK
    error = status.get("Error") or {}
    if error:
        print(f"push failed: {error.get('Code')}: {error.get('Message')}", file=err)
    else:
        print(f"push {state}: {status.get('Reason') or ''}", file=err)
    return JOB_FAILED


def describe(status: dict[str, Any], unicode: bool = False, width: int = 24) -> str:
    """One line: a bar of position/duration, the positions, the bit rate and the state."""
    progress = status.get("Progress") or {}
    parts = []
    position, duration = progress.get("Position"), progress.get("Duration")
    if position is not None and duration:
        done = max(0, min(width, round(width * position / duration)))
        full, empty = ("█", "░") if unicode else ("#", "-")
        parts.append(f"[{full * done}{empty * (width - done)}]")
    if progress.get("Position") is not None:
        parts.append(_position(progress))
    if progress.get("Bitrate"):
        parts.append(f"{progress['Bitrate'] / 1e6:.2f} Mbit/s")
    parts.append(status["State"])
    if status["State"] in FINISHED and status.get("Reason"):
        parts.append(f"({status['Reason']})")
    return "  ".join(parts)


def _position(progress: dict[str, Any]) -> str:
    position, duration = progress.get("Position"), progress.get("Duration")
    if position is None:
        return ""
    if duration:
        return f"{position:.1f}/{duration:.1f} s"
    return f"{position:.1f} s"


def _utf8(stream: TextIO) -> bool:
    return (getattr(stream, "encoding", "") or "").lower().replace("-", "") == "utf8"


def _quote(request_id: str) -> str:
    return urllib.parse.quote(request_id, safe="")


# --- arguments ---------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    """The command line: global options, then one subcommand."""
    # --api/--key are accepted before or after the subcommand; SUPPRESS keeps a subcommand's
    # unset copy from hiding a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        default=argparse.SUPPRESS,
        help=f"API base URL (default: ROOMCAST_API_URL or {DEFAULT_API})",
    )
    common.add_argument(
        "--key", default=argparse.SUPPRESS, help="API key (default: ROOMCAST_API_KEY)"
    )
    main = argparse.ArgumentParser(
        prog="roomcast",
        parents=[common],
        description="Push videos and live streams into TRTC rooms through a roomcast API.",
        epilog="Exit codes: 0 ok, 1 the followed push failed or was stopped, 2 usage error, "
        "3 the API refused the call, 4 the API is unreachable.",
    )
    main.add_argument("--version", action="version", version=f"roomcast {_version()}")
    sub = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = add("push", cmd_push, "start a push into a room")
    p.add_argument(
        "src", metavar="SRC", help="source URL: a media file, HLS playlist or rtmp stream"
    )
    room = p.add_mutually_exclusive_group(required=True)
    room.add_argument("--room", help="string room id (StrRoomId)")
    room.add_argument("--room-id", type=int, help="numeric room id (RoomId)")
    p.add_argument("--user", required=True, help="the pushing user's id (UserId)")
    p.add_argument("--sdkappid", type=int, help="TRTC application id (default: ROOMCAST_SDKAPPID)")
    p.add_argument(
        "--usersig",
        help="the user's UserSig (default: ROOMCAST_USERSIG; may be left out when the API "
        "holds the application's key)",
    )
    p.add_argument("--mode", choices=["vod", "live"], default="vod")
    p.add_argument("--redis", action="store_true", help="save progress and resume from it")
    p.add_argument("--max-duration", type=float, help="stop after this many seconds of output")
    p.add_argument(
        "--playlist", action="append", metavar="URL", help="a clip to play after SRC (repeatable)"
    )
    p.add_argument("--loop", choices=["none", "last", "all"], help="at the end of the clips")
    p.add_argument("--switchable", action="store_true", help="accept player commands")
    p.add_argument(
        "--replace", action="store_true", help="replace this user's running push in the room"
    )
    p.add_argument(
        "--target",
        action="append",
        type=_target,
        metavar="ROOM:USERID[:USERSIG]",
        help="one more room to publish into (repeatable; fan-out); digits are a RoomId",
    )
    p.add_argument(
        "--fanout", action="store_true", help="fan out (Targets), even with no --target yet"
    )
    p.add_argument("--follow", "-f", action="store_true", help="show progress until the push ends")

    p = add("prepare", cmd_prepare, "encode clips once so that switchable pushes remux them")
    p.add_argument("src", metavar="URL", nargs="+", help="http(s) URLs of the clips")
    p.add_argument("--sdkappid", type=int, help="TRTC application id (default: ROOMCAST_SDKAPPID)")
    p.add_argument(
        "--size",
        metavar="WxH",
        type=_size,
        help="the rendition format's picture size (with --fps; default: the first clip's)",
    )
    p.add_argument("--fps", type=float, default=25.0, help="with --size (default 25)")
    p.add_argument("--wait", "-w", action="store_true", help="wait until every clip is ready")
    p.add_argument(
        "--callback-url", metavar="URL", help="where to POST the preparation's events, signed"
    )

    p = add("status", cmd_status, "show a push's status (JSON)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--follow", "-f", action="store_true", help="show progress until the push ends")

    p = add("list", cmd_list, "list pushes, newest first")
    p.add_argument("--state", choices=["queued", "running", *FINISHED])
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="the API's JSON instead of a table")

    p = add("stop", cmd_stop, "stop a push")
    p.add_argument("id", metavar="ID")

    p = add("target-add", cmd_target_add, "add a room to a running fan-out push")
    p.add_argument("id", metavar="ID")
    p.add_argument("room", metavar="ROOM", help="the room: digits are a RoomId, else StrRoomId")
    p.add_argument("user", metavar="USERID", help="the user publishing into it")
    p.add_argument("--usersig", help="that user's UserSig (may be left out as for push)")
    p.add_argument("--target-id", metavar="T", help="your id for the room (default t1, t2…)")

    p = add("target-remove", cmd_target_remove, "remove a room from a running fan-out push")
    p.add_argument("id", metavar="ID")
    p.add_argument("target", metavar="TARGETID")

    p = add("events", cmd_events, "follow a push's events, one JSON object per line")
    p.add_argument("id", metavar="ID")
    p.add_argument("--after", metavar="EVENT_ID", help="start after this event Id (or Seq)")

    p = add("replay", cmd_replay, "send a push's events to its callback URL again")
    p.add_argument("id", metavar="ID")
    p.add_argument("--from", dest="from_seq", type=int, metavar="SEQ", help="from this Seq on")

    switch = _command(
        "switch",
        lambda a: {"VideoSrc": a.src, "When": "end" if a.at_end else "now", "ClipId": a.clip_id},
    )
    p = add("switch", switch, "play another clip now (or when the current one ends)")
    p.add_argument("id", metavar="ID")
    p.add_argument("src", metavar="SRC")
    p.add_argument("--at-end", action="store_true", help="when the current clip ends")
    p.add_argument("--clip-id", metavar="NAME", help="your id for the clip, in its events")

    queue = _command("queue", lambda a: {"Action": a.action, "Sources": a.src})
    p = add("queue", queue, "append to, replace or clear the clips waiting after the current one")
    p.add_argument("id", metavar="ID")
    p.add_argument("src", metavar="SRC", nargs="*")
    p.add_argument("--action", choices=["append", "replace", "clear"], default="append")

    for verb, text in (("pause", "hold the picture, silent"), ("resume", "continue playing")):
        p = add(verb, _command(verb, lambda a: None), text)
        p.add_argument("id", metavar="ID")

    seek = _command("seek", lambda a: {"Position": _number(a.seconds)})
    p = add("seek", seek, "jump within the current clip")
    p.add_argument("id", metavar="ID")
    p.add_argument("seconds", metavar="SECONDS", type=float)

    volume = _command("volume", lambda a: {"Volume": _number(a.percent)})
    p = add("volume", volume, "set the volume, percent of the recording (0-200)")
    p.add_argument("id", metavar="ID")
    p.add_argument("percent", metavar="PERCENT", type=float)

    tempo = _command("tempo", lambda a: {"Tempo": _number(a.speed)})
    p = add("tempo", tempo, "set the playback speed (0.5-2.0), pitch kept")
    p.add_argument("id", metavar="ID")
    p.add_argument("speed", metavar="SPEED", type=float)

    p = add("loop", _command("loop", lambda a: {"Loop": a.mode}), "what to repeat")
    p.add_argument("id", metavar="ID")
    p.add_argument("mode", metavar="MODE", choices=["none", "clip", "last", "all"])
    return main


def _version() -> str:
    try:
        return metadata.version("roomcast")
    except metadata.PackageNotFoundError:
        return "0"


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run one command and exit with its code."""
    sys.exit(run(argv))


def run(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Parse ``argv``, run the command, return the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    cli = parser()
    args = cli.parse_args(argv)  # exits 2 on a usage error, as argparse does
    if args.command in ("push", "prepare"):
        args.sdkappid = (
            args.sdkappid if args.sdkappid is not None else _env_int(cli, "ROOMCAST_SDKAPPID")
        )
        if args.sdkappid is None:
            cli.error(f"{args.command} needs --sdkappid (or ROOMCAST_SDKAPPID)")
    if args.command == "push":
        args.usersig = args.usersig or os.environ.get("ROOMCAST_USERSIG") or None
    base = getattr(args, "api", None) or os.environ.get("ROOMCAST_API_URL") or DEFAULT_API
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        cli.error(f"--api must be an http(s) URL, not {base!r}")
    key = getattr(args, "key", None) or os.environ.get("ROOMCAST_API_KEY") or None
    client = Client(base, key)
    try:
        return int(args.run(client, args, out, err))
    except ApiRefused as refused:
        error = refused.error
        field = f" (field {error['Field']})" if error.get("Field") else ""
        print(f"roomcast: {error.get('Code')}: {error.get('Message')}{field}", file=err)
        return API_ERROR
    except Unreachable as exc:
        print(f"roomcast: {exc}", file=err)
        return UNREACHABLE
    except KeyboardInterrupt:
        return INTERRUPTED


def _size(value: str) -> str:
    width, x, height = value.partition("x")
    if not (x and width.isdigit() and height.isdigit()):
        raise argparse.ArgumentTypeError(f"a size is WIDTHxHEIGHT, like 1280x720, not {value!r}")
    return value


def _env_int(cli: argparse.ArgumentParser, name: str) -> int | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        cli.error(f"{name} must be an integer, not {raw!r}")
