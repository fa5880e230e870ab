"""Push one source into one RTMP URL with roomcast's pipeline (what a worker runs)."""

from __future__ import annotations

import argparse
import itertools
import threading
import time
from dataclasses import replace
from pathlib import Path

from jobs.commands import Switch
from pipeline import Control, PushSpec, push
from pipeline.rendition_cache import RenditionCache
from pipeline.sink import RTMP_CLIENTS
from pipeline.spec import Target


def server_of(room: int, servers: int) -> int:
    """Which of ``servers`` rooms' servers fan-out room number ``room`` is on."""
    return room % servers


def main() -> None:
    """``python -m bench.push_one SOURCE TARGET [--batch SECONDS] [--rtmp-client NAME]
    [--switch-every SECONDS --clips URL… [--renditions DIR] --seconds SECONDS]``

    With ``--switch-every``, a switchable push that switches to the next of ``--clips``
    (round robin) that often, for ``--seconds``. ``--renditions``: the rendition cache's
    directory (none: renditions off).
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--batch", type=float, default=None, help="send batch, seconds")
    parser.add_argument("--rtmp-client", choices=RTMP_CLIENTS, default=None)
    parser.add_argument("--switch-every", type=float, default=None)
    parser.add_argument("--clips", nargs="*", default=[])
    parser.add_argument("--renditions", default=None)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--no-shared-sender", action="store_true", help="pace from the push's own thread"
    )
    parser.add_argument(
        "--fanout", type=int, default=None, help="publish to N rooms: TARGET's room _0 … _N-1"
    )
    parser.add_argument("--pictures-per-send", type=int, default=None, help="with --fanout")
    parser.add_argument("--also", nargs="*", default=[], help="with --fanout: more room URLs")
    parser.add_argument(
        "--servers",
        nargs="*",
        default=[],
        help="with --fanout: more rtmp://host:port/app bases; room n on base n mod (1 + these)",
    )
    args = parser.parse_args()
    spec = PushSpec(source=args.source, target=args.target, max_duration=args.seconds)
    if args.batch is not None:
        spec = replace(spec, pace_batch=args.batch)
    if args.rtmp_client is not None:
        spec = replace(spec, rtmp_client=args.rtmp_client)
    if args.no_shared_sender:
        spec = replace(spec, shared_sender=False)
    if args.renditions:
        spec = replace(spec, rendition_cache=RenditionCache(Path(args.renditions), 1 << 34))
    if args.switch_every is not None:
        spec = replace(spec, switchable=True, loop="clip")
    if args.fanout is not None:
        room, _, query = args.target.partition("?")
        base, name = room.rsplit("/", 1)
        bases = [base, *args.servers]
        targets = tuple(
            Target(f"r{n}", f"{bases[server_of(n, len(bases))]}/{name}_{n}?{query}")
            for n in range(args.fanout)
        )
        targets += tuple(Target(f"also{n}", url) for n, url in enumerate(args.also))
        spec = replace(spec, target=targets[0].url, targets=targets)
    if args.pictures_per_send is not None:
        spec = replace(spec, fanout_pictures_per_send=args.pictures_per_send)
    with Control() as control:
        if args.switch_every is not None:
            _switch_every(control, args.switch_every, args.clips)
        result = push(spec, control)
    print(result.outcome.value, result.progress.as_dict()["Streams"])


def _switch_every(control: Control, every: float, clips: list[str]) -> None:
    """Switch to the next clip (round robin, from the second) every ``every`` seconds."""
    upcoming = itertools.cycle(clips[1:] + clips[:1])

    def run() -> None:
        due = time.monotonic() + every
        while not control.wait(max(0.0, due - time.monotonic())):
            if time.monotonic() >= due:  # not a poke: the time has come
                control.send(Switch(VideoSrc=next(upcoming)))
                due += every

    threading.Thread(target=run, daemon=True).start()


if __name__ == "__main__":
    main()
