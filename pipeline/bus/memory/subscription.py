"""A consumer-group member on the memory bus: balances ownership, reads owned partitions."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from pipeline.bus.balancing import plan_claims
from pipeline.bus.memory.partitions import MemoryPartition
from pipeline.bus.ports import (
    Checkpoint,
    CheckpointStore,
    Ownership,
    PartitionReceiver,
    ReceivedEvent,
    StartPosition,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MemorySubscriptionOptions:
    balance_interval_s: float = 0.2
    ownership_expiry_s: float = 2.0
    max_batch: int = 100


@dataclass(frozen=True)
class MemoryPartitionContext:
    hub: str
    consumer_group: str
    partition_id: str
    _store: CheckpointStore

    async def checkpoint(self, event: ReceivedEvent) -> None:
        await self._store.update_checkpoint(
            Checkpoint(
                self.hub, self.consumer_group, self.partition_id,
                event.offset, event.sequence_number,
            )
        )


class MemorySubscription:
    """Takes what it reads: the hub's partitions and the group's checkpoint store."""

    def __init__(
        self,
        partitions: Sequence[MemoryPartition],
        store: CheckpointStore,
        hub: str,
        consumer_group: str,
        *,
        owner_id: str,
        start: StartPosition,
        options: MemorySubscriptionOptions | None = None,
    ) -> None:
        self._partitions = {p.partition_id: p for p in partitions}
        self._store = store
        self._options = options or MemorySubscriptionOptions()
        self.hub = hub
        self.consumer_group = consumer_group
        self.owner_id = owner_id
        self._start = start
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._abandoned = False

    def owned_partitions(self) -> frozenset[str]:
        return frozenset(self._readers)

    async def run(self, receiver: PartitionReceiver) -> None:
        failing_since: float | None = None
        try:
            while not self._stopping.is_set():
                try:
                    await self._balance(receiver)
                    failing_since = None
                except Exception as exc:  # store unreachable: keep partitions until expiry
                    now = time.monotonic()
                    failing_since = failing_since or now
                    log.warning("memory.balance_failed", hub=self.hub, error=str(exc))
                    if now - failing_since >= self._options.ownership_expiry_s:
                        for pid in list(self._readers):  # cannot renew: let them go cleanly
                            await self._drop(pid, receiver, "ownership_lost")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._options.balance_interval_s)
        finally:
            for pid in list(self._readers):
                await self._drop(pid, receiver, "shutdown")
            if not self._abandoned:
                try:
                    await self._release_all()
                except Exception as exc:  # ownership then expires on its own
                    log.warning("memory.release_failed", hub=self.hub, error=str(exc))

    async def stop(self) -> None:
        self._stopping.set()

    async def abandon(self) -> None:
        """Stop like a crashed process: no release, ownership left to expire. For tests."""
        self._abandoned = True
        self._stopping.set()

    async def _balance(self, receiver: PartitionReceiver) -> None:
        store = self._store
        partition_ids = list(self._partitions)
        ownerships = await store.list_ownership(self.hub, self.consumer_group)
        plan = plan_claims(self.owner_id, partition_ids, ownerships, time.monotonic(),
                           self._options.ownership_expiry_s)
        claims = [
            Ownership(
                self.hub, self.consumer_group, pid, self.owner_id,
                etag=current.etag if current else None,
            )
            for pid, current in plan
        ]
        won = {o.partition_id for o in await store.claim_ownership(claims)}
        for pid in list(self._readers):
            if pid not in won:
                await self._drop(pid, receiver, "ownership_lost")
        for pid in sorted(won - set(self._readers)):
            self._readers[pid] = asyncio.create_task(
                self._read(pid, receiver), name=f"memory-read-{self.hub}-{pid}"
            )

    async def _drop(self, pid: str, receiver: PartitionReceiver, reason: str) -> None:
        task = self._readers.pop(pid)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        ctx = MemoryPartitionContext(self.hub, self.consumer_group, pid, self._store)
        if not self._abandoned:
            await receiver.on_close(ctx, reason)

    async def _release_all(self) -> None:
        store = self._store
        mine = [
            Ownership(o.hub, o.consumer_group, o.partition_id, "", etag=o.etag)
            for o in await store.list_ownership(self.hub, self.consumer_group)
            if o.owner_id == self.owner_id
        ]
        await store.claim_ownership(mine)

    async def _start_at(self, partition: MemoryPartition) -> int:
        checkpoints = await self._store.list_checkpoints(self.hub, self.consumer_group)
        for cp in checkpoints:
            if cp.partition_id == partition.partition_id:
                return cp.sequence_number + 1
        if isinstance(self._start, datetime):
            times = [e.enqueued_time for e in partition.events]
            return bisect.bisect_left(times, self._start)
        return len(partition.events) if self._start == "latest" else 0

    async def _read(self, pid: str, receiver: PartitionReceiver) -> None:
        partition = self._partitions[pid]
        ctx = MemoryPartitionContext(self.hub, self.consumer_group, pid, self._store)
        position = await self._start_at(partition)
        await receiver.on_open(ctx)
        while True:
            changed = partition.changed
            batch: Sequence[ReceivedEvent] = partition.events[
                position : position + self._options.max_batch
            ]
            if not batch:
                await changed.wait()
                continue
            position += len(batch)
            await receiver.on_events(ctx, batch)
