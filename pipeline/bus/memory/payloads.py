"""Claim-check payloads kept in process memory (the embedded default's payload store)."""

from __future__ import annotations

from pipeline.bus.resource import AsyncResource
from pipeline.errors import PayloadMissingError

PREFIX = "memory://"


class MemoryPayloadStore(AsyncResource):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, name: str, data: bytes) -> str:
        self._blobs[name] = data
        return f"{PREFIX}{name}"

    async def get(self, ref: str) -> bytes:
        try:
            return self._blobs[ref.removeprefix(PREFIX)]
        except KeyError:
            raise PayloadMissingError(f"claim-check payload missing: {ref}") from None

    def names(self) -> frozenset[str]:
        """The payloads held (``<hub>/<sha256>``), for inspection."""
        return frozenset(self._blobs)

    def clear(self) -> None:
        """Forget every payload (what a lifecycle rule expiring the blobs would do)."""
        self._blobs.clear()
