"""Push one source into one RTMP URL with roomcast's pipeline (what a worker runs)."""

from __future__ import annotations

import sys

from pipeline import Control, PushSpec, push


def main() -> None:
    """``python -m bench.push_one SOURCE TARGET``"""
    source, target = sys.argv[1], sys.argv[2]
    with Control() as control:
        result = push(PushSpec(source=source, target=target), control)
    print(result.outcome.value, result.progress.as_dict()["Streams"])


if __name__ == "__main__":
    main()
