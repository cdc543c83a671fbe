"""Publishing to Event Hubs: one batch per partition key, in order, filled to the limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from pipeline.bus.eventhubs.clients import AzureClients
from pipeline.bus.eventhubs.errors import translate
from pipeline.bus.ports import OutgoingEvent
from pipeline.bus.resource import AsyncResource
from pipeline.errors import EventTooLargeError, PipelineError


class EventHubsPublisher(AsyncResource):
    """One producer client per hub, opened on first use, closed with the publisher."""

    def __init__(self, clients: AzureClients) -> None:
        self._clients = clients
        self._producers: dict[str, EventHubProducerClient] = {}
        self._lock = asyncio.Lock()

    async def _producer(self, hub: str) -> EventHubProducerClient:
        async with self._lock:
            if hub not in self._producers:
                self._producers[hub] = self._clients.producer(hub)
            return self._producers[hub]

    async def publish(self, hub: str, events: Sequence[OutgoingEvent]) -> None:
        if not events:
            return
        producer = await self._producer(hub)
        # One batch per partition key, in order, each filled to the hub's size limit.
        groups: dict[str | None, list[OutgoingEvent]] = {}
        for event in events:
            groups.setdefault(event.partition_key, []).append(event)
        try:
            for key, group in groups.items():
                await self._send_group(producer, key, group)
        except PipelineError:
            raise
        except Exception as exc:
            raise translate(exc, f"publishing to {hub!r}") from exc

    async def _send_group(self, producer: EventHubProducerClient, key: str | None,
                          group: list[OutgoingEvent]) -> None:
        batch = await producer.create_batch(partition_key=key)
        for event in group:
            data = EventData(event.body)
            if event.properties:
                data.properties = {k: v for k, v in event.properties.items()}
            try:
                batch.add(data)
                continue
            except ValueError:
                if len(batch) == 0:
                    raise EventTooLargeError(len(event.body), batch.max_size_in_bytes) from None
            await producer.send_batch(batch)
            batch = await producer.create_batch(partition_key=key)
            try:
                batch.add(data)
            except ValueError:
                raise EventTooLargeError(len(event.body), batch.max_size_in_bytes) from None
        if len(batch):
            await producer.send_batch(batch)

    async def close(self) -> None:
        for producer in self._producers.values():
            with contextlib.suppress(Exception):
                await producer.close()
        self._producers.clear()
