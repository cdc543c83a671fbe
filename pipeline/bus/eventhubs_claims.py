"""Claim-check payloads in Azure Blob Storage (the same account as the checkpoints)."""

from __future__ import annotations

import contextlib

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from pipeline.errors import BusUnavailableError


class BlobPayloadStore:
    """Blobs named ``<hub>/<sha256>`` in one container; references are ``blob://c/name``."""

    def __init__(self, connection_string: str, container: str) -> None:
        self._service = BlobServiceClient.from_connection_string(connection_string)
        self._container_name = container
        self._container: ContainerClient | None = None

    async def _ready(self) -> ContainerClient:
        if self._container is None:
            container = self._service.get_container_client(self._container_name)
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()
            self._container = container
        return self._container

    async def put(self, name: str, data: bytes) -> str:
        container = await self._ready()
        try:
            # Content-addressed: a second put of the same payload is a harmless overwrite.
            await container.upload_blob(name, data, overwrite=True)
        except Exception as exc:
            raise BusUnavailableError(f"claim-check upload failed: {exc}") from exc
        return f"blob://{self._container_name}/{name}"

    async def get(self, ref: str) -> bytes:
        container_name, _, name = ref.removeprefix("blob://").partition("/")
        client = self._service.get_blob_client(container_name, name)
        try:
            downloader = await client.download_blob()
            return bytes(await downloader.readall())
        except ResourceNotFoundError:
            raise LookupError(f"claim-check payload missing: {ref}") from None

    async def close(self) -> None:
        await self._service.close()
