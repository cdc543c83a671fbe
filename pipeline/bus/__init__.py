"""Bus ports and backends, one package each: ``memory`` (the embedded default) and
``eventhubs`` (loaded only when configured). Only ``pipeline.bus.eventhubs`` imports Azure
SDKs; ``pipeline.bus.factory.build_bus`` is the one place that picks a backend."""

from pipeline.bus.memory import MemoryBus, MemoryCheckpointStore, MemoryPayloadStore
from pipeline.bus.ports import (
    MAX_EVENT_BYTES,
    Bus,
    Checkpoint,
    CheckpointStore,
    OutgoingEvent,
    Ownership,
    PartitionContext,
    PartitionReceiver,
    Publisher,
    ReceivedEvent,
    StartPosition,
    Subscription,
)

__all__ = [
    "MAX_EVENT_BYTES",
    "Bus",
    "Checkpoint",
    "CheckpointStore",
    "MemoryBus",
    "MemoryCheckpointStore",
    "MemoryPayloadStore",
    "OutgoingEvent",
    "Ownership",
    "PartitionContext",
    "PartitionReceiver",
    "Publisher",
    "ReceivedEvent",
    "StartPosition",
    "Subscription",
]
