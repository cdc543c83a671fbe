"""Claim-check payloads in Azure Blob Storage (the same account as the checkpoints)."""

from __future__ import annotations

from pipeline.bus.eventhubs.clients import AzureClients
from pipeline.bus.eventhubs.errors import translate
from pipeline.bus.resource import AsyncResource
from pipeline.errors import PayloadMissingError

SERVICE = "Blob storage"


class BlobPayloadStore(AsyncResource):
    """Blobs named ``<hub>/<sha256>`` in one container; references are ``blob://c/name``."""

    def __init__(self, clients: AzureClients, container: str) -> None:
        self._clients = clients
        self._service = clients.blob_service()
        self._container_name = container

    async def put(self, name: str, data: bytes) -> str:
        await self._clients.ensure_container(self._container_name)
        container = self._service.get_container_client(self._container_name)
        try:
            # Content-addressed: a second put of the same payload is a harmless overwrite.
            await container.upload_blob(name, data, overwrite=True)
        except Exception as exc:
            raise translate(exc, f"uploading claim-check payload {name}", service=SERVICE) from exc
        return f"blob://{self._container_name}/{name}"

    async def get(self, ref: str) -> bytes:
        container_name, _, name = ref.removeprefix("blob://").partition("/")
        client = self._service.get_blob_client(container_name, name)
        try:
            downloader = await client.download_blob()
            return bytes(await downloader.readall())
        except Exception as exc:
            raise translate(exc, f"fetching claim-check payload {ref}", service=SERVICE,
                            missing=PayloadMissingError) from exc

    async def close(self) -> None:
        await self._service.close()
