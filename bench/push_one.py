"""Push one source into one RTMP URL with roomcast's pipeline (what a worker runs)."""

from __future__ import annotations

import sys
from dataclasses import replace

from pipeline import Control, PushSpec, push


def main() -> None:
    """``python -m bench.push_one SOURCE TARGET [PACE_BATCH_SECONDS]``"""
    source, target = sys.argv[1], sys.argv[2]
    spec = PushSpec(source=source, target=target)
    if len(sys.argv) > 3:
        spec = replace(spec, pace_batch=float(sys.argv[3]))
    with Control() as control:
        result = push(spec, control)
    print(result.outcome.value, result.progress.as_dict()["Streams"])


if __name__ == "__main__":
    main()
