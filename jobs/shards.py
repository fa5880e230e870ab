"""A fan-out push into more rooms than one worker thread should carry, split into shards.

One process publishes a few hundred rooms well (docs/benchmarks.md, fan-out); a match
streamed into 2 000 watch-together rooms needs several processes, perhaps several machines.
So the API splits such a push into shards of at most ``ROOMCAST_FANOUT_SHARD_ROOMS`` rooms,
each an ordinary fan-out push with a request id of its own (``<RequestId>.2``, ``.3``…), and
sends each shard's task to Celery like any push: the broker hands them to whichever worker
processes have a free slot, on this machine or another, and each shard reads the source
once. No scheduler of roomcast's own decides where a shard runs.

The push the caller knows is the first shard (its own room and the first rooms of
``Targets``); its record lists the others (``Shards``), and each of them names it
(``ShardOf``). What the caller sees stays one push:

- its status lists every shard's rooms and their progress, and ``Shards`` where each runs;
- stopping it, through the API or Celery's revoke, stops every shard (``JobStore.stop``);
- rooms are added to the shard with the fewest and removed from the shard that has them;
- the shards' fan-out events (``target-live``…) join its events and callbacks.

A fan-out push that resumes (``Redis=true``, a file) is split by position as well: each
room has a bookmark of its own (jobs/bookmarks.py), and rooms whose bookmarks differ (one
removed earlier, one new) cannot share a read. The API groups the rooms by the position
their bookmarks hold, and each group gets shards of its own; rooms that stopped together,
the usual case, stay one push.

A shard takes no publisher lease (its rooms are the push's targets, which take none) and
counts against its app's quota as a push of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from .records import MAIN_TARGET, JobRecord, JobSecrets

T = TypeVar("T")
#: A further shard: its request id, record and secrets.
Shard = tuple[str, JobRecord, JobSecrets]

#: The most rooms one push publishes to, its own included, shards and all.
MAX_ROOMS = 2000
#: The most rooms one shard (or an unsplit push) may grow to while it runs.
MAX_SHARD_ROOMS = 500


def shard_ids(request_id: str, count: int) -> list[str]:
    """The request ids of a push's shards after the first (the push itself)."""
    return [f"{request_id}.{n}" for n in range(2, count + 1)]


def split(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive runs of at most ``size``."""
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def shard(
    request_id: str,
    record: JobRecord,
    secrets: JobSecrets,
    size: int,
    groups: Sequence[Sequence[str]] = (),
) -> tuple[JobRecord, JobSecrets, list[Shard]]:
    """Split a fan-out push whose rooms (its own and ``Targets``) exceed ``size``, or whose
    rooms must start from different places.

    ``groups``: the push's rooms by id (``main`` and each TargetId), in groups that start
    from one position each (:func:`by_position`); each group gets shards of its own. None
    given: one group.

    Returns the push's own record and secrets, now holding only its first shard's rooms and
    naming the others, and each further shard's request id, record and secrets (its rooms'
    UserSigs only, no callback: its events go to the push's). A push that needs no split
    comes back as it is, with no shards.
    """
    if record.Targets is None:
        return record, secrets, []
    rooms = {t.TargetId: t for t in record.Targets}
    parts = [list(group) for group in groups if group] or [[MAIN_TARGET, *rooms]]
    assert sorted(r for group in parts for r in group) == sorted([MAIN_TARGET, *rooms])
    parts.sort(key=lambda group: MAIN_TARGET not in group)  # the push itself comes first
    chunks = [chunk for group in parts for chunk in split(group, size)]
    if len(chunks) == 1:
        return record, secrets, []
    first = [rooms[r] for r in chunks[0] if r != MAIN_TARGET]
    ids = shard_ids(request_id, len(chunks))
    shards = []
    for shard_id, chunk in zip(ids, chunks[1:], strict=True):
        targets = [rooms[r] for r in chunk]
        shard_record = record.model_copy(
            update={
                "Targets": targets,
                "MainRemoved": True,
                "ShardOf": request_id,
                "CallbackUrl": None,
            }
        )
        sigs = {t.TargetId: secrets.TargetSigs[t.TargetId] for t in targets}
        shard_secrets = secrets.model_copy(update={"TargetSigs": sigs, "CallbackUrl": None})
        shards.append((shard_id, shard_record, shard_secrets))
    own_sigs = {t.TargetId: secrets.TargetSigs[t.TargetId] for t in first}
    own = record.model_copy(update={"Targets": first, "Shards": ids})
    return own, secrets.model_copy(update={"TargetSigs": own_sigs}), shards


def by_position(positions: Mapping[str, float | None]) -> list[list[str]]:
    """Rooms grouped by the position their bookmarks hold (None: none), each group in the
    order given: the rooms of an earlier fan-out that stopped together stay together."""
    groups: dict[float | None, list[str]] = {}
    for room, position in positions.items():
        groups.setdefault(position, []).append(room)
    return list(groups.values())


def rooms_of(record: JobRecord) -> int:
    """How many rooms a push (or one shard) publishes to now."""
    return len(record.targets() or [])


def merged_status(status: dict[str, Any], shards: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """A sharded push's status with every shard's rooms: ``status`` is the push's own
    answer, ``shards`` each further shard's id and answer (None: its record is gone)."""
    targets = list(status.get("Targets") or [])
    progress = status.get("Progress")
    rooms = dict((progress or {}).get("Targets") or {})
    entries = [_entry(status["RequestId"], status)]
    for shard_id, answer in shards:
        entries.append(_entry(shard_id, answer))
        if answer is None:
            continue
        targets += answer.get("Targets") or []
        rooms |= (answer.get("Progress") or {}).get("Targets") or {}
    if progress is not None:
        progress["Targets"] = rooms
    return status | {"Targets": targets, "Shards": entries}


def _entry(shard_id: str, answer: dict[str, Any] | None) -> dict[str, Any]:
    if answer is None:
        return {"RequestId": shard_id, "State": "unknown", "Rooms": 0}
    return {
        "RequestId": shard_id,
        "State": answer["State"],
        "Worker": answer.get("Worker"),
        "Rooms": len(answer.get("Targets") or []),
    }
