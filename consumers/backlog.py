"""The backlog as KEDA and operators see it: per hub and consumer group, each partition's
last enqueued sequence number (from the hub), the group's checkpoint and owner (from the
checkpoint store: the same blobs KEDA's ``blobMetadata`` checkpoint strategy reads), and
the lag between them; plus the dead letters of the last hour, by source hub and cause.

Lag follows KEDA's Event Hubs scaler: ``last enqueued - checkpoint``; a partition without
a checkpoint counts every event it holds; an empty partition counts none.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.deadletters import DeadLetterReader
from pipeline.bus.ports import Bus
from schemas import DeadLetter, HubNames


@dataclass(frozen=True)
class PartitionStatus:
    partition_id: str
    last_enqueued_sequence_number: int
    last_enqueued_time: datetime | None
    checkpoint_sequence_number: int | None
    lag: int
    owner: str | None
    #: Seconds since the owner last renewed its claim (None without an owner).
    owner_age_s: float | None


@dataclass(frozen=True)
class GroupStatus:
    hub: str
    consumer_group: str
    partitions: list[PartitionStatus]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def owners(self) -> list[str]:
        return sorted({p.owner for p in self.partitions if p.owner})


@dataclass(frozen=True)
class Status:
    groups: list[GroupStatus]
    dead_letters_window_s: float
    #: Dead letters enqueued in the window, by (source hub, error type).
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "groups": [{**{k: v for k, v in asdict(g).items() if k != "partitions"},
                        "lag": g.lag, "owners": g.owners,
                        "partitions": [_jsonable(asdict(p)) for p in g.partitions]}
                       for g in self.groups],
            "dead_letters": {"window_s": self.dead_letters_window_s,
                             "total": sum(self.dead_letters.values()),
                             "by_cause": [{"source_hub": hub, "error_type": cause, "count": n}
                                          for (hub, cause), n
                                          in sorted(self.dead_letters.items())]},
        }


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in d.items()}


def lag_of(last_enqueued: int, checkpoint: int | None) -> int:
    if last_enqueued < 0:
        return 0
    if checkpoint is None:
        return last_enqueued + 1
    return max(0, last_enqueued - checkpoint)


async def group_status(bus: Bus, hub: str, consumer_group: str) -> GroupStatus:
    checkpoints = {c.partition_id: c for c in await bus.list_checkpoints(hub, consumer_group)}
    owners = {o.partition_id: o for o in await bus.list_ownership(hub, consumer_group)}
    now = time.time()
    rows = []
    for pid in await bus.partition_ids(hub):
        info = await bus.partition_info(hub, pid)
        cp = checkpoints.get(pid)
        owner = owners.get(pid)
        seq = cp.sequence_number if cp else None
        rows.append(PartitionStatus(
            partition_id=pid, last_enqueued_sequence_number=info.last_enqueued_sequence_number,
            last_enqueued_time=info.last_enqueued_time, checkpoint_sequence_number=seq,
            lag=lag_of(info.last_enqueued_sequence_number, seq),
            owner=owner.owner_id if owner and owner.owner_id else None,
            owner_age_s=round(now - owner.last_modified, 1)
            if owner and owner.owner_id and owner.last_modified else None))
    return GroupStatus(hub, consumer_group, rows)


async def backlog_status(bus: Bus, hubs: HubNames, groups: Sequence[tuple[str, str]], *,
                         window_s: float = 3600.0, idle_s: float = 1.0,
                         claim_timeout_s: float = 30.0,
                         consumer_group: str = "llmexec-status") -> Status:
    """``groups``: (hub, consumer group) pairs. Dead letters are read from the dead-letter
    hub, starting ``window_s`` ago, with a consumer group of this command's own."""
    found = [await group_status(bus, hub, group) for hub, group in groups]
    since = datetime.now(UTC) - timedelta(seconds=window_s)
    records = await _recent_dead_letters(bus, hubs.deadletter, consumer_group, since, idle_s,
                                         claim_timeout_s)
    counts = Counter((r.source_hub, r.error_type) for r in records)
    return Status(found, window_s, dict(counts))


async def _recent_dead_letters(bus: Bus, hub: str, consumer_group: str, since: datetime,
                               idle_s: float, claim_timeout_s: float) -> list[DeadLetter]:
    """Read from ``since`` until every partition is owned and the hub has been quiet
    ``idle_s`` (owning first: a balanced Event Hubs client claims partitions one round at
    a time, and a quiet period before that would read nothing)."""
    reader = DeadLetterReader()
    sub = bus.subscribe(hub, consumer_group, start=since)
    task = asyncio.create_task(sub.run(reader))
    loop = asyncio.get_running_loop()
    try:
        wanted = set(await bus.partition_ids(hub))
        give_up = loop.time() + claim_timeout_s
        while not wanted <= sub.owned_partitions() and loop.time() < give_up:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # no event to wait on: ownership lives in the store
        reader.last_event = max(reader.last_event, loop.time())
        while (quiet := loop.time() - reader.last_event) < idle_s:  # noqa: ASYNC110
            await asyncio.sleep(idle_s - quiet)
    finally:
        await sub.stop()
        await task
    return reader.records
