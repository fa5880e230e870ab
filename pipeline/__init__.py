"""The decode-and-send pipeline: PyAV only, no Flask, no Celery.

Reads as the data flows: :mod:`.source` → :mod:`.plan` (remux or re-encode, per stream)
→ :mod:`.routes` → :mod:`.timeline` (continuous output timestamps) → :mod:`.pacer` →
:mod:`.sink`. :func:`push` wires them for one job.
"""

import os

# numpy (used for filler frames) starts an OpenBLAS thread per core at import, and they spin
# for a while: about 60 ms of CPU in every process that loads the pipeline, more than a lone
# remux push spends in two seconds. The pipeline does no linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.errors import RoomcastError

    from .control import Control
    from .progress import Progress
    from .pushing import Outcome, PushResult, push
    from .spec import Clip, OutputProfile, PushSpec, Timeouts

#: Where each name of the package is defined. Imported on first use: a process that needs
#: one module of the pipeline (the WHIP publisher, pipeline/whip_publisher.py, started for
#: each WHIP session) does not pay 0.3 s for the whole of it.
_HOMES = {
    "RoomcastError": "jobs.errors",
    "Control": ".control",
    "Progress": ".progress",
    "Outcome": ".pushing",
    "PushResult": ".pushing",
    "push": ".pushing",
    "Clip": ".spec",
    "OutputProfile": ".spec",
    "PushSpec": ".spec",
    "Timeouts": ".spec",
}


if not TYPE_CHECKING:  # for mypy the names are the imports above, typos included

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return getattr(import_module(home, __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "Clip",
    "Control",
    "Outcome",
    "OutputProfile",
    "Progress",
    "PushResult",
    "PushSpec",
    "RoomcastError",
    "Timeouts",
    "push",
]
