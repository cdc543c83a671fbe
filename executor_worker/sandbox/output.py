"""Bounded capture of a stream: keep the head and the tail, count what was dropped."""

from __future__ import annotations

import asyncio


class CappedBuffer:
    """Keeps the first ``cap // 2`` and the last ``cap - cap // 2`` bytes of a stream."""

    def __init__(self, cap: int) -> None:
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._tail_cap:
                del self._tail[: len(self._tail) - self._tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > len(self._head) + len(self._tail)

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self._head) + bytes(self._tail)).decode("utf-8", "replace")
        dropped = self.total - len(self._head) - len(self._tail)
        marker = f"\n... [{dropped} bytes truncated] ...\n".encode()
        return (bytes(self._head) + marker + bytes(self._tail)).decode("utf-8", "replace")


async def drain(reader: asyncio.StreamReader, buffer: CappedBuffer) -> None:
    while chunk := await reader.read(65536):
        buffer.feed(chunk)
