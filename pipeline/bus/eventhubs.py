"""The Azure Event Hubs backend: publisher, subscriptions, blob checkpoint store.

With ``pipeline.bus.eventhubs_subscription`` these are the only modules that import
``azure.*``. SDK errors are translated into the pipeline's error tree here; the SDK's own
retries are turned down because the processor's tenacity policy owns retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import (
    AuthenticationError,
    ClientClosedError,
    ConnectError,
    EventHubError,
)
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import ContainerClient

from pipeline.bus.eventhubs_subscription import EventHubsSubscription
from pipeline.bus.ports import (
    MAX_EVENT_BYTES,
    Checkpoint,
    OutgoingEvent,
    Ownership,
    PartitionInfo,
    StartPosition,
)
from pipeline.errors import (
    BusUnavailableError,
    ConfigError,
    EventTooLargeError,
    PermanentError,
)
from pipeline.settings import BusSettings

#: SDK-level retries per call; the processor retries around us (tenacity), so keep them few.
SDK_RETRY_TOTAL = 1


def translate(exc: BaseException, doing: str) -> Exception:
    """Map an SDK error onto the pipeline's error tree."""
    if isinstance(exc, AuthenticationError):
        return PermanentError(f"Event Hubs refused our credentials while {doing}: {exc}")
    if isinstance(exc, ClientClosedError):
        return BusUnavailableError(f"Event Hubs client closed while {doing}")
    if isinstance(exc, (ConnectError, EventHubError, AzureError, OSError, asyncio.TimeoutError)):
        return BusUnavailableError(f"Event Hubs unavailable while {doing}: {exc}")
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


class EventHubsPublisher:
    """One producer client per hub, opened on first use."""

    def __init__(self, bus: EventHubsBus) -> None:
        self._bus = bus
        self._producers: dict[str, EventHubProducerClient] = {}
        self._lock = asyncio.Lock()

    async def _producer(self, hub: str) -> EventHubProducerClient:
        async with self._lock:
            if hub not in self._producers:
                self._producers[hub] = self._bus.make_producer(hub)
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
        except (EventTooLargeError, PermanentError):
            raise
        except Exception as exc:
            raise translate(exc, f"publishing to {hub!r}") from exc

    async def _send_group(self, producer: EventHubProducerClient, key: str | None,
                          group: list[OutgoingEvent]) -> None:
        batch = await producer.create_batch(partition_key=key)
        for event in group:
            data = EventData(event.body)
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


class EventHubsBus:
    """An Event Hubs namespace plus a blob container for checkpoints and ownership."""

    def __init__(self, settings: BusSettings, *, load_balancing_interval_s: float = 10.0,
                 ownership_expiry_s: float = 60.0, max_batch: int = 100,
                 max_wait_s: float = 1.0, greedy: bool = False) -> None:
        if settings.event_hub_connection_string is None:
            raise ConfigError(
                "invalid configuration: EVENT_HUB_CONNECTION_STRING: required for the Event "
                "Hubs backend (credential auth with EVENT_HUB_NAMESPACE is not supported yet)"
            )
        if settings.storage_connection_string is None:
            raise ConfigError(
                "invalid configuration: STORAGE_CONNECTION_STRING: required with "
                "EVENT_HUB_CONNECTION_STRING (checkpoints and partition ownership live in blobs)"
            )
        self._conn = settings.event_hub_connection_string.get_secret_value()
        self._storage = settings.storage_connection_string.get_secret_value()
        self._container = settings.checkpoint_container
        self.load_balancing_interval_s = load_balancing_interval_s
        self.ownership_expiry_s = ownership_expiry_s
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        #: Greedy claims every unowned partition at once (faster start, used by tests);
        #: balanced (the SDK default) claims one per load-balancing round.
        self.load_balancing_strategy = "greedy" if greedy else "balanced"
        self._closed = False
        self._container_ready = False
        self._publisher: EventHubsPublisher | None = None
        _check_connection_string(self._conn)

    # -- factories used by the publisher and subscriptions -------------------------------

    def make_producer(self, hub: str) -> EventHubProducerClient:
        return EventHubProducerClient.from_connection_string(
            self._conn, eventhub_name=hub, retry_total=SDK_RETRY_TOTAL,
        )

    def consumer_kwargs(self) -> dict[str, Any]:
        return {"retry_total": SDK_RETRY_TOTAL}

    @property
    def connection_string(self) -> str:
        return self._conn

    async def checkpoint_store(self) -> BlobCheckpointStore:
        if not self._container_ready:
            container = ContainerClient.from_connection_string(self._storage, self._container)
            async with container:
                with contextlib.suppress(ResourceExistsError):
                    await container.create_container()
            self._container_ready = True
        return BlobCheckpointStore.from_connection_string(self._storage, self._container)

    # -- Bus ---------------------------------------------------------------------------

    def publisher(self) -> EventHubsPublisher:
        """The bus's one publisher (producer connections are shared, closed with the bus)."""
        if self._publisher is None:
            self._publisher = EventHubsPublisher(self)
        return self._publisher

    def subscribe(self, hub: str, consumer_group: str, *, owner_id: str | None = None,
                  start: StartPosition = "earliest") -> EventHubsSubscription:
        return EventHubsSubscription(self, hub, consumer_group,
                                     owner_id=owner_id or uuid.uuid4().hex, start=start)

    async def partition_ids(self, hub: str) -> list[str]:
        producer = self.make_producer(hub)
        try:
            async with producer:
                return list(await producer.get_partition_ids())
        except Exception as exc:
            raise translate(exc, f"reading partitions of {hub!r}") from exc

    async def list_checkpoints(self, hub: str, consumer_group: str) -> list[Checkpoint]:
        store = await self.checkpoint_store()
        namespace = _namespace(self._conn)
        try:
            async with store:
                raw = await store.list_checkpoints(namespace, hub, consumer_group)
        except Exception as exc:
            raise translate(exc, f"reading checkpoints of {hub!r}") from exc
        return [Checkpoint(hub, consumer_group, str(c["partition_id"]), str(c.get("offset")),
                           int(c["sequence_number"])) for c in raw]

    async def list_ownership(self, hub: str, consumer_group: str) -> list[Ownership]:
        store = await self.checkpoint_store()
        try:
            async with store:
                raw = await store.list_ownership(_namespace(self._conn), hub, consumer_group)
        except Exception as exc:
            raise translate(exc, f"reading ownership of {hub!r}") from exc
        return [Ownership(hub, consumer_group, str(o["partition_id"]), str(o["owner_id"]),
                          float(o.get("last_modified_time") or 0.0), o.get("etag"))
                for o in raw]

    async def partition_info(self, hub: str, partition_id: str) -> PartitionInfo:
        producer = self.make_producer(hub)
        try:
            async with producer:
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


def _namespace(conn: str) -> str:
    """The fully qualified namespace, as the SDK derives it for checkpoint blob names."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return parts["Endpoint"].removeprefix("sb://").split("/")[0]


def _check_connection_string(conn: str) -> None:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if not parts.get("Endpoint", "").startswith("sb://"):
        raise ConfigError(
            "invalid configuration: EVENT_HUB_CONNECTION_STRING: expected "
            "'Endpoint=sb://<namespace>/;SharedAccessKeyName=...;SharedAccessKey=...'"
        )


__all__ = ["MAX_EVENT_BYTES", "EventHubsBus", "EventHubsPublisher", "translate"]
