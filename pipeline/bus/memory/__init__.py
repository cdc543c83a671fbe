"""The memory backend: the embedded default, with Event Hubs semantics, in one process."""

from pipeline.bus.memory.bus import MemoryBus, MemoryPublisher
from pipeline.bus.memory.payloads import MemoryPayloadStore
from pipeline.bus.memory.store import MemoryCheckpointStore
from pipeline.bus.memory.subscription import MemorySubscription, MemorySubscriptionOptions

__all__ = [
    "MemoryBus",
    "MemoryCheckpointStore",
    "MemoryPayloadStore",
    "MemoryPublisher",
    "MemorySubscription",
    "MemorySubscriptionOptions",
]
