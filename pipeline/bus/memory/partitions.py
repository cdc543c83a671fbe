"""The memory backend's storage: hubs of partitions holding events, as Event Hubs keeps them.

Per partition: sequence numbers from 0 and byte offsets (strings, like Event Hubs); an
``asyncio.Event`` that readers wait on for the next append. Same key -> same partition.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.bus.ports import OutgoingEvent, ReceivedEvent


def event_size(event: OutgoingEvent) -> int:
    """Bytes an event counts against the limit: body, key and properties."""
    props = sum(len(k) + len(v) for k, v in event.properties.items())
    return len(event.body) + len(event.partition_key or "") + props


def partition_for_key(key: str, partitions: int) -> int:
    """Stable across processes and runs (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % partitions


@dataclass
class MemoryPartition:
    partition_id: str
    events: list[ReceivedEvent] = field(default_factory=list)
    next_offset: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, event: OutgoingEvent) -> None:
        stored = ReceivedEvent(
            body=event.body,
            partition_id=self.partition_id,
            offset=str(self.next_offset),
            sequence_number=len(self.events),
            enqueued_time=datetime.now(UTC),
            partition_key=event.partition_key,
            properties=dict(event.properties),
        )
        self.events.append(stored)
        self.next_offset += max(1, event_size(event))
        # Wake every reader waiting on this partition, then arm a fresh event for the next.
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class MemoryHub:
    name: str
    partitions: list[MemoryPartition]
    _round_robin: itertools.cycle[int] = field(init=False)

    def __post_init__(self) -> None:
        self._round_robin = itertools.cycle(range(len(self.partitions)))

    def route(self, key: str | None) -> MemoryPartition:
        if key is None:
            return self.partitions[next(self._round_robin)]
        return self.partitions[partition_for_key(key, len(self.partitions))]
