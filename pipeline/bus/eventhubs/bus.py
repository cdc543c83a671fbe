"""The Azure Event Hubs backend: publisher, subscriptions, blob checkpoint store.

Only ``pipeline.bus.eventhubs`` imports ``azure.*``. SDK errors are translated into the
pipeline's error tree by the one table in ``errors.py``; the SDK's own retries are turned
down because the processor's tenacity policy owns retrying.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from pipeline.bus.eventhubs.clients import AzureClients
from pipeline.bus.eventhubs.config import EventHubsConfig
from pipeline.bus.eventhubs.errors import translate
from pipeline.bus.eventhubs.publisher import EventHubsPublisher
from pipeline.bus.eventhubs.subscription import ConsumerOptions, EventHubsSubscription
from pipeline.bus.ports import Checkpoint, Ownership, PartitionInfo, StartPosition
from pipeline.bus.resource import AsyncResource
from pipeline.bus.settings import BusSettings


class EventHubsBus(AsyncResource):
    """An Event Hubs namespace plus a blob container for checkpoints and ownership.

    ``credential`` (an ``AsyncTokenCredential``) is used where the settings name a namespace
    or account URL instead of a connection string; without one, ``DefaultAzureCredential``.
    ``eventhub_options`` / ``storage_options`` go to every SDK client (e.g. a CA bundle).
    """

    def __init__(self, settings: BusSettings, *, load_balancing_interval_s: float = 10.0,
                 ownership_expiry_s: float = 60.0, max_batch: int = 100,
                 max_wait_s: float = 1.0, greedy: bool = False,
                 credential: AsyncTokenCredential | None = None,
                 eventhub_options: Mapping[str, Any] | None = None,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.clients = AzureClients(EventHubsConfig.from_settings(settings),
                                    credential=credential, eventhub_options=eventhub_options,
                                    storage_options=storage_options)
        self.max_wait_s = max_wait_s
        # Greedy claims every unowned partition at once (faster start, used by tests);
        # balanced (the SDK default) claims one per load-balancing round.
        self._consumer_options = ConsumerOptions(
            load_balancing_interval_s=load_balancing_interval_s,
            ownership_expiry_s=ownership_expiry_s,
            max_batch=max_batch,
            load_balancing_strategy="greedy" if greedy else "balanced",
        )
        self._closed = False
        self._publisher: EventHubsPublisher | None = None

    # -- Bus ---------------------------------------------------------------------------

    def publisher(self) -> EventHubsPublisher:
        """The bus's one publisher (producer connections are shared, closed with the bus)."""
        if self._publisher is None:
            self._publisher = EventHubsPublisher(self.clients)
        return self._publisher

    def subscribe(self, hub: str, consumer_group: str, *, owner_id: str | None = None,
                  start: StartPosition = "earliest") -> EventHubsSubscription:
        return EventHubsSubscription(self.clients, hub, consumer_group,
                                     owner_id=owner_id or uuid.uuid4().hex, start=start,
                                     options=self._consumer_options)

    async def partition_ids(self, hub: str) -> list[str]:
        try:
            async with self.clients.producer(hub) as producer:
                return list(await producer.get_partition_ids())
        except Exception as exc:
            raise translate(exc, f"reading partitions of {hub!r}") from exc

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        store = await self.clients.checkpoint_store()
        try:
            async with store:
                raw = await store.list_checkpoints(self.clients.namespace, hub, consumer_group)
        except Exception as exc:
            raise translate(exc, f"reading checkpoints of {hub!r}", service="Blob storage") from exc
        return [Checkpoint(hub, consumer_group, str(c["partition_id"]), str(c.get("offset")),
                           int(c["sequence_number"])) for c in raw]

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        store = await self.clients.checkpoint_store()
        try:
            async with store:
                raw = await store.list_ownership(self.clients.namespace, hub, consumer_group)
        except Exception as exc:
            raise translate(exc, f"reading ownership of {hub!r}", service="Blob storage") from exc
        return [Ownership(hub, consumer_group, str(o["partition_id"]), str(o["owner_id"]),
                          float(o.get("last_modified_time") or 0.0), o.get("etag"))
                for o in raw]

    async def partition_info(self, hub: str, partition_id: str) -> PartitionInfo:
        try:
            async with self.clients.producer(hub) as producer:
                props = await producer.get_partition_properties(partition_id)
        except Exception as exc:
            raise translate(exc, f"reading partition {partition_id} of {hub!r}") from exc
        return PartitionInfo(
            hub, partition_id, int(props["last_enqueued_sequence_number"]),
            str(props.get("last_enqueued_offset")), props.get("last_enqueued_time_utc"),
            is_empty=bool(props.get("is_empty")))

    def connected(self) -> bool:
        return not self._closed

    async def close(self) -> None:
        self._closed = True
        if self._publisher is not None:
            await self._publisher.close()
        await self.clients.close()


__all__ = ["EventHubsBus"]
