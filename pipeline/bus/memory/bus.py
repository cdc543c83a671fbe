"""The embedded bus: an in-process broker with Event Hubs semantics.

Per hub: N partitions; same partition key -> same partition; per-partition sequence numbers
(from 0) and byte offsets (strings, like Event Hubs); independent consumer groups; a start
position of earliest, latest or the group's checkpoint; ownership balanced across the
members of a consumer group through the checkpoint store; the 1 MB event size limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from pipeline.bus.memory.partitions import MemoryHub, MemoryPartition, event_size
from pipeline.bus.memory.store import MemoryCheckpointStore
from pipeline.bus.memory.subscription import MemorySubscription, MemorySubscriptionOptions
from pipeline.bus.ports import (
    MAX_EVENT_BYTES,
    Checkpoint,
    OutgoingEvent,
    Ownership,
    PartitionInfo,
    StartPosition,
)
from pipeline.bus.resource import AsyncResource
from pipeline.errors import BusUnavailableError, EventTooLargeError


class MemoryBus(AsyncResource):
    """The embedded default backend. One instance is one namespace."""

    def __init__(
        self,
        partitions: int = 4,
        *,
        max_event_bytes: int = MAX_EVENT_BYTES,
        store: MemoryCheckpointStore | None = None,
        balance_interval_s: float = 0.2,
        ownership_expiry_s: float = 2.0,
        max_batch: int = 100,
    ) -> None:
        if partitions < 1:
            raise ValueError("a hub needs at least one partition")
        self._partitions = partitions
        self._max_event_bytes = max_event_bytes
        self._hubs: dict[str, MemoryHub] = {}
        self._closed = False
        self.store = store or MemoryCheckpointStore()
        self._options = MemorySubscriptionOptions(
            balance_interval_s=balance_interval_s,
            ownership_expiry_s=ownership_expiry_s,
            max_batch=max_batch,
        )

    def hub(self, name: str) -> MemoryHub:
        if name not in self._hubs:
            parts = [MemoryPartition(str(i)) for i in range(self._partitions)]
            self._hubs[name] = MemoryHub(name, parts)
        return self._hubs[name]

    # -- Bus ---------------------------------------------------------------------------

    def publisher(self) -> MemoryPublisher:
        return MemoryPublisher(self)

    def subscribe(
        self,
        hub: str,
        consumer_group: str,
        *,
        owner_id: str | None = None,
        start: StartPosition = "earliest",
    ) -> MemorySubscription:
        return MemorySubscription(
            self.hub(hub).partitions,
            self.store,
            hub,
            consumer_group,
            owner_id=owner_id or uuid.uuid4().hex,
            start=start,
            options=self._options,
        )

    async def partition_ids(self, hub: str) -> list[str]:
        return [p.partition_id for p in self.hub(hub).partitions]

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        return await self.store.list_checkpoints(hub, consumer_group)

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        return await self.store.list_ownership(hub, consumer_group)

    async def partition_info(self, hub: str, partition_id: str) -> PartitionInfo:
        events = self.hub(hub).partitions[int(partition_id)].events
        last = events[-1] if events else None
        return PartitionInfo(hub, partition_id,
                             last.sequence_number if last else -1,
                             last.offset if last else None,
                             last.enqueued_time if last else None, is_empty=last is None)

    def connected(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        self._closed = True

    # -- used by the publisher -----------------------------------------------------------

    def append(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        if self._closed:
            raise BusUnavailableError("memory bus is closed")
        for event in events:  # check all first: a batch is all-or-nothing, like Event Hubs
            size = event_size(event)
            if size > self._max_event_bytes:
                raise EventTooLargeError(size, self._max_event_bytes)
        target = self.hub(hub)
        for event in events:
            target.route(event.partition_key).append(event)


class MemoryPublisher(AsyncResource):
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        self._bus.append(hub, events)
        await asyncio.sleep(0)  # a publish is a suspension point on a real bus too
