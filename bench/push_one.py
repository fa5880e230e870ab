"""Push one source into one RTMP URL with roomcast's pipeline (what a worker runs)."""

from __future__ import annotations

import argparse
from dataclasses import replace

from pipeline import Control, PushSpec, push
from pipeline.sink import RTMP_CLIENTS


def main() -> None:
    """``python -m bench.push_one SOURCE TARGET [--batch SECONDS] [--rtmp-client NAME]``"""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--batch", type=float, default=None, help="send batch, seconds")
    parser.add_argument("--rtmp-client", choices=RTMP_CLIENTS, default=None)
    args = parser.parse_args()
    spec = PushSpec(source=args.source, target=args.target)
    if args.batch is not None:
        spec = replace(spec, pace_batch=args.batch)
    if args.rtmp_client is not None:
        spec = replace(spec, rtmp_client=args.rtmp_client)
    with Control() as control:
        result = push(spec, control)
    print(result.outcome.value, result.progress.as_dict()["Streams"])


if __name__ == "__main__":
    main()
