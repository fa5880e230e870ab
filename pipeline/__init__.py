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

from jobs.errors import RoomcastError

from .control import Control
from .progress import Progress
from .push import Outcome, PushResult, push
from .spec import Clip, OutputProfile, PushSpec, Timeouts

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
