"""Every Azure SDK client the backend uses, made in one place from one validated config.

Shared-access connection strings where configured; otherwise the SDKs' own credential path
(``fully_qualified_namespace`` / ``account_url`` + an ``AsyncTokenCredential``), by default
``DefaultAzureCredential`` (workload identity on AKS, managed identity, the Azure CLI).
Tests pass their own token credential and SDK options (a CA bundle, a custom endpoint);
nothing here knows whether the other end is Azure or a loopback peer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from pipeline.bus.eventhubs.config import EventHubsConfig
from pipeline.bus.eventhubs.errors import SDK_RETRY_TOTAL, translate
from pipeline.bus.resource import AsyncResource


class AzureClients(AsyncResource):
    def __init__(
        self,
        config: EventHubsConfig,
        *,
        credential: AsyncTokenCredential | None = None,
        eventhub_options: Mapping[str, Any] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self._owns_credential = False
        if credential is None and config.needs_credential:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential()
            self._owns_credential = True
        self._credential = credential
        self._eventhub_options = {"retry_total": SDK_RETRY_TOTAL, **(eventhub_options or {})}
        self._storage_options = dict(storage_options or {})
        self._containers_ready: set[str] = set()
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def namespace(self) -> str:
        return self.config.namespace

    # -- Event Hubs ----------------------------------------------------------------------

    def producer(self, hub: str) -> EventHubProducerClient:
        if self.config.connection_string is not None:
            return EventHubProducerClient.from_connection_string(
                self.config.connection_string, eventhub_name=hub, **self._eventhub_options)
        return EventHubProducerClient(
            fully_qualified_namespace=self.config.namespace, eventhub_name=hub,
            credential=self._token_credential(), **self._eventhub_options)

    def consumer(self, hub: str, consumer_group: str, **options: Any) -> EventHubConsumerClient:
        options = {**self._eventhub_options, **options}
        if self.config.connection_string is not None:
            return EventHubConsumerClient.from_connection_string(
                self.config.connection_string, consumer_group=consumer_group,
                eventhub_name=hub, **options)
        return EventHubConsumerClient(
            fully_qualified_namespace=self.config.namespace, eventhub_name=hub,
            consumer_group=consumer_group, credential=self._token_credential(), **options)

    def _token_credential(self) -> AsyncTokenCredential:
        assert self._credential is not None  # made in __init__ when the config needs one
        return self._credential

    # -- blob storage --------------------------------------------------------------------

    def blob_service(self) -> BlobServiceClient:
        cfg = self.config
        if cfg.storage_connection_string is not None:
            return BlobServiceClient.from_connection_string(
                cfg.storage_connection_string, **self._storage_options)
        assert cfg.storage_account_url is not None  # EventHubsConfig checked it
        return BlobServiceClient(cfg.storage_account_url, credential=self._credential,
                                 **self._storage_options)

    def _container(self, name: str) -> ContainerClient:
        cfg = self.config
        if cfg.storage_connection_string is not None:
            return ContainerClient.from_connection_string(
                cfg.storage_connection_string, name, **self._storage_options)
        assert cfg.storage_account_url is not None
        return ContainerClient(cfg.storage_account_url, name, credential=self._credential,
                               **self._storage_options)

    async def ensure_container(self, name: str) -> None:
        """Create the container once per process (harmless when it exists)."""
        async with self._lock:
            if name in self._containers_ready:
                return
            try:
                async with self._container(name) as container:
                    with contextlib.suppress(ResourceExistsError):
                        await container.create_container()
            except Exception as exc:
                raise translate(exc, f"creating container {name!r}",
                                service="Blob storage") from exc
            self._containers_ready.add(name)

    async def checkpoint_store(self) -> BlobCheckpointStore:
        name = self.config.checkpoint_container
        await self.ensure_container(name)
        cfg = self.config
        if cfg.storage_connection_string is not None:
            return BlobCheckpointStore.from_connection_string(
                cfg.storage_connection_string, name, **self._storage_options)
        assert cfg.storage_account_url is not None
        return BlobCheckpointStore(cfg.storage_account_url, name, credential=self._credential,
                                   **self._storage_options)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_credential and self._credential is not None:
            await self._credential.close()


__all__ = ["AzureClients"]
