"""The bus ports: what the processor, producers and consumers ask of a message bus.

Modelled on Event Hubs (partitions, offsets, sequence numbers, consumer groups, ownership
kept in a checkpoint store), so the memory backend and the Event Hubs backend are
interchangeable behind these protocols and the same contract tests run on both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Literal, Protocol, Self

#: Event Hubs' limit for one event (standard tier); batches are filled up to it.
MAX_EVENT_BYTES = 1024 * 1024

#: Where a consumer group without a checkpoint starts: the oldest retained event, the next
#: new one, or the first event enqueued at or after a time (a follower waiting for the
#: answers to what it is about to publish starts a little before "now").
StartPosition = Literal["earliest", "latest"] | datetime


@dataclass(frozen=True)
class OutgoingEvent:
    body: bytes
    partition_key: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceivedEvent:
    body: bytes
    partition_id: str
    offset: str
    sequence_number: int
    enqueued_time: datetime
    partition_key: str | None = None
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    hub: str
    consumer_group: str
    partition_id: str
    offset: str
    sequence_number: int


@dataclass(frozen=True)
class Ownership:
    hub: str
    consumer_group: str
    partition_id: str
    owner_id: str
    last_modified: float = 0.0
    etag: str | None = None


@dataclass(frozen=True)
class PartitionInfo:
    """What the hub says about one partition (Event Hubs' partition properties): the
    backlog of a consumer group is ``last_enqueued_sequence_number`` minus its checkpoint."""

    hub: str
    partition_id: str
    #: -1 when the partition has never held an event.
    last_enqueued_sequence_number: int
    last_enqueued_offset: str | None = None
    last_enqueued_time: datetime | None = None
    is_empty: bool = False


class Publisher(Protocol):
    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        """Publish events; those sharing a partition key land, in order, on one partition.
        Raises EventTooLargeError (permanent) or BusUnavailableError (transient)."""
        ...

    async def close(self) -> None: ...


class PartitionContext(Protocol):
    """Handed to the receiver for one owned partition."""

    @property
    def hub(self) -> str: ...

    @property
    def consumer_group(self) -> str: ...

    @property
    def partition_id(self) -> str: ...

    async def checkpoint(self, event: ReceivedEvent) -> None:
        """Record that every event up to and including ``event`` is done."""
        ...


class PartitionReceiver(Protocol):
    """What a subscription drives. ``on_events`` is awaited before the next batch of the
    same partition is delivered (this is how backpressure reaches the bus)."""

    async def on_open(self, ctx: PartitionContext) -> None: ...

    async def on_events(self, ctx: PartitionContext, events: Sequence[ReceivedEvent]) -> None: ...

    async def on_close(self, ctx: PartitionContext, reason: str) -> None: ...


class Subscription(Protocol):
    """A consumer-group member. Partitions are balanced across members via the store."""

    async def run(self, receiver: PartitionReceiver) -> None:
        """Receive until :meth:`stop`; returns after every partition was closed."""
        ...

    async def stop(self) -> None: ...

    def owned_partitions(self) -> frozenset[str]: ...


class CheckpointStore(Protocol):
    """Ownership and checkpoints of consumer groups (the SDK's CheckpointStore, as a port)."""

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]: ...

    async def claim_ownership(self, claims: Sequence[Ownership]) -> list[Ownership]:
        """Claim each partition whose etag still matches; returns the ones won."""
        ...

    async def update_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]: ...


class Bus(Protocol):
    """One backend: makes publishers and subscriptions, reports whether it is connected.
    A bus is an async context manager: ``async with build_bus(settings) as bus:`` closes it."""

    def publisher(self) -> Publisher: ...

    def subscribe(
        self,
        hub: str,
        consumer_group: str,
        *,
        owner_id: str | None = None,
        start: StartPosition = "earliest",
    ) -> Subscription: ...

    async def partition_ids(self, hub: str) -> list[str]: ...

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        """The group's checkpoints (what a restarted member resumes from)."""
        ...

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        """Who owns which partition of the group (as the checkpoint store records it)."""
        ...

    async def partition_info(self, hub: str, partition_id: str) -> PartitionInfo:
        """The partition's last enqueued event (for backlog: ``llmexec status``)."""
        ...

    def connected(self) -> bool: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
