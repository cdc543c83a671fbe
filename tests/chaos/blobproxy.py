"""A TCP proxy in front of Azurite that can take the checkpoint store down and bring it back.

    async with BlobProxy(azurite_conn_str) as proxy:
        proxy.connection_string       # give this to the bus
        proxy.down()                  # abort open connections, refuse new ones (reset)
        proxy.up()

Down is what a client sees when the storage endpoint is unreachable: connections reset, no
answer. Azurite itself keeps running, so checkpoints and ownership written before the
outage are still there after it (as with the real service).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from types import TracebackType


class BlobProxy:
    def __init__(self, target_conn_str: str) -> None:
        match = re.search(r"BlobEndpoint=http://([^:/]+):(\d+)/", target_conn_str)
        if match is None:
            raise ValueError("expected an Azurite connection string with a BlobEndpoint")
        self._target = (match.group(1), int(match.group(2)))
        self._conn_str = target_conn_str
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.is_down = False
        self.refused = 0

    @property
    def connection_string(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        host, target_port = self._target
        return self._conn_str.replace(f"{host}:{target_port}", f"127.0.0.1:{port}")

    def down(self) -> None:
        self.is_down = True
        for writer in list(self._open):
            writer.transport.abort()

    def up(self) -> None:
        self.is_down = False

    async def __aenter__(self) -> BlobProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._open.discard(writer)
            self._open.discard(up_writer)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.is_down:
                    break
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.transport.abort() if self.is_down else writer.write_eof()
