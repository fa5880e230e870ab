"""Job records written straight into Redis, for tests of the worker's side of the store."""

from __future__ import annotations

import uuid

from jobs.records import JobRecord, JobSecrets, PushRoom
from jobs.states import State
from jobs.store import JobStore, now


def queued_job(
    store: JobStore,
    created: float | None = None,
    callback: str | None = None,
    fanout: bool = False,
) -> str:
    """A new job as the API leaves it: ``queued``, with its secrets and publisher lease
    (and its callback URL, if any; ``fanout``: started with ``Targets=[]``)."""
    request_id = str(uuid.uuid4())
    room = f"rec_{request_id[:8]}"
    source = "http://example.invalid/clip.mp4"
    record = JobRecord(
        SdkAppId=1400000001,
        Room=PushRoom(StrRoomId=room, RtmpRoom=room),
        UserId="rec",
        VideoSrc=source,
        CreatedAt=now() if created is None else created,
        **({"Targets": []} if fanout else {}),
    )
    secrets = JobSecrets(UserSig="sig-for-tests", VideoSrc=source, CallbackUrl=callback)
    store.create(request_id, record, secrets)
    return request_id


def running_job(
    store: JobStore,
    created: float | None = None,
    run_id: str = "run-1",
    callback: str | None = None,
    fanout: bool = False,
) -> str:
    """A new job moved to ``running`` as run ``run_id``, as a worker starting it leaves it."""
    request_id = queued_job(store, created, callback, fanout)
    store.transition(request_id, (State.QUEUED,), State.RUNNING, RunId=run_id)
    return request_id
