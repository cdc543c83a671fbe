"""Bus ports and backends. Only ``pipeline.bus.eventhubs*`` may import Azure SDKs."""

from pipeline.bus.memory import MemoryBus
from pipeline.bus.memory_store import MemoryCheckpointStore
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
    "OutgoingEvent",
    "Ownership",
    "PartitionContext",
    "PartitionReceiver",
    "Publisher",
    "ReceivedEvent",
    "StartPosition",
    "Subscription",
]
