"""A consumer-group member on Event Hubs: the SDK's EventHubConsumerClient with the blob
checkpoint store balances partitions; our processor handles what it delivers.

Checkpoints are written by the SDK's ``PartitionContext.update_checkpoint`` and so stay in
its blob-metadata format (``sequencenumber``, ``offset``), which KEDA's azure-eventhub
scaler reads with ``checkpointStrategy: blobMetadata``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from azure.eventhub import CloseReason, EventData
from azure.eventhub.aio import EventHubConsumerClient
from azure.eventhub.aio import PartitionContext as SdkPartitionContext

from pipeline.bus.eventhubs.clients import AzureClients
from pipeline.bus.eventhubs.errors import translate
from pipeline.bus.eventhubs.ownership import RenewalCheckedStore
from pipeline.bus.ports import PartitionReceiver, ReceivedEvent, StartPosition

log = structlog.get_logger(__name__)

_START = {"earliest": "-1", "latest": "@latest"}


def body_bytes(event: EventData) -> bytes:
    body: Any = event.body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    try:
        return b"".join(bytes(part) for part in body)
    except TypeError:
        return repr(body).encode()  # a VALUE/SEQUENCE body: kept so the dead letter shows it


def to_received(event: EventData, partition_id: str) -> ReceivedEvent:
    props = {
        (k.decode() if isinstance(k, bytes) else str(k)):
        (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in (event.properties or {}).items()
    }
    return ReceivedEvent(
        body=body_bytes(event),
        partition_id=partition_id,
        offset=str(event.offset),
        sequence_number=int(event.sequence_number or 0),
        enqueued_time=event.enqueued_time or datetime.now(UTC),
        partition_key=(event.partition_key.decode() if isinstance(event.partition_key, bytes)
                       else event.partition_key),
        properties=props,
    )


@dataclass
class EventHubsPartitionContext:
    hub: str
    consumer_group: str
    partition_id: str
    sdk: SdkPartitionContext
    #: SDK events not yet covered by a checkpoint, by sequence number.
    pending: dict[int, EventData] = field(default_factory=dict)

    async def checkpoint(self, event: ReceivedEvent) -> None:
        sdk_event = self.pending.get(event.sequence_number)
        if sdk_event is None:
            return  # already covered by a later checkpoint
        try:
            await self.sdk.update_checkpoint(sdk_event)
        except Exception as exc:
            raise translate(exc, f"checkpointing {self.hub}/{self.partition_id}",
                            service="Blob storage") from exc
        for seq in [s for s in self.pending if s <= event.sequence_number]:
            del self.pending[seq]


@dataclass(frozen=True)
class ConsumerOptions:
    """The SDK processor's load balancing, and our batch size."""

    load_balancing_interval_s: float = 10.0
    ownership_expiry_s: float = 60.0
    max_batch: int = 100
    load_balancing_strategy: Literal["greedy", "balanced"] = "balanced"


class EventHubsSubscription:
    """Takes what it uses: the clients (consumer client, checkpoint store) and its options."""

    def __init__(self, clients: AzureClients, hub: str, consumer_group: str, *,
                 owner_id: str, start: StartPosition,
                 options: ConsumerOptions | None = None) -> None:
        self._clients = clients
        self._options = options or ConsumerOptions()
        self.hub = hub
        self.consumer_group = consumer_group
        self.owner_id = owner_id
        self._start = start
        self._contexts: dict[str, EventHubsPartitionContext] = {}
        self._client: EventHubConsumerClient | None = None
        self._stopping = asyncio.Event()
        self._abandoned = False

    def owned_partitions(self) -> frozenset[str]:
        return frozenset(self._contexts)

    async def run(self, receiver: PartitionReceiver) -> None:
        store = await self._clients.checkpoint_store()
        options = self._options
        self._client = self._clients.consumer(
            self.hub, self.consumer_group,
            checkpoint_store=RenewalCheckedStore(store, options.ownership_expiry_s),
            load_balancing_interval=options.load_balancing_interval_s,
            partition_ownership_expiration_interval=options.ownership_expiry_s,
            load_balancing_strategy=options.load_balancing_strategy,
        )

        async def on_init(sdk: SdkPartitionContext) -> None:
            ctx = EventHubsPartitionContext(self.hub, self.consumer_group, sdk.partition_id, sdk)
            self._contexts[sdk.partition_id] = ctx
            await receiver.on_open(ctx)

        async def on_batch(sdk: SdkPartitionContext, events: list[EventData]) -> None:
            ctx = self._contexts.get(sdk.partition_id)
            if ctx is None or not events:
                return
            received = []
            for event in events:
                ours = to_received(event, sdk.partition_id)
                ctx.pending[ours.sequence_number] = event
                received.append(ours)
            await receiver.on_events(ctx, received)

        async def on_close(sdk: SdkPartitionContext, reason: CloseReason) -> None:
            ctx = self._contexts.pop(sdk.partition_id, None)
            if ctx is not None:
                shutdown = reason == CloseReason.SHUTDOWN and not self._abandoned
                why = "shutdown" if shutdown else "ownership_lost"
                await receiver.on_close(ctx, why)

        async def on_error(sdk: SdkPartitionContext | None, error: Exception) -> None:
            log.warning("eventhubs.error", hub=self.hub,
                        partition=sdk.partition_id if sdk else None, error=repr(error))

        async with store, self._client:
            receiving = asyncio.create_task(self._client.receive_batch(
                on_batch, max_batch_size=options.max_batch,
                starting_position=(self._start if isinstance(self._start, datetime)
                                   else _START[self._start]),
                on_partition_initialize=on_init, on_partition_close=on_close,
                on_error=on_error,
            ))
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait([receiving, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not receiving.done():
                await self._client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving

    async def stop(self) -> None:
        self._stopping.set()

    async def abandon(self) -> None:
        """Stop like a crashed process from the checkpoint's point of view: in-flight work is
        dropped and nothing more is checkpointed. For tests (a real crash is a SIGKILL)."""
        self._abandoned = True
        self._stopping.set()


__all__ = ["ConsumerOptions", "EventHubsPartitionContext", "EventHubsSubscription"]
